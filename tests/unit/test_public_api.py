import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "loadgen",
        "analysis",
        "loadgen.storage",
        "loadgen.server",
        "loadgen.transports",
        "loadgen.engine",
        "loadgen.scrape",
        "loadgen.inputs",
    ],
)
def test_all_names_resolve(module: str) -> None:
    mod = importlib.import_module(module)
    names = mod.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"


def test_analysis_exports_what_notebooks_need() -> None:
    import analysis

    for name in (
        "load_run",
        "load_run_data",
        "steps_frame",
        "batch_stats_frame",
        "metrics_frame",
        "benchmark_table",
        "compare_runs",
        "run_findings",
        "build_report",
    ):
        assert name in analysis.__all__
