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

from ..config.train_config import TrainConfig
from ..data.batches import BatchStream, Pruning
from ..data.dataset import Dataset
from ..data.loading import load_run_data, run_view
from ..errors import UserError
from ..optim.schedule import one_cycle
from ..rundir.checkpoint import RunState
from ..rundir.run_dir import RunDir
from ..runtime import distributed
from ..runtime.device import autocast, setup_runtime
from ..runtime.progress import progress_bar
from .build import build_optimizer, configured_max_lr, freeze_stem, run_model, training_module, weight_averages
from .evaluation import evaluate_split, predict_images, predict_test_set
from .observer import Observer
from .results import results_of
from .resume import checkpoint_of
from .stopping import interrupted_by, stop_requests
from .tally import EpochTally, diverged, epoch_line

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
        self.model = run_model(config, self.device, self.dist.enabled, self.data, self.mean, self.std)
        self.train_model = training_module(self.model, self.device, self.dist.enabled, config.compile)
        self.max_lr, self.max_lr_source = max_lr if max_lr is not None else configured_max_lr(config), max_lr_source
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.optimizer = build_optimizer(self.model, config, self.max_lr, self.device, self.dtype)
        self.scheduler = one_cycle(self.optimizer, config, self.max_lr, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.ema, self.lookahead = weight_averages(self.model, config, config.epochs * self.steps_per_epoch)
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
        s = self.state
        self._freeze_stem_when_due()
        self.model.train()  # evaluation switched BatchNorm to its running statistics
        order = self.images_of_epoch(s.epoch)
        bar = progress_bar(
            self.steps_per_epoch, f"epoch {s.epoch + 1}/{self.config.epochs}", self.progress, initial=s.step_in_epoch
        )
        tally = EpochTally.start(s, self.device)
        sync_every = SYNC_EVERY.get(self.device.type, 10)
        try:
            while s.step_in_epoch < self.steps_per_epoch:
                batch_loss, batch_images, lrs = self._train_next_batch(order, tally)
                bar.update(1)
                at_end = s.step_in_epoch == self.steps_per_epoch
                if at_end or s.step_in_epoch % sync_every == 0 or self.checkpoint_due():
                    self._sync(tally, bar, batch_loss, batch_images, lrs)
                    self._checkpoint_or_stop_if_asked(stop, at_end)
        finally:
            bar.close()
        return lrs[0]

    def _freeze_stem_when_due(self) -> None:
        """--stem-bias-epochs N: from epoch N on the stem's bias stops training (the step's module is rebuilt)."""
        cfg = self.config
        if cfg.stem_bias_epochs and self.state.epoch >= cfg.stem_bias_epochs and freeze_stem(self.model):
            self.train_model = training_module(self.model, self.device, self.dist.enabled, cfg.compile)

    def _train_next_batch(self, order: torch.Tensor, tally: EpochTally) -> tuple[torch.Tensor, int, list[float]]:
        """One step on the epoch's next batch (this rank's slice of it), added to the tally on the device.
        Returns the step's summed loss, this rank's number of its images, and the lrs it used."""
        s = self.state
        step = s.step_in_epoch
        x, y = self.global_batch(order, s.epoch, step)
        global_size = len(y)
        x, y = self.dist.shard(x), self.dist.shard(y)
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        weights = None if self.pruning is None else self.pruning.weights(order, s.epoch, step)
        batch_loss, batch_correct = self.train_step(x, y, global_size, weights)
        if self.pruning is not None:
            self.pruning.record(order, step, self.image_losses)
        s.step_in_epoch += 1
        s.seen += global_size
        tally.add(batch_loss, batch_correct)
        return batch_loss, len(y), lrs

    def _sync(self, tally: EpochTally, bar: Any, batch_loss: torch.Tensor, batch_images: int, lrs: list[float]) -> None:
        """A sync point, where alone the host reads the device's numbers (and the ranks each other's): a NaN/inf
        loss ends the run; else the run state takes the sums, and the observers and the bar are told."""
        totals = self.dist.sum(tally.rank_sums.clone())
        if not math.isfinite(totals[0].item()):  # a NaN/inf loss since the last sync (on CPU: this step)
            raise diverged(totals[0].item(), self.state, lrs[0], self.run.checkpoint)
        tally.read_into(self.state, totals)
        for observer in self.observers:  # this step's mean loss (this rank's) and the lrs it used
            observer.after_sync(self, batch_loss.item() / batch_images, lrs)
        bar.set_postfix(**tally.postfix(self.state, lrs[0]))

    def _checkpoint_or_stop_if_asked(self, stop: dict[str, int], at_end: bool) -> None:
        """Within an epoch: on a stop request (from any rank) save the checkpoint and end the run; else save it
        when --checkpoint-every says so. At the epoch's end fit() does both, after finishing the epoch."""
        stopping = self.dist.any(bool(stop["signal"]), self.device)  # every rank takes part, at the end too
        if at_end:
            return
        if stopping:
            self.save_checkpoint()
            raise interrupted_by(stop)
        if self.checkpoint_due():
            self.save_checkpoint()

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
                row = self._evaluate_epoch(last_lr=self.train_epoch(stop))
                s.history.append(row)
                s.epoch += 1
                s.step_in_epoch, s.loss_sum, s.correct, s.seen, s.train_seconds = 0, 0.0, 0, 0, 0.0
                self.run.write_metrics(s.history)
                self.save_checkpoint()
                if self.progress:
                    print(epoch_line(row, cfg.epochs), file=sys.stderr)
                for observer in self.observers:
                    observer.after_epoch(self, row)
                if self.dist.any(bool(stop["signal"]), self.device):
                    raise interrupted_by(stop)
        results = self.results()
        for observer in self.observers:
            observer.at_end(self, results)
        return results

    def _evaluate_epoch(self, last_lr: float) -> dict[str, Any]:
        """The epoch's row of metrics.csv, evaluated when due. Not evaluated this epoch: nan, a gap in the curves.
        With a validation split, validation runs when due and the test set only after the last epoch."""
        cfg, s = self.config, self.state
        last = s.epoch + 1 == cfg.epochs
        due = last or bool(cfg.eval_every and (s.epoch + 1) % cfg.eval_every == 0)
        validating = self.data.val_labels is not None
        val_loss, val_acc = self.evaluate("val") if validating and due else (math.nan, math.nan)
        test_loss, test_acc = self.evaluate("test") if last or (due and not validating) else (math.nan, math.nan)
        return {
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

    def evaluate(self, split: str = "test") -> tuple[float, float]:
        """(mean cross-entropy, accuracy) of the "test" or "val" images; under torchrun each rank scores a slice."""
        return evaluate_split(self, split)

    def predict(self, images: torch.Tensor, on_batch: Callable[[int], object] | None = None) -> torch.Tensor:
        """The evaluated model's logits for uint8 images, normalised as in training, with the run's TTA
        (`on_batch`: see metrics.predict_logits)."""
        return predict_images(self, images, on_batch)

    def final_test_logits(self) -> torch.Tensor:
        """The final model's test-set logits: those of the last evaluation (TTA makes predicting again costly)."""
        return self.test_logits if self.test_logits is not None else predict_test_set(self)

    def results(self) -> dict[str, Any]:
        """The final numbers of the run (results.json): those of the last epoch, never a best one."""
        return results_of(self)
