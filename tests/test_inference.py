"""evaluate, predict and export on a checkpoint trained on the tiny synthetic CIFAR-10."""

import json

import numpy as np
import pytest
import torch
from conftest import write_bad_image
from PIL import Image

from cifarkit.cli.main import main
from cifarkit.data.augment import tta_views
from cifarkit.data.cifar import load_cifar10
from cifarkit.evaluate import inference


def test_evaluate_reproduces_the_training_result(trained_run, capsys):
    root, results = trained_run
    assert main(["evaluate", str(root / "run")]) == 0
    saved = json.loads((root / "run" / "evaluate-none.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-7)
    assert saved["test_loss"] == pytest.approx(results["test_loss"], rel=1e-4)
    assert set(saved["per_class_accuracy"]) == {
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    }
    assert "test accuracy" in capsys.readouterr().out


def test_evaluate_with_tta(trained_run):
    root, _ = trained_run
    out = root / "tta.json"
    assert (
        main(["evaluate", str(root / "run" / "checkpoints" / "last.pt"), "--tta", "flip-translate", "--out", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["tta"] == "flip-translate"


def test_tta_views():
    x = torch.randn(2, 3, 32, 32)
    assert len(tta_views(x, "none")) == 1
    flip = tta_views(x, "flip")
    assert len(flip) == 2 and torch.equal(flip[1], x.flip(3))
    views = tta_views(x, "flip-translate")
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[2][:, :, 2:, 2:], x[:, :, :-2, :-2])  # shifted 2 px down-right


def test_predict_names_the_class_of_a_saved_test_image(trained_run, tmp_path, capsys):
    root, _ = trained_run
    data = load_cifar10(root / "data", download=False)
    path = tmp_path / "test0.png"
    Image.fromarray(data.test_images[0].permute(1, 2, 0).numpy()).resize((96, 96)).save(path)
    assert main(["predict", str(root / "run"), str(path), "--json", "--top-k", "2"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert predictions[0]["top"][0]["class"] == data.classes[int(data.test_labels[0])]
    assert len(predictions[0]["top"]) == 2
    assert main(["predict", str(root / "run"), str(path)]) == 0
    assert "1. " in capsys.readouterr().out


def test_a_run_trained_in_fp16_on_a_gpu_evaluates_and_predicts_on_a_cpu(trained_run, tmp_path, capsys, monkeypatch):
    import shutil

    from cifarkit.runtime import device as runtime

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)  # fp32 here, as the run's own result was
    root, results = trained_run
    run = tmp_path / "gpu-run"
    shutil.copytree(root / "run", run)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["config"]["precision"] = "fp16"  # as `cifarkit train --device cuda --precision fp16` stores it
    torch.save(ckpt, run / "checkpoints" / "last.pt")
    assert main(["evaluate", str(run), "--device", "cpu", "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["test_accuracy"] == pytest.approx(results["test_accuracy"])
    data = load_cifar10(root / "data", download=False)
    Image.fromarray(data.test_images[0].permute(1, 2, 0).numpy()).save(tmp_path / "test0.png")
    assert main(["predict", str(run), str(tmp_path / "test0.png"), "--device", "cpu"]) == 0
    assert "1. " in capsys.readouterr().out


def test_evaluate_never_writes_onto_a_checkpoint_outside_a_run_folder(trained_run, tmp_path, capsys):
    root, _ = trained_run
    only = tmp_path / "only" / "checkpoints"  # a run folder reduced to its checkpoint (no config.json)
    only.mkdir(parents=True)
    (only / "last.pt").write_bytes((root / "run" / "checkpoints" / "last.pt").read_bytes())
    assert main(["evaluate", str(root / "run"), "--out", str(only / "last.pt")]) == 2
    assert "an existing model file (.pt)" in capsys.readouterr().err
    assert (only / "last.pt").read_bytes() == (root / "run" / "checkpoints" / "last.pt").read_bytes()


def test_evaluate_into_a_folder_it_cannot_write_is_refused_before_the_work(trained_run, monkeypatch, capsys):
    import os

    root, _ = trained_run
    run = root / "run"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(run) else real_access(path, mode))
    monkeypatch.setattr(inference, "evaluate_checkpoint", lambda *a, **k: pytest.fail("evaluated first"))
    assert main(["evaluate", str(run)]) == 2  # as on a read-only mount (root may write anywhere else)
    assert (
        f"{run / 'evaluate-none.json'}: its folder cannot be written (read-only?); write the output elsewhere"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"just text", "not an image"),
        ("truncated", "corrupt or truncated"),
        ("huge", "too large an image"),
        (None, "no such file"),
    ],
)
def test_predict_refuses_bad_images(trained_run, tmp_path, capsys, monkeypatch, content, message):
    root, _ = trained_run
    path = tmp_path / "bad.png"
    write_bad_image(path, content, monkeypatch)
    assert main(["predict", str(root / "run"), str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("raw", [False, True])
def test_onnx_export_matches_pytorch(trained_run, tmp_path, raw, capsys):
    ort = pytest.importorskip("onnxruntime")
    root, _ = trained_run
    out = tmp_path / "model.onnx"
    argv = ["export", str(root / "run"), "--onnx", str(out)] + (["--raw-input"] if raw else [])
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "max abs difference" in said
    # independent check on real test images, in the input convention the flag promised
    data = load_cifar10(root / "data", download=False)
    model, ckpt = inference.load_model(root / "run", torch.device("cpu"))
    pixels = data.test_images[:16]
    from cifarkit.data.augment import normalize

    with torch.inference_mode():
        expected = model(normalize(pixels, ckpt["mean"], ckpt["std"])).numpy()  # the run's own statistics
    # the file alone says how to feed it and what the outputs are (its metadata), and so does the command
    meta = {p.key: p.value for p in pytest.importorskip("onnx").load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == list(ckpt["classes"]) and meta["image_size"] == "32"
    assert meta["normalised_inside"] == str(raw).lower()
    mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
    assert mean == pytest.approx(ckpt["mean"]) and std == pytest.approx(ckpt["std"])
    if not raw:
        assert f"mean ({ckpt['mean'][0]:.4f}, " in said
    feed = pixels.float().numpy() if raw else normalize(pixels, mean, std).numpy()
    got = ort.InferenceSession(str(out)).run(None, {"images": feed})[0]
    assert np.abs(got - expected).max() < 1e-3


def test_flip_tta_averages_the_logits_of_the_image_and_its_mirror(trained_run):
    from cifarkit.data.augment import normalize
    from cifarkit.evaluate.metrics import predict_logits

    root, _ = trained_run
    model, _ = inference.load_model(root / "run", torch.device("cpu"))
    images = load_cifar10(root / "data", download=False).test_images[:8]
    with torch.inference_mode():
        x = normalize(images)
        expected = (model(x) + model(x.flip(3))) / 2
    assert torch.allclose(predict_logits(model, images, tta="flip"), expected, atol=1e-5)


def test_evaluate_reproduces_a_run_with_ema_and_tta(tiny_py, tmp_path):
    from cifarkit import TrainConfig, train

    cfg = TrainConfig(
        model="s10-small",
        epochs=2,
        batch_size=50,
        max_lr=5e-3,
        data_dir=str(tiny_py),
        threads=1,
        precision="fp32",
        ema_decay=0.8,
        tta="flip",
    )
    results = train(cfg, tmp_path / "run", progress=False)
    assert (results["ema_decay"], results["tta"]) == (0.8, "flip")
    evaluated = inference.evaluate_checkpoint(tmp_path / "run")
    assert evaluated["tta"] == "flip"
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-7)


def test_a_fast_net_run_evaluates_exports_and_predicts_like_it_trained(tiny_py, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from test_train import FAST_TINY, tiny_config

    from cifarkit import train
    from cifarkit.data.augment import normalize

    results = train(tiny_config(tiny_py, **FAST_TINY), tmp_path / "run", progress=False)
    assert results["test_accuracy"] > 0.5 and results["tta"] == "flip-translate"
    evaluated = inference.evaluate_checkpoint(tmp_path / "run")  # rebuilt model, whitening stem from the file
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-7)
    assert main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "fast.onnx")]) == 0
    model, ckpt = inference.load_model(tmp_path / "run", torch.device("cpu"))
    x = normalize(load_cifar10(tiny_py, download=False).test_images[:8], ckpt["mean"], ckpt["std"])
    with torch.inference_mode():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(tmp_path / "fast.onnx")).run(None, {"images": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-3


def test_evaluate_shows_its_progress_on_stderr_unless_quiet(trained_run, tmp_path, capsys):
    root, _ = trained_run
    assert main(["evaluate", str(root / "run"), "--tta", "flip-translate", "--out", str(tmp_path / "a.json")]) == 0
    assert "testing (flip-translate views): " in capsys.readouterr().err  # six views: minutes on a CPU
    assert main(["evaluate", str(root / "run"), "--out", str(tmp_path / "b.json"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    inference.evaluate_checkpoint(root / "run", progress=False)
    assert capsys.readouterr().err == ""


def test_a_runs_test_evaluations_show_their_progress_unless_quiet(tiny_py, tmp_path, capsys):
    from cifarkit import TrainConfig, train

    config = TrainConfig(
        model="s10-small",
        epochs=2,
        batch_size=50,
        max_lr=5e-3,
        data_dir=str(tiny_py),
        threads=1,
        precision="fp32",
        tta="flip-translate",
        val_split=40,
    )
    train(config, tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    # each epoch validates; the final test (with its six views: a minute or two on a CPU) shows a bar too
    assert "validating (flip-translate views): " in err and "testing (flip-translate views): " in err
    assert "epoch 1/2: " in err  # the training bar: the same bar
    train(config, tmp_path / "quiet", progress=False)
    assert "testing" not in capsys.readouterr().err
