import pytest

from cifarkit.config import TrainConfig
from cifarkit.schedule import planned_schedule, steps_per_epoch


def test_seed_one_cycle_shape():
    cfg = TrainConfig()
    lrs = planned_schedule(cfg, max_lr=4.51e-2, steps_per_epoch=98)
    assert len(lrs) == 24 * 98 == 2352
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert peak == 5 * 98 - 1  # the last step of epoch 5
    assert lrs[peak] == pytest.approx(4.51e-2)
    assert lrs[0] == pytest.approx(4.51e-4)  # div 100
    assert lrs[-1] == pytest.approx(4.51e-6, rel=1e-3)  # then final div 100
    mid_up, mid_down = lrs[peak // 2], lrs[(peak + len(lrs)) // 2]
    assert mid_up == pytest.approx((4.51e-4 + 4.51e-2) / 2, rel=0.02)  # linear, two phases
    assert mid_down == pytest.approx((4.51e-2 + 4.51e-6) / 2, rel=0.02)


def test_steps_per_epoch_keeps_the_last_partial_batch():
    assert steps_per_epoch(50_000, 512) == 98
    assert steps_per_epoch(1024, 512) == 2
