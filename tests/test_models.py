import torch

from cifarkit.cli import main
from cifarkit.models import build_model, count_parameters, summary


def test_s10_has_the_seed_parameter_count_and_logits_out():
    model = build_model("s10")
    assert count_parameters(model) == 6_573_120
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # raw logits, not (log-)probabilities


def test_s10_layers_follow_the_spec():
    model = build_model("s10")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 64), (64, 128), (128, 128), (128, 128), (128, 256), (256, 512), (512, 512), (512, 512)]
    assert all(c.bias is None for c in convs) and model.fc.bias is None


def test_summary_prints_shapes_and_total(capsys):
    text = summary(build_model("s10"))
    assert "6,573,120" in text and "[1, 512, 4, 4]" in text
    assert main(["summary"]) == 0
    assert "6,573,120" in capsys.readouterr().out
