"""GradCAM: the layers it can look at, the maps (against a hand computation), `cifarkit gradcam`, and the
report's GradCAM section."""

from __future__ import annotations

import copy
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cifarkit.cli.main import main
from cifarkit.data.cifar import load_cifar10
from cifarkit.models.layers import default_layer, feature_layers
from cifarkit.models.nets import build_model

pytest.importorskip("captum")


@pytest.fixture(scope="session")
def half_trained(tmp_path_factory, tiny_arrays):
    """(root, results): an s10-small run of one epoch on the tiny data (about half right: it has mistakes),
    data in root/data, run in root/run."""
    from conftest import write_py_layout

    from cifarkit import TrainConfig, train

    root = tmp_path_factory.mktemp("half")
    write_py_layout(root / "data", *tiny_arrays)
    config = TrainConfig(
        model="s10-small",
        epochs=1,
        batch_size=50,
        max_lr=5e-3,
        data_dir=str(root / "data"),
        threads=1,
        precision="fp32",
    )
    results = train(config, root / "run", progress=False)
    assert 0.2 < results["test_accuracy"] < 0.9  # mistakes to explain, and right answers too
    return root, results


def save_test_images(data_dir, folder, count, sizes=(32, 57, 96)) -> list[str]:
    """The first `count` test images as PNG files of assorted sizes (predict resizes them back to 32x32)."""
    data = load_cifar10(data_dir, download=False)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        size = sizes[i % len(sizes)]
        image = Image.fromarray(data.test_images[i].permute(1, 2, 0).numpy())
        path = folder / f"test{i}.png"
        (image if size == 32 else image.resize((size, size), Image.Resampling.BICUBIC)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(
    "name, layer, shape",
    [
        ("s10", "layer2", (256, 8, 8)),  # layer3's convolution sees 8x8 maps but its block outputs 4x4
        ("s10-small", "layer2", (64, 8, 8)),
        ("fast", "group1", (64, 15, 15)),  # group2 outputs 7x7
        ("fast-small", "group1", (32, 15, 15)),
    ],
)
def test_the_default_layer_is_the_last_conv_block_of_at_least_8x8(name, layer, shape):
    model = build_model(name).train()
    before = copy.deepcopy(model.state_dict())
    layers = feature_layers(model)
    assert default_layer(model, layers) == layer and layers[layer] == shape
    assert model.training  # the shape-finding pass ran in eval mode and restored the mode
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics untouched
    if name.startswith("s10"):  # the raw convolution of layer3 outputs 8x8 (pooled to 4x4 in its block)
        assert layers["layer3.0.0"][1:] == (8, 8) and layers["layer3"][1:] == (4, 4)
    for dotted in layers:
        model.get_submodule(dotted)  # every listed name is a real dotted module path


def test_summary_prints_the_dotted_layer_names(capsys):
    assert main(["summary", "--model", "fast"]) == 0
    out = capsys.readouterr().out
    assert "group2.4" in out and re.search(r"group1 +ConvGroup +64 x 15 x 15 +<- default", out)
    assert re.search(r"group3 +ConvGroup +256 x +3 x 3 +\(under 5x5", out)


def reference_gradcam(model, x, layer, targets):
    """GradCAM by hand (Selvaraju et al.): ReLU(sum_k mean(dy/dA_k) A_k), bilinear to the input, max 1."""
    saved = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: saved.update(a=o))
    with torch.enable_grad():
        logits = model(x)
        activations = saved["a"]
        (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), activations)
    handle.remove()
    cam = F.relu((grads.mean((2, 3), keepdim=True) * activations).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear")[:, 0]
    return cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]


@pytest.mark.parametrize("name, layer", [("s10-small", "layer2"), ("fast-small", "group2.4")])
def test_gradcam_maps_match_a_hand_computation_and_leave_the_model_alone(name, layer):
    from cifarkit.evaluate.explain import cam_model, gradcam_maps

    torch.manual_seed(0)
    model = build_model(name).train()
    model(torch.randn(16, 3, 32, 32))  # some BatchNorm statistics
    model.eval()
    before = copy.deepcopy(model.state_dict())
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.randn(5, 3, 32, 32)
    targets = torch.tensor([0, 3, 9, 3, 1])
    with torch.inference_mode():  # the app predicts under inference_mode first; GradCAM must still work after
        model(x)
    maps = gradcam_maps(cam_model(model), x, layer, targets)
    assert maps.shape == (5, 32, 32) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    expected = reference_gradcam(copy.deepcopy(model), x.clone(), layer, targets)
    assert torch.allclose(maps, expected, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and [p.requires_grad for p in model.parameters()] == flags


def test_heat_colours_follow_matplotlibs_jet_and_overlay_blends():
    from matplotlib import colormaps

    from cifarkit.evaluate.explain import heat_colours, overlay

    values = np.linspace(0, 1, 101)
    assert np.abs(heat_colours(values) - colormaps["jet"](values)[:, :3]).max() < 0.02  # its 256-entry table
    image = np.full((2, 2, 3), 128, np.uint8)
    heat = np.array([[0.0, 1.0], [0.5, 0.0]])
    assert np.array_equal(overlay(image, heat, opacity=0.0), image)
    assert tuple(overlay(image, heat, opacity=1.0)[0, 1]) == (128, 0, 0)  # jet's hot end: dark red


def png_height(path) -> int:
    with Image.open(path) as image:
        return image.height


def test_gradcam_cli_on_files_and_mistakes(half_trained, tmp_path, capsys):
    root, _ = half_trained
    files = save_test_images(root / "data", tmp_path / "images", 7)
    out = tmp_path / "grid.png"
    assert main(["gradcam", str(root / "run"), *files, "--misclassified", "4", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "GradCAM of 11 images at layer layer2 (8x8 map)" in said and str(out) in said
    assert main(["gradcam", str(root / "run"), *files[:3], "--out", str(tmp_path / "one-row.png")]) == 0
    # 11 images at 5 a row: 3 rows; 3 images: 1 row
    assert png_height(out) / png_height(tmp_path / "one-row.png") == pytest.approx(3, rel=0.2)
    # the files may also come after the options, or on both sides of them
    assert main(["gradcam", str(root / "run"), "--misclassified", "4", *files, "--out", str(tmp_path / "b.png")]) == 0
    assert "GradCAM of 11 images" in capsys.readouterr().out
    assert main(["gradcam", str(root / "run"), files[0], "--out", str(tmp_path / "c.png"), *files[1:3]]) == 0
    assert "GradCAM of 3 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # anything else left over is still refused
        main(["gradcam", str(root / "run"), "--out", str(tmp_path / "d.png"), files[0], "--bogus"])


def test_gradcam_api_rows_maps_and_default_output(half_trained, tmp_path):
    from cifarkit.report.gradcam import gradcam_command

    root, _ = half_trained
    info = gradcam_command(root / "run", save_test_images(root / "data", tmp_path, 6), target="pred")
    assert info["out"] == str(root / "run" / "gradcam.png") and info["rows"] == 2 and info["images"] == 6
    maps = info["maps"]
    assert maps.shape == (6, 32, 32) and float(maps.amax()) == pytest.approx(1.0)  # the input's size
    info = gradcam_command(root / "run" / "checkpoints" / "last.pt", misclassified=3, target="true", layer="layer1")
    assert info["out"] == str(root / "run" / "gradcam.png")  # a run's checkpoint named by its path: still the run's
    assert info["rows"] == 1 and info["images"] == 3
    assert info["map_size"] == [16, 16] and info["maps"].shape == (3, 32, 32)


def test_an_unknown_layer_is_refused_naming_the_valid_ones(half_trained, tmp_path, capsys):
    root, _ = half_trained
    assert main(["gradcam", str(root / "run"), "--layer", "layer9", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "--layer layer9" in err and "layer2 (8x8)" in err and "layer1.1.inner.0 (16x16)" in err
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("target", ["checkpoints/last.pt", "report.html", "plots/curves.png", "image"])
def test_out_never_lands_on_the_checkpoint_the_run_or_an_input_image(half_trained, tmp_path, capsys, target):
    root, _ = half_trained
    files = save_test_images(root / "data", tmp_path, 1)
    out = files[0] if target == "image" else str(root / "run" / target)
    before = Path(out).read_bytes()
    assert main(["gradcam", str(root / "run"), *files, "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"{out}: " in err and "write the output elsewhere" in err and "Traceback" not in err
    assert Path(out).read_bytes() == before


def test_a_map_under_5x5_gets_a_warning(half_trained, tmp_path, capsys):
    root, _ = half_trained
    out = tmp_path / "coarse.png"
    assert main(["gradcam", str(root / "run"), "--layer", "layer3", "--misclassified", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "4x4" in err and "too coarse" in err
    assert out.exists()


def test_target_true_needs_test_images(half_trained, tmp_path, capsys):
    root, _ = half_trained
    files = save_test_images(root / "data", tmp_path, 1)
    assert main(["gradcam", str(root / "run"), *files, "--target", "true", "--out", str(tmp_path / "t.png")]) == 2
    assert "--target true" in capsys.readouterr().err


def test_report_has_the_gradcam_section_of_the_mistakes(half_trained):
    root, results = half_trained
    run = root / "run"
    page = (run / "report.html").read_text()
    assert "GradCAM of the most confident mistakes" in page and "data-file='plots/gradcam.png'" in page
    assert page.index("Misclassified test images") < page.index("GradCAM of the most confident")
    mistakes = round((1 - results["test_accuracy"]) * results["n_test"])
    # 10 mistakes (or all of them), 5 pairs a row, in the PNG
    rows = math.ceil(min(10, mistakes) / 5)
    assert png_height(run / "plots" / "gradcam.png") > 150 * rows


def test_a_run_without_captum_finishes_and_says_how_to_get_gradcam(tiny_py, tmp_path, monkeypatch, capsys):
    from cifarkit import TrainConfig, train

    for name in [m for m in sys.modules if m == "captum" or m.startswith("captum.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "captum", None)  # import captum raises ImportError
    config = TrainConfig(
        model="s10-small",
        epochs=1,
        batch_size=100,
        max_lr=5e-3,
        data_dir=str(tiny_py),
        threads=1,
        precision="fp32",
        limit_train=100,
    )
    train(config, tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert err.count("pip install 'cifarkit[app]'") == 1
    assert (tmp_path / "run" / "report.html").exists() and not (tmp_path / "run" / "plots" / "gradcam.png").exists()
    assert main(["gradcam", str(tmp_path / "run"), "--out", str(tmp_path / "g.png")]) == 2
    assert "pip install 'cifarkit[app]'" in capsys.readouterr().err


def test_gradcam_shows_its_progress_on_stderr_unless_quiet(half_trained, tmp_path, capsys):
    root, _ = half_trained
    assert main(["gradcam", str(root / "run"), "--misclassified", "3", "--out", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    # the test set predicted (with the run's test-time views: minutes on a CPU), then the maps
    assert "finding the mistakes: testing: " in err and "GradCAM: " in err and "img" in err
    assert (
        main(["gradcam", str(root / "run"), "--misclassified", "3", "--out", str(tmp_path / "b.png"), "--quiet"]) == 0
    )
    assert capsys.readouterr().err == ""
    from cifarkit.report.gradcam import gradcam_command

    gradcam_command(root / "run", misclassified=3, out=tmp_path / "c.png", progress=False)
    assert capsys.readouterr().err == ""


def test_the_apps_start_shows_its_progress_on_stderr_unless_quiet(half_trained, capsys):
    import socket

    pytest.importorskip("gradio")
    root, _ = half_trained
    with socket.socket() as taken:  # the start runs to its end, then serving is refused: nothing to stop after
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["app", str(root / "run"), "--port", port, "--data-dir", str(root / "data")]) == 2
        err = capsys.readouterr().err
        for step in (
            "loading gradio",
            "loading the model",
            "reading the test images",
            "preparing the examples and the page",
        ):  # each drawn as it starts
            assert f"starting the app: {step}: " in err
        assert main(["app", str(root / "run"), "--port", port, "--data-dir", str(root / "data"), "--quiet"]) == 2
        assert capsys.readouterr().err.startswith(f"cifarkit app: error: --port {port}: cannot serve")
