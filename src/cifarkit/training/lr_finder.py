"""The LR range test (Smith 2015, as the S10 notebook ran it with torch-lr-finder) and a robust suggestion.

The sweep itself is torch-lr-finder's: exponential lr steps, exponentially smoothed loss, stop on
divergence, model and optimiser restored afterwards. We feed it our on-device augmented batches and
pick the suggestion ourselves, with guards the library's `suggest_lr` lacks.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch_lr_finder import LRFinder, TrainDataLoaderIter

from ..config.train_config import TrainConfig
from ..data.batches import BatchStream
from ..data.dataset import Dataset
from ..data.loading import run_view
from ..errors import UserError
from ..report.figures import plot_lr_find
from ..rundir.outputs import data_areas, refuse_inside_data
from ..rundir.run_dir import CONFIG, LR_FIND_JSON, LR_FIND_PLOT, RunDir
from ..runtime.device import restored_on_exit, setup_runtime
from ..runtime.invoked import program
from .build import build_optimizer, prepare_model

SKIP_START, SKIP_END = 10, 5  # the first steps are noise around the initial loss, the last ones diverge
MIN_DISTINCT_BATCHES = 5  # fewer distinct batches than this: the sweep mostly replays the same images


@dataclass
class RangeTestResult:
    lrs: list[float]
    losses: list[float]  # exponentially smoothed, as torch-lr-finder records them
    suggestion: float  # steepest descent of the smoothed loss, before its minimum
    suggestion_index: int
    min_loss_lr: float
    min_loss_index: int
    diverged_at: int | None  # step where the sweep stopped early, if it did
    start_lr: float
    end_lr: float
    num_iter: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def keep_group_scales(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Inside, every optimiser step runs each parameter group at its `lr_scale` times the lr set on it.

    torch-lr-finder sets one lr on all groups; with `--norm-lr-scale K` the training runs BatchNorm
    and bias parameters at K times the weights' lr, so the sweep must too for its suggestion (the
    weights' lr) to mean what `--max-lr` means.
    """
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]

    def rescale(opt: torch.optim.Optimizer, up: bool) -> None:
        for group, scale in zip(opt.param_groups, scales):
            group["lr"] = group["lr"] * scale if up else group["lr"] / scale

    hooks = [
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: rescale(opt, True)),
        optimizer.register_step_post_hook(lambda opt, args, kwargs: rescale(opt, False)),
    ]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


class _Diverged(Exception):
    pass


class _Finder(LRFinder):
    """torch-lr-finder, stopping at the first non-finite loss (its own check misses NaN)."""

    def _train_batch(self, train_iter, accumulation_steps, non_blocking_transfer=True):
        loss = super()._train_batch(train_iter, accumulation_steps, non_blocking_transfer)
        if not math.isfinite(loss):
            raise _Diverged(loss)
        return loss


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: BatchStream,
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype,
    start_lr: float,
    end_lr: float,
    num_iter: int,
    progress: bool = True,
) -> RangeTestResult:
    """Sweep the lr (of the weights; other groups keep their `lr_scale` multiple) from start_lr to end_lr on
    `batches` (a BatchStream of training images); model and optimizer are restored afterwards."""
    if not (0 < start_lr < end_lr):
        raise UserError(f"--start-lr {start_lr} / --end-lr {end_lr}: need 0 < start-lr < end-lr")
    if num_iter < SKIP_START + SKIP_END + 5:
        raise UserError(
            f"--num-iter {num_iter}: too few steps for a reliable suggestion; use at least {SKIP_START + SKIP_END + 5}"
        )
    amp = (
        {
            "amp_backend": "torch",
            "amp_config": {"device_type": device.type, "dtype": dtype},
            "grad_scaler": torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        }
        if dtype != torch.float32
        else {}
    )

    def criterion(logits, labels):
        return F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)

    finder = _Finder(model, optimizer, criterion, device=device, **amp)
    batches = TrainDataLoaderIter(batches)
    diverged_at = None
    try:
        with contextlib.ExitStack() as scope:
            # torch-lr-finder prints a line of advice for its own API ("See the graph with ...plot()") and, unless
            # asked for progress, its tqdm bar is not wanted either
            scope.enter_context(contextlib.redirect_stdout(io.StringIO()))
            if not progress:
                scope.enter_context(contextlib.redirect_stderr(io.StringIO()))
            scope.enter_context(keep_group_scales(optimizer))
            finder.range_test(
                batches,
                start_lr=start_lr,
                end_lr=end_lr,
                num_iter=num_iter,
                step_mode="exp",
                smooth_f=0.05,
                diverge_th=5,
            )
    except _Diverged:
        diverged_at = len(finder.history["loss"])
    finally:
        finder.reset()  # the weights and optimiser state from before the sweep
    lrs, losses = list(finder.history["lr"]), list(finder.history["loss"])
    if diverged_at is None and len(losses) < num_iter:
        diverged_at = len(losses)
    return suggest(lrs[: len(losses)], losses, start_lr, end_lr, num_iter, diverged_at)


def suggest(
    lrs: list[float], losses: list[float], start_lr: float, end_lr: float, num_iter: int, diverged_at: int | None = None
) -> RangeTestResult:
    """The steepest descent of the smoothed loss (per log-lr), between the skipped start and the minimum."""
    if not losses or not math.isfinite(losses[0]):
        raise UserError(
            f"the range test's loss is {losses[0] if losses else 'missing'} from the first step at "
            f"lr {start_lr:g}: the model diverges even there; try a lower --start-lr (e.g. "
            f"{start_lr / 100:g}) or check the data"
        )
    finite = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    lrs, losses = lrs[:finite], losses[:finite]
    y, log_lr = np.array(losses), np.log10(np.array(lrs))
    lo, hi = SKIP_START, len(y) - SKIP_END
    if hi - lo < 5:
        raise UserError(
            f"the range test stopped after {len(y)} steps (the loss diverged at lr {lrs[-1]:.3g}), "
            f"too early for a suggestion; try --start-lr {start_lr / 10:g} --end-lr {lrs[-1]:.3g}"
        )
    min_index = lo + int(np.argmin(y[lo:hi]))
    if min_index <= lo or y[min_index] > 0.98 * y[lo]:
        if y[hi - 1] > 1.05 * y[lo]:  # it rose: even the start of the range is too hot
            advice = f"a lower range, e.g. --start-lr {start_lr / 100:g} --end-lr {start_lr * 10:g}"
        else:  # flat: the whole range is too timid to move the weights
            advice = f"a higher range, e.g. --start-lr {end_lr / 10:g} --end-lr {end_lr * 1000:g}"
        raise UserError(
            f"the loss never descended between lr {lrs[lo]:.3g} and {lrs[hi - 1]:.3g} "
            f"(from {y[lo]:.4f}, lowest {y[min_index]:.4f}, last {y[hi - 1]:.4f}); no lr in this range "
            f"trains the model. Try {advice}"
        )
    slope = np.gradient(y, log_lr)
    best = lo + int(np.argmin(slope[lo:min_index]))
    return RangeTestResult(
        lrs=lrs,
        losses=losses,
        suggestion=float(lrs[best]),
        suggestion_index=best,
        min_loss_lr=float(lrs[min_index]),
        min_loss_index=min_index,
        diverged_at=diverged_at,
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
    )


def range_test_folder(out: str | os.PathLike, config: TrainConfig | None = None) -> RunDir:
    """The folder for a range test's lr_find.{json,png}, refused before the sweep where it cannot take them: a file,
    a training run's folder (its range test files are what that run used: never replaced by another test), a folder
    that is not an earlier range test's (a user's lr_find.json is theirs), or one inside the data `config` reads."""
    run = RunDir(out)
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"--out {out}: a file, not a folder; choose another --out")
    if config is not None:
        refuse_inside_data(out, "--out", *data_areas(config.dataset, config.data_dir))
    if os.path.lexists(run / CONFIG):  # a training run's, or a user's folder: either way, not a range test's
        raise UserError(
            f"--out {out}: holds a training run, whose range test files this would replace; choose another --out"
        )
    others = run.foreign_files()
    if others:
        raise UserError(
            f"--out {out}: a folder of other files ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}), not an earlier range test's; choose a new or empty "
            "folder"
        )
    return run


def find_lr(
    config: TrainConfig, data: Dataset, run_dir: str | os.PathLike | RunDir, progress: bool = True
) -> RangeTestResult:
    """Run the range test for `config` (its model, optimiser, augmentation) on the training images it selects
    (limit_train, without the val_split) and write lr_find.{json,png}. The caller's torch thread count and
    random state are as they were when it returns."""
    if not isinstance(config, TrainConfig):
        raise UserError(f"config: a cifarkit.TrainConfig (e.g. preset_config('s10')), not {type(config).__name__}")
    if config.optimizer == "muon":
        raise UserError(
            "lr-find with --optimizer muon: the range test sweeps one lr, and Muon's filters have their "
            f"own (--muon-lr); give both (or search them with `{program()} sweep`)"
        )
    # a RunDir was checked already: a training run's own range test, or the CLI's --out
    run = run_dir if isinstance(run_dir, RunDir) else range_test_folder(run_dir, config)
    with restored_on_exit():
        result = _sweep(config, run_view(data, config), progress)
    run.write_json(LR_FIND_JSON, result.to_dict())
    if run.writes:
        plot_lr_find(result, run.output(LR_FIND_PLOT))
    return result


def _sweep(config: TrainConfig, data: Dataset, progress: bool) -> RangeTestResult:
    device, dtype = setup_runtime(config)
    data = data.to(device)
    batches = BatchStream(data, config, device, purpose="lr-find")  # training images only, never the test set
    if batches.steps_per_epoch < MIN_DISTINCT_BATCHES:
        warnings.warn(
            f"the range test sees only {len(data.train_labels)} training image(s), "
            f"{batches.steps_per_epoch} batch(es) of --batch-size {config.batch_size}, again and again: "
            "its curve shows how fast the model memorises them, and the suggestion may not carry over "
            "to the whole training set",
            stacklevel=3,
        )
    model = prepare_model(
        config, device, len(data.classes), data.train_images, batches.augment.mean, batches.augment.std
    )
    optimizer = build_optimizer(model, config, config.lr_find_start, device, dtype)
    return range_test(
        model,
        optimizer,
        batches,
        config,
        device,
        dtype,
        config.lr_find_start,
        config.lr_find_end,
        config.lr_find_iters,
        progress=progress,
    )
