"""The optimisers and the schedule: Muon, Lookahead, One Cycle (a pure function of the step)."""

from .lookahead import Lookahead
from .muon import Muon
from .schedule import check_schedule, one_cycle, planned_schedule, steps_per_epoch

__all__ = ["Lookahead", "Muon", "check_schedule", "one_cycle", "planned_schedule", "steps_per_epoch"]
