"""The sub-commands about a trained model: `evaluate`, `predict`, and those that show it to people: `gradcam`,
`app` and `export` (ONNX and the app bundle). Their flags here, their work in evaluate/, report/gradcam.py and app/
(loaded on use)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config.notes import presets_note
from ..config.train_config import SETTINGS, TTA_MODES
from ..errors import UserError
from .parser import Commands


def _add_run_data_flags(p: argparse.ArgumentParser) -> None:
    """--data-dir of the commands that read a trained run's test images (evaluate, gradcam, app, export)."""
    p.add_argument(
        SETTINGS["data_dir"].flag,
        help="where the run's images are (default: $CIFARKIT_DATA, else the "
        "folder the run trained on if it is here, else ~/.cache/cifarkit)",
    )


def _add_quiet_flag(p: argparse.ArgumentParser) -> None:
    """--quiet of the commands whose work can take minutes (the test set with test-time views), as train's."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_gradcam(args: argparse.Namespace) -> int:
    from ..report.gradcam import gradcam_command

    info = gradcam_command(
        args.checkpoint,
        args.images,
        args.misclassified,
        args.layer,
        args.target,
        args.out,
        args.data_dir,
        args.device,
        progress=not args.quiet,
    )
    if info["warning"]:
        print(f"cifarkit gradcam: warning: {info['warning']}", file=sys.stderr)
    print(
        f"GradCAM of {info['images']} images at layer {info['layer']} "
        f"({info['map_size'][0]}x{info['map_size'][1]} map) -> {info['out']}"
    )
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from ..app.local import serve

    if not 0 < args.port < 65536:  # before the model loads; gradio's own check is a traceback
        raise UserError(f"--port {args.port}: a TCP port is a whole number in 1..65535 (default 7860)")
    serve(args.checkpoint, args.host, args.port, args.data_dir, progress=not args.quiet)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.onnx is None and args.app is None:
        raise UserError("export needs --onnx FILE, --app DIR or both")
    if args.raw_input and args.onnx is None:
        raise UserError("--raw-input shapes the ONNX model's input: it goes with --onnx FILE")
    if args.data_dir is not None and args.app is None:
        raise UserError("--data-dir is where the app bundle's example images come from: it goes with --app DIR")
    from ..rundir.outputs import check_output

    for output in (args.onnx, args.app):  # checked before any work: never onto the checkpoint or the run's files
        if output is not None:
            check_output(output, args.checkpoint)
    if (
        args.onnx is not None
        and args.app is not None
        and args.app.resolve() in (args.onnx.resolve(), *args.onnx.resolve().parents)
    ):
        raise UserError(
            f"--onnx {args.onnx}: inside the --app folder {args.app}, which holds the bundle's files only; "
            "write the ONNX model elsewhere"
        )
    if args.onnx is not None:
        from ..evaluate.inference import export_onnx

        info = export_onnx(args.checkpoint, args.onnx, raw_input=args.raw_input)
        print(
            f"wrote {info['onnx']}\ninput: {info['input']}\noutput: logits (N x {len(info['classes'])}), classes "
            f"{', '.join(info['classes'])}\nonnxruntime vs PyTorch on 8 images: max abs difference "
            f"{info['max_abs_diff']:.2e}"
        )
    if args.app is not None:
        from ..app.bundle import export_app

        info = export_app(args.checkpoint, args.app, args.data_dir)
        print(
            f"wrote the app bundle {info['folder']}: {', '.join(info['files'])}\n"
            f"try it: cd {info['folder']} && pip install -r requirements.txt && python app.py"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import os

    from ..evaluate.inference import evaluate_checkpoint
    from ..files.atomic import write_json
    from ..rundir.checkpoint import load_checkpoint
    from ..rundir.outputs import check_output, data_areas, default_output, refuse_inside_data

    if args.limit_test is not None and args.limit_test < 1:
        raise UserError(f"--limit-test {args.limit_test}: must be a whole number of images >= 1")
    config = load_checkpoint(args.checkpoint)["config"]
    tta = args.tta or config.get("tta", "none")
    # before the work: never onto the checkpoint it reads, nor into a folder that cannot be written, nor among the
    # data it may read (the flag's, $CIFARKIT_DATA, the run's own folder, the default one)
    out = check_output(args.out or default_output(args.checkpoint, f"evaluate-{tta}.json"), args.checkpoint)
    for data_dir in dict.fromkeys((args.data_dir, os.environ.get("CIFARKIT_DATA"), config.get("data_dir"), None)):
        try:
            areas = data_areas(config.get("dataset", "cifar10"), data_dir)
        except UserError:  # no folder there (a file, a loop): no data to land on; loading the data says so
            continue
        refuse_inside_data(out, "--out", *areas)
    result = evaluate_checkpoint(
        args.checkpoint, args.data_dir, args.tta, args.limit_test, args.device, progress=not args.quiet
    )
    write_json(out, result)
    print(
        f"test accuracy {result['test_accuracy']:.2%}  loss {result['test_loss']:.4f}  "
        f"({result['n_test']} images, tta {tta})"
    )
    for name, acc in result["per_class_accuracy"].items():
        print(f"  {name:<12}{acc:7.2%}")
    print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from ..evaluate.inference import predict_files

    predictions = predict_files(args.checkpoint, args.images, args.top_k, args.tta, args.device)
    if args.json:
        print(json.dumps(predictions, indent=2))
        return 0
    for p in predictions:
        print(p["image"])
        for rank, t in enumerate(p["top"], start=1):
            print(f"  {rank}. {t['class']:<12}{t['probability']:7.2%}")
    return 0


def add_commands(sub: Commands) -> None:
    """evaluate, predict, gradcam, app and export, with their flags."""
    p = sub.add_parser("evaluate", help="test accuracy, loss and per-class accuracy of a checkpoint, as JSON")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT_OR_RUN_DIR")
    _add_run_data_flags(p)
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation; default: the run's own" + presets_note("tta"),
    )
    p.add_argument(
        "--limit-test",
        type=int,
        metavar="N",
        help="the first N test images only (default: the images the run tested on: all of them, or its "
        "own --limit-test)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--out",
        type=Path,
        help="JSON file (default: RUN_DIR/evaluate-TTA.json, or CKPT.evaluate-TTA.json "
        "beside a checkpoint file outside a run folder)",
    )
    _add_quiet_flag(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of image files (any size, resized to the run's image size)")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT_OR_RUN_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, help="how many classes (default 3, or every class when fewer)")
    p.add_argument("--tta", choices=TTA_MODES, default="none")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "gradcam", help="GradCAM heat maps over image files or the most confident test mistakes, as a PNG grid"
    )
    p.add_argument("checkpoint", type=Path, metavar="RUN_DIR_OR_CKPT")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (any size; resized as predict does)")
    p.add_argument(
        "--misclassified",
        type=int,
        metavar="N",
        help="also the N most confident mistakes on the test set (default 10 when no IMAGE is given)",
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help="the layer to explain, a dotted name as `cifarkit summary` "
        "lists them (default: the last conv block of at least 8x8)",
    )
    p.add_argument(
        "--target",
        choices=("pred", "true"),
        default="pred",
        help="explain the predicted class (default) or the true one (test images only)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the PNG (default RUN_DIR/gradcam.png, or CKPT.gradcam.png beside a checkpoint file outside a run folder)",
    )
    p.set_defaults(images_anywhere=True)  # `gradcam RUN --misclassified 2 a.png` as well as `gradcam RUN a.png ...`
    _add_run_data_flags(p)
    p.add_argument("--device", default="auto")
    _add_quiet_flag(p)
    p.set_defaults(func=cmd_gradcam)

    p = sub.add_parser("app", help="a Gradio page: upload an image, top-k classes, GradCAM, mistakes gallery")
    p.add_argument("checkpoint", type=Path, metavar="RUN_DIR_OR_CKPT")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    _add_run_data_flags(p)
    _add_quiet_flag(p)
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked with onnxruntime) and/or an app bundle")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT_OR_RUN_DIR")
    p.add_argument("--onnx", type=Path, metavar="FILE", help="write an ONNX model (needs cifarkit[onnx])")
    p.add_argument(
        "--raw-input",
        action="store_true",
        help="the ONNX model takes raw pixels 0..255 and normalises itself (default: normalised input)",
    )
    p.add_argument(
        "--app",
        type=Path,
        metavar="DIR",
        help="write a folder that runs the app without cifarkit "
        "(safetensors weights, app.py, HuggingFace-Spaces-ready)",
    )
    _add_run_data_flags(p)
    p.set_defaults(func=cmd_export)
