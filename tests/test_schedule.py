import pytest

from cifarkit.config.train_config import TrainConfig
from cifarkit.errors import UserError
from cifarkit.optim.schedule import planned_schedule, steps_per_epoch


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


def test_s10_best_warms_up_to_epoch_5_then_ends_near_zero():
    from cifarkit.config.train_config import preset_config

    cfg = preset_config("s10-best")
    lrs = planned_schedule(cfg, max_lr=cfg.max_lr, steps_per_epoch=98)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert peak == 5 * 98 - 1 and lrs[peak] == pytest.approx(0.4)
    assert lrs[0] == pytest.approx(0.02)
    assert lrs[-1] < 1e-4 * 0.4 * 10  # ends near zero
    assert all(b <= a for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # then only decays


def test_fast_schedule_is_a_triangle_from_0_2_to_1_to_0_07_of_the_peak():
    from cifarkit.config.train_config import preset_config

    cfg = preset_config("fast-v1")
    lrs = planned_schedule(cfg, max_lr=cfg.max_lr, steps_per_epoch=49)  # 50,000 / 1024
    total = len(lrs)
    assert total == cfg.epochs * 49
    peak = max(range(total), key=lrs.__getitem__)
    assert abs(peak - (0.23 * total - 1)) <= 1  # OneCycleLR's warm-up ends at step pct_start * total - 1
    assert lrs[0] == pytest.approx(0.2 * cfg.max_lr)
    assert lrs[-1] == pytest.approx(0.07 * cfg.max_lr, rel=0.02)


@pytest.mark.parametrize("three_phase", [False, True])
def test_a_peak_on_the_first_step_is_refused_by_name(three_phase):
    # 2 epochs x 10 steps x 0.05 = step 1: OneCycleLR's rise would have no length (a ZeroDivisionError)
    cfg = TrainConfig(epochs=2, pct_start=0.05, three_phase=three_phase)
    with pytest.raises(
        UserError,
        match=r"--pct-start 0.05 of 20 steps \(2 epoch\(s\) x 10 steps\) puts the lr peak "
        r"on the first step",
    ):
        planned_schedule(cfg, max_lr=0.1, steps_per_epoch=10)
    assert len(planned_schedule(cfg, max_lr=0.1, steps_per_epoch=11)) == 22  # one step more and it is a schedule
