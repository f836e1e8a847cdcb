"""TensorBoard logging of a training run: an Observer (observer.py) of the Trainer.

Steps are counted from 1 over the whole run (epoch * steps_per_epoch + step in the epoch), so a resumed
run continues the same axis; its writer purges what an interrupted process logged after the checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..files.atomic import write_text
from ..rundir.run_dir import CONFIG
from .observer import Observer

OWNER_FILE = "cifarkit-run.txt"  # in an event folder: the run folder whose events it holds


def global_step(trainer: Any) -> int:
    """Steps done in the run so far."""
    return trainer.state.epoch * trainer.steps_per_epoch + trainer.state.step_in_epoch


class TensorBoard(Observer):
    """Writes a run's scalars, augmented images, model graph and hparams to `log_dir` with torch's SummaryWriter.

    Only the process that writes the run folder should make one (run.train: rank 0)."""

    def __init__(self, log_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None):
        """The events go to `log_dir`, or with `run_dir` (`--tensorboard DIR`, a folder of many runs' events) to
        `log_dir`/RUN_NAME, recorded as that run's (RUN_DIR/tb where DIR is the folder the run is in): a subfolder
        that holds the events of another run still there, or of no known run, is refused (the new writer would
        purge them); one whose run is gone (moved, deleted) is taken over."""
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (checked here, before any training)
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: pip install 'cifarkit[tb]'") from None
        run_dir = None if run_dir is None else Path(run_dir).resolve()
        self.log_dir = Path(log_dir) if run_dir is None else Path(log_dir) / run_dir.name
        if run_dir is not None and self.log_dir.resolve() == run_dir:  # --tensorboard runs, the run in runs/
            self.log_dir, run_dir = run_dir / "tb", None
        try:  # now, before any training: SummaryWriter would fail only after the first steps
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(
                f"--tensorboard {log_dir}: cannot make that folder ({e.strerror or e}); choose another"
            ) from None
        if run_dir is not None:
            self._claim(run_dir)
        self.writer: Any = None

    def _claim(self, run_dir: Path) -> None:
        owner_file = self.log_dir / OWNER_FILE
        try:
            owner = owner_file.read_text(encoding="utf-8", errors="replace") if owner_file.exists() else None
            if owner is None and any(self.log_dir.glob("events.out.tfevents.*")):
                raise UserError(
                    f"--tensorboard: {self.log_dir} holds TensorBoard events of no cifarkit run (no "
                    f"{OWNER_FILE}); move them away, or give another --tensorboard DIR"
                )
            if owner not in (None, str(run_dir)) and (Path(owner) / CONFIG).exists():
                raise UserError(
                    f"--tensorboard: {self.log_dir} holds the events of another run ({owner}); a run "
                    f"of the same folder name elsewhere? Give this one another --tensorboard DIR or "
                    f"--out name"
                )
            write_text(owner_file, str(run_dir))
        except OSError as e:
            raise UserError(
                f"--tensorboard: cannot record the run in {owner_file} ({e.strerror or e}); choose another folder"
            ) from None

    def _open(self, trainer: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        done = global_step(trainer) - 1  # the step just taken is this process's first
        # a new run purges everything an earlier run left in the folder (step >= 0); a resumed one what its
        # interrupted process logged after the checkpoint it continues from (step > done)
        self.writer = SummaryWriter(str(self.log_dir), purge_step=done + 1 if done else 0)
        if done == 0:
            self._write_once(trainer)

    def _write_once(self, trainer: Any) -> None:
        """The augmented-image grid of the first batch, and the model graph if it traces (a warning if not)."""
        from ..data.augment import denormalize

        x, _ = trainer.global_batch(trainer.images_of_epoch(0), 0, 0)  # a pure function of (seed, epoch, step)
        self.writer.add_images("augmented", denormalize(x[:32].float().cpu(), trainer.mean, trainer.std), 0)
        try:
            model = copy.deepcopy(trainer.eval_model).float().eval()  # never the trained model's BatchNorm state
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.writer.add_graph(model, x[:2].float())
        except Exception as e:  # noqa: BLE001 (a model that does not trace only loses its graph)
            warnings.warn(f"--tensorboard: the model graph was not written ({type(e).__name__}: {e})", stacklevel=2)

    def after_sync(self, trainer: Any, step_loss: float, lrs: list[float]) -> None:
        if self.writer is None:
            self._open(trainer)
        step = global_step(trainer)
        self.writer.add_scalar("train/step_loss", step_loss, step)
        for i, lr in enumerate(lrs):
            self.writer.add_scalar(f"lr/group{i}", lr, step)

    def after_epoch(self, trainer: Any, row: dict[str, float]) -> None:
        step = global_step(trainer)
        for key, value in row.items():
            if key in ("epoch", "lr") or not math.isfinite(value):  # not evaluated this epoch: no point
                continue
            split, _, name = key.partition("_")
            tag = f"{split}/{name}" if split in ("train", "val", "test") else f"speed/{key}"
            self.writer.add_scalar(tag if split != "train" else f"train/epoch_{name}", value, step)
        self.writer.flush()

    def at_end(self, trainer: Any, results: dict[str, Any]) -> None:
        """The run's settings with its final numbers, for TensorBoard's HParams tab."""
        from torch.utils.tensorboard.summary import hparams

        config = {
            k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in trainer.config.to_dict().items()
        }
        config["max_lr"] = float(trainer.max_lr)  # the number trained with (also after --max-lr find)
        metrics = {
            f"hparam/{k}": float(results[k])
            for k in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_accuracy", "train_loss")
            if isinstance(results.get(k), (int, float)) and math.isfinite(results[k])
        }
        for summary in hparams(config, metrics):
            self.writer.file_writer.add_summary(summary)
        step = global_step(trainer)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
