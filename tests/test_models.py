import pytest
import torch

from cifarkit.cli.main import main
from cifarkit.models.nets import build_model, count_parameters, summary


def test_s10_has_the_seed_parameter_count_and_logits_out():
    model = build_model("s10")
    assert count_parameters(model) == 6_573_120
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # raw logits, not (log-)probabilities


def test_s10_scaled_is_the_same_network_with_logits_times_one_eighth():
    seed, scaled = build_model("s10"), build_model("s10-scaled")
    assert count_parameters(scaled) == 6_573_120
    scaled.load_state_dict(seed.state_dict())  # the same parameters and buffers, name for name
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(scaled.eval()(x), seed.eval()(x) * 0.125)
    assert "logit_scale=0.125" in repr(scaled) and "logit_scale" not in repr(seed)


def test_s10_layers_follow_the_spec():
    model = build_model("s10")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 64),
        (64, 128),
        (128, 128),
        (128, 128),
        (128, 256),
        (256, 512),
        (512, 512),
        (512, 512),
    ]
    assert all(c.bias is None for c in convs) and model.fc.bias is None


def test_summary_prints_shapes_and_total(capsys):
    text = summary(build_model("s10"))
    assert "6,573,120" in text and "[1, 512, 4, 4]" in text
    assert main(["summary"]) == 0
    assert "6,573,120" in capsys.readouterr().out


def test_fast_nets_print_well_and_give_logits():
    for name, params in (("fast", 1_971_352), ("fast-small", 497_240)):
        model = build_model(name)
        assert count_parameters(model) == params  # trainable only: the stem's filters and BN scales are frozen
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    text = repr(build_model("fast"))
    assert "logit_scale=0.1111" in text and "(stem): Conv2d(3, 24, kernel_size=(2, 2)" in text


def test_fast_net_convs_start_as_identity_and_bn_scales_are_frozen():
    model = build_model("fast-small")
    conv = model.group2[4]  # 128 -> 128
    x = torch.randn(1, 128, 8, 8)
    assert torch.allclose(conv(x), x, atol=1e-6)
    first = model.group1[0]  # 24 -> 32: the first 24 filters pass their channel through
    y = first(torch.randn(1, 24, 8, 8))
    assert y.shape == (1, 32, 8, 8)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)
    assert not model.stem.weight.requires_grad and model.stem.bias.requires_grad


def test_whitening_stem_decorrelates_2x2_patches():
    torch.manual_seed(0)
    # correlated "images": smooth noise, strongly correlated across neighbouring pixels and channels
    base = torch.randn(200, 1, 17, 17).repeat_interleave(2, 2).repeat_interleave(2, 3)[:, :, :32, :32]
    images = torch.cat([base, 0.8 * base + 0.2 * torch.randn_like(base), -base], 1) + 0.3 * torch.randn(200, 3, 32, 32)
    model = build_model("fast-small")
    model.init_from_data(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, model.stem.weight[:12])  # the 12 whitened directions
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = flat.T @ flat / len(flat)
    assert torch.allclose(covariance.diagonal(), torch.ones(12), atol=0.02)  # unit variance (eps aside)
    off = covariance - torch.diag(covariance.diagonal())
    assert off.abs().max() < 0.05
    assert torch.equal(model.stem.weight[12:], -model.stem.weight[:12])


def test_which_models_have_a_whitening_stem_is_known_without_building_them_for_real():
    from cifarkit.models.nets import MODELS, has_whitening_stem

    assert {name: has_whitening_stem(name) for name in MODELS} == {
        name: hasattr(build_model(name), "stem") for name in MODELS
    }
    assert has_whitening_stem("fast") and not has_whitening_stem("s10")


@pytest.mark.parametrize("num_classes", [0, 1, "10", 2.0, True])
def test_a_model_needs_a_whole_number_of_classes_from_two(num_classes):
    from cifarkit.errors import UserError

    assert build_model("fast-small", num_classes=2).fc.out_features == 2
    with pytest.raises(UserError, match=f"num_classes {num_classes!r}: .*>= 2"):
        build_model("fast-small", num_classes=num_classes)
