"""The load engine: schedules load, cuts measurement windows, emits step results."""

from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.recorder import Window
from loadgen.engine.step import Listeners, StepListener, is_stable, measure_step
from loadgen.engine.sweep import run_sweep

__all__ = ["ClosedLoop", "Listeners", "StepListener", "Window", "is_stable", "measure_step", "run_sweep"]
