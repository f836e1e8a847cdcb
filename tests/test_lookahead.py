"""Lookahead: the slow average, its cubic ramp, the final hand-over, and its state round trip."""

import pytest
import torch
from torch import nn

from cifarkit.optim.lookahead import Lookahead


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def perturb(net: nn.Module, amount: float) -> None:
    """Stand-in for an optimiser step (and a BatchNorm statistics update)."""
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(amount)


def floats(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}


def test_every_kth_step_the_model_restarts_from_the_slow_average():
    net = small_net()
    start = floats(net)
    look = Lookahead(net, decay=0.8, every=2, total_steps=4)
    assert set(look.slow) == set(start)  # weights, biases, running mean and variance
    assert "1.num_batches_tracked" not in look.slow

    perturb(net, 1.0)
    look.after_step(1)  # not a multiple of `every`: nothing happens
    assert all(torch.equal(net.state_dict()[k], start[k] + 1.0) for k in start)

    perturb(net, 1.0)
    look.after_step(2)
    d = 0.8 * (2 / 4) ** 3
    assert look.decay_at(2) == pytest.approx(d)
    for k in start:  # slow <- d * slow + (1 - d) * model, and the model takes it
        expected = d * start[k] + (1 - d) * (start[k] + 2.0)
        assert torch.allclose(look.slow[k], expected) and torch.equal(net.state_dict()[k], look.slow[k])


def test_after_the_last_step_the_model_is_the_slow_average():
    net = small_net()
    look = Lookahead(net, decay=0.5, every=3, total_steps=4)
    for step in range(1, 4):
        perturb(net, 1.0)
        look.after_step(step)
    slow_at_3 = {k: v.clone() for k, v in look.slow.items()}
    perturb(net, 5.0)
    look.after_step(4)  # the last step, not a multiple of 3: no averaging, the model returns to the slow weights
    assert all(torch.equal(look.slow[k], v) for k, v in slow_at_3.items())
    assert all(torch.equal(net.state_dict()[k], v) for k, v in slow_at_3.items())


def test_state_round_trip_and_bad_arguments():
    net = small_net()
    look = Lookahead(net, decay=0.5, every=1, total_steps=10)
    perturb(net, 2.0)
    look.after_step(5)
    other = Lookahead(small_net(), decay=0.5, every=1, total_steps=10)
    other.load_state_dict(look.state_dict())
    assert all(torch.equal(other.slow[k], v) for k, v in look.slow.items())
    with pytest.raises(KeyError, match="lacks"):
        other.load_state_dict({})
    with pytest.raises(ValueError, match="0 < decay < 1"):
        Lookahead(net, decay=1.0, every=5, total_steps=10)
