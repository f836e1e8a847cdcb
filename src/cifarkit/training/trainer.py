"""The training loop and its state: train step, epochs, test evaluation, EMA and Lookahead, exact resume.

Design choices, each for speed or reproducibility:
- the whole dataset sits on the device as uint8; batches are index_select + batched augmentation
  (batches.BatchStream), with draws that are pure functions of (seed, epoch, step), so resuming at any
  step reproduces the uninterrupted run without replaying RNGs;
- losses and accuracies accumulate on the device; the host syncs only every few steps (progress bar).
The Trainer writes only through its RunDir (metrics.csv, the checkpoint); run.py and the report package write
the rest.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config.train_config import TrainConfig
from ..data.batches import BatchStream, Pruning
from ..data.dataset import Dataset
from ..data.loading import load_run_data, run_view
from ..errors import Diverged, UserError
from ..evaluate.metrics import loss_and_correct, predict_logits
from ..models.nets import count_parameters
from ..optim.lookahead import Lookahead
from ..optim.schedule import one_cycle
from ..rundir.checkpoint import RunState
from ..rundir.run_dir import RunDir
from ..runtime import distributed
from ..runtime.device import autocast, machine_info, setup_runtime
from ..runtime.progress import predicting, progress_bar
from .build import build_optimizer, freeze_stem, prepare_model, training_module
from .observer import Observer
from .resume import checkpoint_of
from .stopping import interrupted_by, stop_requests

# Steps between host syncs (progress bar, NaN check): a sync stalls a GPU's queue, but costs a CPU nothing.
SYNC_EVERY = {"cpu": 1, "cuda": 10, "mps": 10}


class Trainer:
    """Owns the model, optimiser, schedule and data of one run, and its run folder."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | os.PathLike,
        data: Dataset | None = None,
        max_lr: float | None = None,
        max_lr_source: str = "config",
        progress: bool = True,
        checkpoint_every: int = 0,
        observers: Sequence[Observer] = (),
    ):
        self.config = config  # validated by run.train (or the caller)
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.device, self.dtype = setup_runtime(config)
        self.dist = distributed.current()
        self.run.writes = self.run.writes and self.dist.is_main  # rank 0 alone writes the run folder
        self.progress = progress and self.dist.is_main
        self.checkpoint_every = checkpoint_every
        self.observers = list(observers)
        if data is None:
            data = load_run_data(config, progress=self.progress)
        self.data = run_view(data, config).to(self.device)
        self.batches = BatchStream(self.data, config, self.device)  # normalises with the training images' stats
        self.mean, self.std = self.batches.augment.mean, self.batches.augment.std
        self.pruning = Pruning(self.batches) if config.prune_easy else None  # InfoBatch, see batches.py
        if self.pruning is not None and self.dist.enabled:
            raise UserError("--prune-easy under torchrun: not supported (a process sees only its share's losses)")
        self.model = prepare_model(
            config, self.device, len(self.data.classes), self.data.train_images, self.mean, self.std
        )
        if self.dist.enabled and config.sync_bn:
            if self.device.type != "cuda":
                raise UserError("--sync-bn: PyTorch's SyncBatchNorm runs on CUDA only; drop the flag on CPU")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.train_model = training_module(self.model, self.device, self.dist.enabled, config.compile)
        if max_lr is None:
            if isinstance(config.max_lr, str):
                raise ValueError("max_lr='find': run the range test (cifarkit.training.run.train does) and pass max_lr")
            max_lr = float(config.max_lr)
        self.max_lr, self.max_lr_source = max_lr, max_lr_source
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.optimizer = build_optimizer(self.model, config, max_lr, self.device, self.dtype)
        self.scheduler = one_cycle(self.optimizer, config, max_lr, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        # the weight average (BatchNorm buffers included) that is evaluated and saved when ema_decay > 0
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema_decay
            else None
        )
        self.lookahead = (
            Lookahead(self.model, config.lookahead_decay, config.lookahead_every, config.epochs * self.steps_per_epoch)
            if config.lookahead_decay
            else None
        )
        self.state = RunState()
        self._process_start, self._wall_before = time.perf_counter(), 0.0  # the wall clock; fit() restarts it
        self.test_logits: torch.Tensor | None = None  # of the latest test evaluation, single process only
        self.eval_seconds = 0.0  # this process's, in evaluate(): the timing breakdown of run.train

    @property
    def eval_model(self) -> nn.Module:
        """The model that is evaluated, reported and saved for inference: the EMA when on."""
        return self.ema.module if self.ema is not None else self.model

    # -- checkpoints -------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        # the wall clock up to now, as the train seconds are: a run killed after this checkpoint and resumed
        # accounts its time the same way in both (wall >= train)
        self.state.wall_seconds = self._wall_before + time.perf_counter() - self._process_start
        return self.run.save_checkpoint(checkpoint_of(self))

    # -- the loop ----------------------------------------------------------------------------------

    def train_step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        global_size: int | None = None,
        weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on (this rank's slice of) a batch of augmented images.

        `global_size` is the size of the whole batch over all ranks; `weights`, each image's weight in the mean loss.
        Returns (summed loss, correct count) of this rank's images, on the device; with --prune-easy each image's
        loss is left in `self.image_losses`."""
        cfg = self.config
        with autocast(self.device, self.dtype):
            logits = self.train_model(images)
        if self.pruning is None:
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
            summed = loss.detach() * len(labels)
        else:
            per_image = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing, reduction="none")
            loss, self.image_losses = (per_image if weights is None else per_image * weights).mean(), per_image.detach()
            summed = self.image_losses.sum()
        # DDP averages over ranks: each rank's mean weighted by its share of the batch gives the global mean's gradient
        share = len(labels) * self.dist.world_size / (global_size or len(labels))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * share if share != 1.0 else loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.lookahead is not None:
            self.lookahead.after_step(self.scheduler.last_epoch)  # the scheduler counts the run's steps
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return summed, (logits.argmax(1) == labels).sum()

    def images_of_epoch(self, epoch: int) -> torch.Tensor:
        """The images of `epoch` in order (with --prune-easy, what the losses at the epoch's start leave)."""
        if self.pruning is None:
            return self.batches.order(epoch)
        return self.pruning.order(epoch, self.state.step_in_epoch)

    def global_batch(self, order: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of `epoch`, augmented: the same on every rank, which then trains on its slice."""
        return self.batches.batch(order, epoch, step)

    def train_epoch(self, stop: dict[str, int]) -> float:
        """Run the rest of the current epoch; returns the lr of its last step."""
        cfg, s = self.config, self.state
        self.model.train()  # evaluation switched BatchNorm to its running statistics
        if cfg.stem_bias_epochs and s.epoch >= cfg.stem_bias_epochs and freeze_stem(self.model):
            self.train_model = training_module(self.model, self.device, self.dist.enabled, cfg.compile)
        order = self.images_of_epoch(s.epoch)
        # this process's sums of this rank's images; added to the run state (all ranks) at sync points
        # float64: sums of float32 losses stay exact, so a resumed run adds up to the same numbers (MPS lacks it)
        rank_sums = torch.zeros(
            2, device=self.device, dtype=torch.float32 if self.device.type == "mps" else torch.float64
        )
        base_loss, base_correct = s.loss_sum, s.correct
        bar = progress_bar(
            self.steps_per_epoch, f"epoch {s.epoch + 1}/{cfg.epochs}", self.progress, initial=s.step_in_epoch
        )
        started = time.perf_counter()
        base_seconds, base_seen = s.train_seconds, s.seen
        sync_every = SYNC_EVERY.get(self.device.type, 10)
        try:
            while s.step_in_epoch < self.steps_per_epoch:
                step = s.step_in_epoch
                x, y = self.global_batch(order, s.epoch, step)
                global_size = len(y)
                x, y = self.dist.shard(x), self.dist.shard(y)
                lrs = [group["lr"] for group in self.optimizer.param_groups]
                lr = lrs[0]
                weights = None if self.pruning is None else self.pruning.weights(order, s.epoch, step)
                batch_loss, batch_correct = self.train_step(x, y, global_size, weights)
                if self.pruning is not None:
                    self.pruning.record(order, step, self.image_losses)
                s.step_in_epoch += 1
                s.seen += global_size
                rank_sums += torch.stack([batch_loss.to(rank_sums.dtype), batch_correct.to(rank_sums.dtype)])
                bar.update(1)
                at_end = s.step_in_epoch == self.steps_per_epoch
                if at_end or s.step_in_epoch % sync_every == 0 or self.checkpoint_due():
                    # sync point: the host reads the device's numbers (and the ranks each other's) only here
                    totals = self.dist.sum(rank_sums.clone())
                    if not math.isfinite(totals[0].item()):  # a NaN/inf loss since the last sync (on CPU: this step)
                        saved = (
                            f"The last good checkpoint is {self.run.checkpoint}"
                            if self.run.checkpoint.exists()
                            else "No checkpoint was written yet"
                        )
                        raise Diverged(
                            f"the loss became {totals[0].item()} at epoch {s.epoch + 1}, step {step + 1} "
                            f"(lr {lr:.3g}); training stopped. {saved}; try a lower --max-lr"
                        )
                    s.loss_sum, s.correct = base_loss + totals[0].item(), base_correct + int(totals[1].item())
                    s.train_seconds = base_seconds + time.perf_counter() - started
                    for observer in self.observers:  # this step's mean loss (this rank's) and the lrs it used
                        observer.after_sync(self, batch_loss.item() / len(y), lrs)
                    bar.set_postfix(
                        loss=f"{s.loss_sum / s.seen:.3f}",
                        acc=f"{s.correct / s.seen:.3f}",
                        lr=f"{lr:.2e}",
                        img_s=f"{(s.seen - base_seen) / max(s.train_seconds - base_seconds, 1e-9):.0f}",
                    )
                    stopping = self.dist.any(bool(stop["signal"]), self.device)
                    if stopping and not at_end:  # at the end, fit() first finishes the epoch
                        self.save_checkpoint()
                        raise interrupted_by(stop)
                    if self.checkpoint_due() and not at_end:
                        self.save_checkpoint()
        finally:
            bar.close()
        return lr

    def checkpoint_due(self) -> bool:
        """--checkpoint-every N: a checkpoint is due after every N-th step of an epoch."""
        return bool(self.checkpoint_every) and self.state.step_in_epoch % self.checkpoint_every == 0

    def fit(self) -> dict[str, Any]:
        """Train for the configured epochs (from the current state), writing metrics.csv and the checkpoint
        after every epoch; returns the results (see `results`)."""
        cfg, s = self.config, self.state
        self._process_start, self._wall_before = time.perf_counter(), s.wall_seconds
        with stop_requests() as stop:
            while s.epoch < cfg.epochs:
                last_lr = self.train_epoch(stop)
                last = s.epoch + 1 == cfg.epochs
                due = last or bool(cfg.eval_every and (s.epoch + 1) % cfg.eval_every == 0)
                validating = self.data.val_labels is not None
                # not evaluated this epoch: nan in metrics.csv, a gap in the curves. With a validation
                # split, validation runs when due and the test set only after the last epoch.
                val_loss, val_acc = self.evaluate("val") if validating and due else (math.nan, math.nan)
                test_loss, test_acc = (
                    self.evaluate("test") if last or (due and not validating) else (math.nan, math.nan)
                )
                row = {
                    "epoch": s.epoch + 1,
                    "lr": last_lr,
                    "train_loss": s.loss_sum / s.seen,
                    "train_acc": s.correct / s.seen,
                    **({"val_loss": val_loss, "val_acc": val_acc} if validating else {}),
                    "test_loss": test_loss,
                    "test_acc": test_acc,
                    "images_per_s": s.seen / s.train_seconds,
                    "seconds": s.train_seconds,
                }
                s.history.append(row)
                s.epoch += 1
                s.step_in_epoch, s.loss_sum, s.correct, s.seen, s.train_seconds = 0, 0.0, 0, 0, 0.0
                self.run.write_metrics(s.history)
                self.save_checkpoint()
                if self.progress:
                    tested = (f"val loss {val_loss:.4f} acc {val_acc:.2%}  " if math.isfinite(val_acc) else "") + (
                        f"test loss {test_loss:.4f} acc {test_acc:.2%}" if math.isfinite(test_acc) else "test -"
                    )
                    print(
                        f"epoch {row['epoch']:>3}/{cfg.epochs}  lr {row['lr']:.2e}  "
                        f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  {tested}  "
                        f"{row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s",
                        file=sys.stderr,
                    )
                for observer in self.observers:
                    observer.after_epoch(self, row)
                if self.dist.any(bool(stop["signal"]), self.device):
                    raise interrupted_by(stop)
        results = self.results()
        for observer in self.observers:
            observer.at_end(self, results)
        return results

    def evaluate(self, split: str = "test") -> tuple[float, float]:
        """(mean cross-entropy, accuracy) of the "test" or "val" images; under torchrun each rank scores a slice."""
        started = time.perf_counter()
        all_images, all_labels = getattr(self.data, f"{split}_images"), getattr(self.data, f"{split}_labels")
        images, labels = self.dist.shard(all_images), self.dist.shard(all_labels)
        # the last test with six views takes minutes on a CPU: a bar says how far it is
        cfg = self.config
        with progress_bar(
            len(images),
            predicting("testing" if split == "test" else "validating", cfg.tta, cfg.tta_below),
            self.progress,
            unit="img",
        ) as bar:
            logits = self.predict(images, bar.update)
        if split == "test":  # the plots at the end use these rather than predicting again (TTA makes that costly)
            self.test_logits = logits if self.dist.world_size == 1 else None
        sums = self.dist.sum(loss_and_correct(logits, labels))
        self.eval_seconds += time.perf_counter() - started
        return sums[0].item() / len(all_labels), sums[1].item() / len(all_labels)

    def predict(self, images: torch.Tensor, on_batch: Callable[[int], object] | None = None) -> torch.Tensor:
        """The evaluated model's logits for uint8 images, normalised as in training, with the run's TTA
        (`on_batch`: see metrics.predict_logits)."""
        cfg = self.config
        return predict_logits(
            self.eval_model,
            images,
            cfg.eval_batch_size,
            self.dtype,
            cfg.channels_last,
            cfg.tta,
            self.mean,
            self.std,
            cfg.tta_below,
            on_batch,
        )

    def final_test_logits(self) -> torch.Tensor:
        """The final model's test-set logits: those of the last evaluation (TTA makes predicting again costly)."""
        if self.test_logits is not None:
            return self.test_logits
        cfg = self.config
        with progress_bar(
            len(self.data.test_labels), predicting("testing", cfg.tta, cfg.tta_below), self.progress, unit="img"
        ) as bar:
            return self.predict(self.data.test_images, bar.update)

    def results(self) -> dict[str, Any]:
        """The final numbers of the run (results.json): those of the last epoch, never a best one."""
        s, cfg = self.state, self.config
        last = s.history[-1]
        train_images = sum(r["images_per_s"] * r["seconds"] for r in s.history)
        train_seconds = sum(r["seconds"] for r in s.history)
        return {
            "preset": cfg.preset,
            "model": cfg.model,
            "params": count_parameters(self.model),
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "steps": self.scheduler.last_epoch,
            "dataset": cfg.dataset,
            "classes": len(self.data.classes),
            "image_size": self.data.image_size,
            "test_accuracy": last["test_acc"],
            "test_loss": last["test_loss"],
            **(
                {"val_accuracy": last["val_acc"], "val_loss": last["val_loss"], "n_val": len(self.data.val_labels)}
                if self.data.val_labels is not None
                else {}
            ),
            "train_accuracy": last["train_acc"],
            "train_loss": last["train_loss"],
            "train_images_per_second": train_images / train_seconds,
            "train_seconds": train_seconds,
            "train_images_seen": round(train_images),  # fewer than epochs x n_train with --prune-easy
            "wall_time_s": s.wall_seconds,
            "max_lr": self.max_lr,
            "max_lr_source": self.max_lr_source,
            "dtype": str(self.dtype).replace("torch.", ""),
            "channels_last": cfg.channels_last,
            "ema_decay": cfg.ema_decay,
            "tta": cfg.tta,
            "seed": cfg.seed,
            "processes": self.dist.world_size,
            "n_train": len(self.data.train_labels),
            "n_test": len(self.data.test_labels),
            "data": str(self.data.root),
            "data_layout": self.data.layout,
            **machine_info(self.device),
        }
