import gc

from loadgen.engine import heap


def test_the_heap_is_frozen_while_any_load_runs_and_given_back_after_the_last() -> None:
    assert gc.get_freeze_count() == 0
    with heap.frozen():
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # every module and object alive before the load
        with heap.frozen():  # a second model measured at once
            pass
        assert gc.get_freeze_count() >= frozen  # the first load still runs: still frozen
    assert gc.get_freeze_count() == 0
