"""How often `compare`'s verdicts are wrong on this machine (issue 20): an A/A and an A/B study.

    .venv/bin/python benchmarks/verdicts.py                       # 20 pairs each (about 12 minutes)
    .venv/bin/python benchmarks/verdicts.py --pairs 5 --ab-pairs 5

One embedded Triton serves ``resnet``, ``fixed_latency`` (10 ms a request) and
``fixed_latency_slow``: a copy whose only change is its config, ``SERVICE_TIME_MS`` 11 (a known
10% slowdown). Every run is a real sweep stored in one SQLite file, then compared with the
defaults (throughput may drop 5%, p99 may rise 10%) three ways:

* **thresholds alone** (``compare --strict``): a change beyond a threshold is a regression;
* **window noise** (the verdict before issue 20): a change within the runs' window-to-window
  noise is not judged (the same runs compared without their stored intervals);
* **intervals** (the verdict now): a change must also be significant, 95% over the checks.

**A/A**: ``pairs`` pairs of identical ``resnet`` runs (concurrency 1 and 4), run back to back; a
regression in any of them is false. **A/B**: ``ab_pairs`` pairs of ``fixed_latency`` then
``fixed_latency_slow`` (concurrency 2); a pair not called a regression is a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from analysis.compare import Comparison, Thresholds, Verdict, compare_runs, load_comparison
from loadgen.config import MeasurementSettings, StopRule, SweepSettings
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.server.install import default_model_repository
from loadgen.server.ports import ServerPorts
from loadgen.storage import RunStore

MEASUREMENT = MeasurementSettings(
    measurement_interval_ms=1000, warmup_ms=500, max_windows=12, stop_when=(StopRule.parse("p99:5%"),)
)
"""resnet's steps run until p99's interval is within +-5% (12 s at most): a verdict on p99 needs one."""
LONGER = MeasurementSettings(measurement_interval_ms=2500, warmup_ms=500, max_windows=6)
"""fixed_latency serves 99 requests/s: 3 windows of 2.5 s give p99 the requests for an interval."""
RULES: dict[str, Callable[[RunStore, int, int], Comparison]] = {
    "thresholds alone": lambda s, b, n: load_comparison(s, b, n, Thresholds(noise_aware=False), force=True),
    "window noise": lambda s, b, n: compare_runs(
        s.get_run(b), s.steps(b), s.get_run(n), s.steps(n), Thresholds(), force=True
    ),
    "intervals": lambda s, b, n: load_comparison(s, b, n, Thresholds(), force=True),
}


def repository(into: Path) -> Path:
    """The demo models, plus fixed_latency_slow: fixed_latency with SERVICE_TIME_MS 11."""
    source = default_model_repository()
    repo = into / "models"
    repo.mkdir()
    for name in ("resnet", "fixed_latency"):
        shutil.copytree(source / name, repo / name)
    slow = repo / "fixed_latency_slow"
    shutil.copytree(source / "fixed_latency", slow)
    config = (slow / "config.pbtxt").read_text()
    config = config.replace('name: "fixed_latency"', 'name: "fixed_latency_slow"')
    config, changed = re.subn(r'(key: "SERVICE_TIME_MS"\s*value: \{ string_value: )"10"', r'\1"11"', config)
    assert changed == 1, "SERVICE_TIME_MS not found in fixed_latency's config"
    (slow / "config.pbtxt").write_text(config)
    return repo


async def sweep(server: EmbeddedServer, store: RunStore, model: str, levels: tuple[int, ...]) -> int:
    measurement = MEASUREMENT if model == "resnet" else LONGER
    settings = SweepSettings(
        model=model, levels=levels, url=server.grpc_url, metrics_url="", measurement=measurement
    )
    outcome = await execute_sweep(settings, store)
    assert outcome.status.value == "completed", outcome.error
    return outcome.run_id


def _explain(store: RunStore, base: int, new: int) -> None:
    for step in load_comparison(store, base, new, Thresholds(), force=True).steps:
        print(f"    {step.level:g}: {step.verdict} {'; '.join(step.reasons)}")


def verdicts(store: RunStore, base: int, new: int) -> dict[str, Verdict]:
    return {name: rule(store, base, new).verdict for name, rule in RULES.items()}


async def study(server: EmbeddedServer, store: RunStore, pairs: int, ab_pairs: int) -> None:
    aa: list[dict[str, Verdict]] = []
    ab: list[dict[str, Verdict]] = []
    aa_last: tuple[int, int] | None = None
    started = time.monotonic()
    for i in range(pairs):
        base = await sweep(server, store, "resnet", (1, 4))
        new = await sweep(server, store, "resnet", (1, 4))
        aa.append(verdicts(store, base, new))
        aa_last = (base, new)
        if aa[-1]["intervals"] is Verdict.REGRESSION:
            _explain(store, base, new)
        print(f"A/A {i + 1}/{pairs} (runs {base}, {new}): {aa[-1]}  [{time.monotonic() - started:.0f} s]")
    for i in range(ab_pairs):
        base = await sweep(server, store, "fixed_latency", (2,))
        new = await sweep(server, store, "fixed_latency_slow", (2,))
        ab.append(verdicts(store, base, new))
        print(f"A/B {i + 1}/{ab_pairs} (runs {base}, {new}): {ab[-1]}  [{time.monotonic() - started:.0f} s]")
    print("\n| rule | A/A: identical pairs called a regression | A/B: 10% slowdowns called a regression |")
    print("|---|---:|---:|")
    for name in RULES:
        false = sum(v[name] is Verdict.REGRESSION for v in aa)
        found = sum(v[name] is Verdict.REGRESSION for v in ab)
        print(f"| {name} | {false} of {len(aa)} | {found} of {len(ab)} |")
    for what, pair in (("A/A", aa_last), ("A/B", (base, new) if ab else None)):
        if pair is not None:
            last = load_comparison(store, *pair, Thresholds(), force=True)
            print(f"\nlast {what} pair: {last.verdict}")
            for step in last.steps:
                print(f"  {step.level:g}: {step.verdict} {'; '.join(step.reasons)}")
            print(f"  decided: {last.method}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=20, help="A/A pairs of resnet runs (default 20)")
    parser.add_argument("--ab-pairs", type=int, default=20, help="A/B pairs of fixed_latency (default 20)")
    parser.add_argument(
        "--db", default=None, help="keep the runs in this SQLite file (default: a temporary one)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(repository(Path(tmp)), ServerPorts.free())
        with server, RunStore(f"sqlite:///{args.db or f'{tmp}/runs.db'}") as store:
            asyncio.run(study(server, store, args.pairs, args.ab_pairs))


if __name__ == "__main__":
    main()
