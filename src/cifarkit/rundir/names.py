"""The run folder's contract (DESIGN.md): the name of every file a run folder holds and what its files hold.

Commands import these names from run_dir.py, which finds, checks, reads and writes the files.
"""

from __future__ import annotations

CONFIG = "config.json"
METRICS = "metrics.csv"
RESULTS = "results.json"
CHECKPOINT = "checkpoints/last.pt"
LR_FIND_JSON = "lr_find.json"
LR_FIND_PLOT = "lr_find.png"
MODEL_SUMMARY = "model.txt"
REPORT = "report.html"
# Why a run stopped before its last epoch, where nothing will continue it ({"reason": "diverged" | "pruned",
# "message": ...}): written by train on a NaN loss and by a sweep's pruner; `compare` shows it as the run's status.
ENDED = "ended.json"
# (file, heading) in the order report.html shows them; absent files are left out
PLOTS = (
    ("plots/curves.png", "Training curves"),
    ("plots/lr_schedule.png", "One Cycle schedule"),
    (LR_FIND_PLOT, "LR range test"),
    ("plots/samples.png", "Training images"),
    ("plots/augmented.png", "Augmented images"),
    ("plots/misclassified.png", "Misclassified test images"),
    ("plots/confusion.png", "Confusion matrix"),
    ("plots/per_class.png", "Accuracy per class"),
    ("plots/gradcam.png", "GradCAM of the most confident mistakes"),
)
# What a run folder holds; --overwrite removes exactly these (and RUN_PATTERNS) before starting again.
RUN_FILES = (
    CONFIG,
    METRICS,
    RESULTS,
    ENDED,
    CHECKPOINT,
    LR_FIND_JSON,
    MODEL_SUMMARY,
    REPORT,
    *(name for name, _ in PLOTS),
)
RUN_FOLDERS = ("checkpoints", "plots", "tb")  # made by a run (tb: --tensorboard's default)
JUNK = (".DS_Store", "Thumbs.db", ".ipynb_checkpoints")  # what desktops and notebooks leave in any folder
RUN_PATTERNS = ("evaluate-*.json", "gradcam.png")  # what `cifarkit evaluate` / `gradcam` write into a run by default
# (file, heading): what report.html shows after PLOTS of those commands' outputs (gradcam: e.g. once Captum is there)
COMMAND_PLOTS = (("gradcam.png", "GradCAM drawn after the run (cifarkit gradcam RUN_DIR)"),)
# `cifarkit audit RUN_DIR` writes into RUN_DIR/audit/ (its fold-K/ run folders beside these); audit.json is written
# last, so its presence says the audit finished. Never removed by --overwrite: the audit is of the data.
AUDIT_FOLDER = "audit"
AUDIT_CSV = "audit.csv"
AUDIT_JSON = "audit.json"
AUDIT_HTML = "audit.html"
EXCLUDE_TXT = "exclude.txt"
LOCK = ".cifarkit.lock"
# Written with a folder's first run file: what makes a folder a run's own (the folder's files say so, not its name
# or a config.json that anyone may have). Runs from before markers are recognised by a config.json that parses as a
# cifarkit config beside a checkpoint.
MARKER = ".cifarkit-run.json"
MARKER_FORMAT = "cifarkit run folder"
# What `cifarkit sweep --out DIR` writes beside its trial-N run folders: outputs of other commands never land on them.
STUDY_DB = "study.db"
BEST_CONFIG = "best_config.json"
SWEEP_PLOTS = ("history.png", "importances.png")  # optuna's optimisation history and parameter importances
SWEEP_FILES = (STUDY_DB, BEST_CONFIG, *SWEEP_PLOTS)
# Weights, wherever they lie (a run's checkpoints/last.pt, a copy of it, a bundle's model): no command writes these
# suffixes, so an output onto one is a slip that would destroy a trained model.
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
# metrics.csv's columns in order; val_loss/val_acc only in runs with a validation split
METRIC_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "images_per_s",
    "seconds",
)

# results.json's fields as a run writes them: what read_results checks
RESULT_TYPES = {
    **dict.fromkeys(
        (
            "test_accuracy",
            "test_loss",
            "val_accuracy",
            "val_loss",
            "train_accuracy",
            "train_loss",
            "train_images_per_second",
            "train_seconds",
            "wall_time_s",
            "max_lr",
            "ema_decay",
        ),
        "a number",
    ),
    **dict.fromkeys(
        (
            "params",
            "epochs",
            "batch_size",
            "steps",
            "classes",
            "image_size",
            "n_val",
            "n_train",
            "n_test",
            "train_images_seen",
            "seed",
            "processes",
        ),
        "a whole number",
    ),
    **dict.fromkeys(
        ("preset", "model", "dataset", "max_lr_source", "dtype", "tta", "data", "data_layout", "run_dir"), "text"
    ),
    "channels_last": "true or false",
}
TYPE_CHECKS = {
    "a number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "a whole number": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "text": lambda v: isinstance(v, str),
    "true or false": lambda v: isinstance(v, bool),
}
