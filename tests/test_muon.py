"""Muon (cifarkit.optim.muon): the orthogonalisation, one hybrid step against a reference written here, and its
groups."""

import copy

import pytest
import torch
from torch import nn

from cifarkit.config.train_config import TrainConfig
from cifarkit.errors import UserError
from cifarkit.models.nets import build_model
from cifarkit.optim.muon import Muon, orthogonalize
from cifarkit.training.build import build_optimizer, parameter_groups


def spread_matrix(rows: int, cols: int, seed: int, condition: float = 10.0) -> torch.Tensor:
    """A matrix with random singular vectors and singular values spread evenly (log) over 1 .. 1/condition."""
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.logspace(0, -torch.log10(torch.tensor(condition)).item(), k, dtype=torch.float64)) @ v.T


@pytest.mark.parametrize("shape", [(64, 216), (256, 2304), (300, 40), (7, 7)])
@pytest.mark.parametrize("steps", [3, 5])
def test_orthogonalize_keeps_the_singular_vectors_and_pushes_the_singular_values_towards_one(shape, steps):
    g = spread_matrix(*shape, seed=sum(shape))
    out = orthogonalize(g, steps=steps, dtype=torch.float64)
    assert out.shape == g.shape and out.dtype == g.dtype
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    rotated = u.T @ out @ vh.T  # the output has g's singular vectors: diagonal in g's bases
    assert (rotated - torch.diag(torch.diag(rotated))).abs().max() < 1e-10
    singular = torch.linalg.svdvals(out)  # singular values 0.1 .. 1 in, all near 1 out (airbench's range)
    assert singular.min() > 0.5 and singular.max() < 1.5


def test_orthogonalize_in_bf16_and_in_batches_agrees_with_one_matrix_at_a_time():
    stack = torch.stack([spread_matrix(32, 72, seed).float() for seed in range(3)])
    together = orthogonalize(stack, dtype=torch.float32)
    for matrix, result in zip(stack, together):
        torch.testing.assert_close(result, orthogonalize(matrix, dtype=torch.float32), rtol=1e-4, atol=1e-5)
    low = orthogonalize(stack, dtype=torch.bfloat16)
    assert low.dtype == torch.float32  # computed in bf16, returned in the input's dtype
    singular = torch.linalg.svdvals(low.double())  # bf16's rounding moves them a little, never out of range
    assert singular.min() > 0.4 and singular.max() < 1.6


def test_a_zero_gradient_and_a_rank_one_gradient_stay_what_they_are():
    assert torch.equal(orthogonalize(torch.zeros(4, 9), dtype=torch.float32), torch.zeros(4, 9))
    rank_one = torch.outer(torch.arange(1.0, 5.0), torch.ones(9))
    singular = torch.linalg.svdvals(orthogonalize(rank_one, dtype=torch.float32))
    assert singular[0] > 0.5 and singular[1:].abs().max() < 1e-5  # no direction is invented


def reference_orthogonalize(m: torch.Tensor, steps: int) -> torch.Tensor:
    """Newton-Schulz as airbench94_muon publishes it, written out again in float64."""
    x = m.double() / (m.double().norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    x = x.T if tall else x
    for _ in range(steps):
        a = x @ x.T
        x = 3.4445 * x + (-4.7750 * a + 2.0315 * a @ a) @ x
    return (x.T if tall else x).float()


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 5, bias=True)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_two_hybrid_steps_match_muon_and_sgd_computed_by_hand():
    torch.manual_seed(0)
    model = Tiny()
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,))
    lr, muon_lr, momentum, muon_momentum, wd = 0.05, 0.3, 0.85, 0.6, 1e-2
    rest = [p for n, p in model.named_parameters() if n != "conv.weight"]
    optimizer = Muon(
        [
            {"params": [model.conv.weight], "lr": muon_lr, "momentum": muon_momentum, "use_muon": True},
            {"params": rest, "weight_decay": wd},
        ],
        lr=lr,
        momentum=momentum,
        nesterov=True,
        ns_steps=3,
        ns_dtype=torch.float32,
    )
    sgd_model = copy.deepcopy(model)  # the non-filter parameters must move exactly as torch.optim.SGD moves them
    sgd = torch.optim.SGD(
        [p for n, p in sgd_model.named_parameters() if n != "conv.weight"],
        lr=lr,
        momentum=momentum,
        nesterov=True,
        weight_decay=wd,
    )
    w, buf = model.conv.weight.detach().clone(), None
    for _ in range(2):
        for m in (model, sgd_model):
            m.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
        g = model.conv.weight.grad.clone()
        buf = g if buf is None else muon_momentum * buf + g
        update = reference_orthogonalize((g + muon_momentum * buf).reshape(4, -1), 3).reshape(w.shape)
        w = w * 2.0 / w.norm() - muon_lr * update  # norm sqrt(4 out channels), then the step
        optimizer.step()
        sgd.step()
        sgd_model.conv.weight.data.copy_(model.conv.weight.data)  # the next gradients from the same filters
        torch.testing.assert_close(model.conv.weight.detach(), w, rtol=1e-5, atol=1e-6)
        for (name, p), q in zip(model.named_parameters(), sgd_model.parameters()):
            if name != "conv.weight":
                torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_the_state_dict_round_trips_and_the_next_step_is_bitwise_the_same():
    torch.manual_seed(0)
    model, x, y = Tiny(), torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,))

    def step(m, opt):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()

    def make(m):
        return Muon(
            [
                {"params": [m.conv.weight], "use_muon": True},
                {"params": [p for n, p in m.named_parameters() if n != "conv.weight"]},
            ],
            lr=0.1,
            momentum=0.9,
        )

    optimizer = make(model)
    step(model, optimizer)
    twin = copy.deepcopy(model)
    resumed = make(twin)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    step(model, optimizer)
    step(twin, resumed)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_muon_groups_hold_the_filters_and_the_frozen_stem_stays_out():
    cfg = TrainConfig(
        model="fast-small", optimizer="muon", norm_lr_scale=64.0, max_lr=1.5, muon_lr=0.24, weight_decay=1e-3
    )
    model = build_model("fast-small")
    weights, norm, muon = parameter_groups(model, cfg, 1.5)
    filters = [p for name, p in model.named_parameters() if p.ndim == 4 and name != "stem.weight"]
    assert muon["use_muon"] and [id(p) for p in muon["params"]] == [id(p) for p in filters]
    assert muon["lr"] == 0.24 and muon["lr_scale"] == pytest.approx(0.24 / 1.5) and muon["weight_decay"] == 0
    assert [id(p) for p in weights["params"]] == [id(model.fc.weight)]
    assert all(p.ndim == 1 for p in norm["params"]) and norm["lr"] == 1.5 * 64
    optimizer = build_optimizer(model, cfg, 1.5, torch.device("cpu"), torch.float32)
    assert isinstance(optimizer, Muon) and optimizer.ns_dtype == torch.float32
    assert build_optimizer(model, cfg, 1.5, torch.device("cpu"), torch.bfloat16).ns_dtype == torch.bfloat16


def test_muon_settings_are_checked():
    with pytest.raises(UserError, match="--muon-lr"):
        TrainConfig(optimizer="muon", muon_lr=0.0).validate()
    with pytest.raises(UserError, match="--muon-momentum"):
        TrainConfig(optimizer="muon", muon_momentum=1.0).validate()
    with pytest.raises(ValueError, match="matrices or filters"):
        Muon([{"params": [torch.zeros(3, requires_grad=True)], "use_muon": True}], lr=0.1)


def test_one_cycle_leaves_the_filters_momentum_alone_and_their_steps_are_always_nesterov():
    from cifarkit.optim.schedule import one_cycle

    cfg = TrainConfig(model="fast-small", optimizer="muon", nesterov=False, cycle_momentum=True, muon_momentum=0.6)
    model = build_model("fast-small")
    optimizer = build_optimizer(model, cfg, 0.1, torch.device("cpu"))
    scheduler = one_cycle(optimizer, cfg, 0.1, steps_per_epoch=10)
    for _ in range(30):
        optimizer.step()
        scheduler.step()
    *rest, filters = optimizer.param_groups
    assert filters["use_muon"] and filters["momentum"] == 0.6 and filters["nesterov"]
    assert all(g["momentum"] != 0.6 and not g["nesterov"] for g in rest)  # cycled between 0.85 and 0.95
