"""Every option of every command, fed junk, empty and out-of-range values: exit 2, one line on stderr
that names the option, no traceback, and no database created or changed.

The table below must name every option the parser has (a new option fails the walk until it is
given its bad values here), so that nothing a user can type goes unchecked.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from loadgen.cli import build_parser, main
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, RunStatus, StepResult
from loadgen.storage import RunStore

NUMBER = ["", "junk", "nan"]
WHOLE = ["", "junk", "1.5"]
PORT = [*WHOLE, "-1", "70000"]
SECONDS = [*NUMBER, "-1", "5 parsecs", "2x", "s"]
MILLISECONDS = [*WHOLE, "0.5ms", "2x", "ms"]
MISSING_FILE = ["", "/nonexistent-loadgen-dir/file"]
NEW_FILE = ["", "/nonexistent-loadgen-dir/out"]
DB = ["", "foo://x"]
RUN_ID = ["junk", "-1"]
PERCENT = [*NUMBER, "-1"]

BAD: dict[tuple[str, str], list[str]] = {
    # serve
    ("serve", "--model-repository"): MISSING_FILE,
    ("serve", "--http-port"): PORT,
    ("serve", "--grpc-port"): PORT,
    ("serve", "--metrics-port"): PORT,
    ("serve", "--host"): ["", "junk addr", "300.1.1.1"],
    ("serve", "--log-file"): NEW_FILE,
    ("serve", "--log-verbose"): [*WHOLE, "-1"],
    ("serve", "--grpc-tls-cert"): MISSING_FILE,
    ("serve", "--grpc-tls-key"): MISSING_FILE,
    ("serve", "--grpc-tls-client-ca"): MISSING_FILE,
    # sweep
    ("sweep", "-m"): ["", ":", "m:junk=1"],
    ("sweep", "-x"): ["", "junk", "-1"],
    ("sweep", "-u"): ["", "h:0", "h:70000", "h:junk", "ftp://h"],
    ("sweep", "-i"): ["", "junk"],
    ("sweep", "--grpc-client"): ["", "junk"],
    ("sweep", "--cancel-after-ms"): [*MILLISECONDS, "0"],
    ("sweep", "--token-output"): [""],
    ("sweep", "--cancel-after-responses"): [*WHOLE, "0"],
    ("sweep", "--cancel-share"): [*PERCENT, "0", "101"],
    ("sweep", "--request-timeout"): SECONDS,
    ("sweep", "--retry-unavailable"): SECONDS,
    ("sweep", "-H"): ["", "junk"],
    ("sweep", "--shared-memory"): ["", "junk", "cuda"],
    ("sweep", "--output-shared-memory-size"): [*WHOLE, "0"],
    ("sweep", "--sequence-length"): [*WHOLE, "0"],
    ("sweep", "--sequence-length-variation"): [*PERCENT, "101"],
    ("sweep", "--num-of-sequences"): [*WHOLE, "0"],
    ("sweep", "--sequence-id-range"): ["", "junk", "0:10", "10:5", "5:5", "1:99999999999999999999999"],
    ("sweep", "--request-parameter"): [
        "",
        "priority",
        "priority:1",
        "priority:1:float",
        "n:x:int",
        "n:99999999999999999999:int",
        "b:maybe:bool",
        "priority:-1:int",
        "timeout:soon:string",
        "sequence_id:1:int",
        "triton_x:1:int",
    ],
    ("sweep", "--metrics-url"): ["junk", "ftp://h/metrics"],
    ("sweep", "--metrics-family"): ["", "("],
    ("sweep", "--composing-models"): ["", ",", "a b", "x/y"],
    ("sweep", "--trace-rate"): ["", "x", "-1", "1.5"],
    ("sweep", "--trace-file"): [""],
    ("sweep", "--trace-count"): ["", "x", "0", "-2"],
    ("sweep", "--metrics-interval"): [*MILLISECONDS, "10"],
    ("sweep", "--ssl-ca"): MISSING_FILE,
    ("sweep", "--ssl-cert"): MISSING_FILE,
    ("sweep", "--ssl-key"): MISSING_FILE,
    ("sweep", "--concurrency"): ["", "junk", "0", "-1", "8..1"],
    ("sweep", "--request-rate"): ["", "junk", "0", "-5"],
    ("sweep", "--request-intervals"): MISSING_FILE,
    ("sweep", "--ramp"): ["", "junk", "10:5", "1:2:-1", "1:2:3x"],
    ("sweep", "--distribution"): ["", "junk"],
    ("sweep", "--pacing"): ["", "junk"],
    ("sweep", "--max-in-flight"): [*WHOLE, "0"],
    ("sweep", "--max-connections"): [*WHOLE, "0"],
    ("sweep", "--workers"): [*WHOLE, "0", "-1"],
    ("sweep", "--ray"): [""],
    ("workers", "--ray"): ["", "127.0.0.1:1"],
    ("sweep", "--latency-limit"): ["", "junk", "p101=5ms", "-5ms"],
    ("sweep", "-p"): [*MILLISECONDS, "10", "10ms"],
    ("sweep", "--warmup"): [*MILLISECONDS, "-1", "-1s"],
    ("sweep", "-s"): PERCENT,
    ("sweep", "--stop-when"): ["", "junk", "p99", "p101:2%", "p99:0%", "throughput", "mlperf:throughput"],
    ("sweep", "--min-step-requests"): [*WHOLE, "-1"],
    ("sweep", "--repeats"): [*WHOLE, "0", "1001"],
    ("sweep", "--min-step-time"): [*MILLISECONDS, "-1s"],
    ("sweep", "--confidence"): [*PERCENT, "40%", "100%"],
    ("sweep", "-r"): [*WHOLE, "0"],
    ("sweep", "-b"): [*WHOLE, "0"],
    ("sweep", "--input-data"): MISSING_FILE,
    ("sweep", "--shape"): ["", "junk", "X:-1", "X:a"],
    ("sweep", "--seed"): [*WHOLE, "-1"],
    ("sweep", "--max-error-rate"): [*PERCENT, "101"],
    ("sweep", "--tolerance"): ["", "junk", "FP32=-1", "FP32=x"],
    ("sweep", "--label"): ["", "junk"],
    ("sweep", "--csv"): NEW_FILE,
    ("sweep", "--report"): NEW_FILE,
    ("sweep", "--model-repository"): MISSING_FILE,
    ("sweep", "--exporter-port"): PORT,
    ("sweep", "--exporter-addr"): ["", "junk addr"],
    ("sweep", "--db"): DB,
    # runs, show, db
    ("runs", "-m"): [""],
    ("runs", "-n"): [*WHOLE, "0", "-1"],
    ("runs", "--db"): DB,
    ("show", "run_id"): RUN_ID,
    ("show", "--csv"): NEW_FILE,
    ("show", "--db"): DB,
    ("db upgrade", "--db"): DB,
    ("db current", "--db"): DB,
    # table, compare, report
    ("table", "run_ids"): [*RUN_ID, "group:", "group: x"],
    ("table", "--format"): ["", "junk"],
    ("table", "--percentiles"): ["", "junk", "101"],
    ("table", "--confidence"): [*PERCENT, "40", "100%"],
    ("compare", "--confidence"): [*PERCENT, "49.9", "100"],
    ("table", "--hgrm"): [*WHOLE, "-1"],
    ("table", "-o"): NEW_FILE,
    ("table", "--db"): DB,
    ("compare", "base_run"): [*RUN_ID, "group:"],
    ("compare", "new_run"): RUN_ID,
    ("compare", "--max-throughput-drop"): PERCENT,
    ("compare", "--max-latency-rise"): PERCENT,
    ("compare", "--percentile"): [*NUMBER, "101"],
    ("compare", "--junit"): NEW_FILE,
    ("compare", "--db"): DB,
    ("report", "run_ids"): [*RUN_ID, "group:"],
    ("report", "-m"): [""],
    ("report", "-o"): NEW_FILE,
    ("report", "--slo"): ["", "junk", "p101=5ms"],
    ("report", "--images"): NEW_FILE,
    ("report", "--image-format"): ["", "junk"],
    ("report", "--db"): DB,
    # plans
    ("plan check", "plan"): MISSING_FILE,
    ("plan run", "plan"): MISSING_FILE,
    ("plan run", "--job"): ["", "nosuchjob"],
    ("plan run", "--json"): NEW_FILE,
    ("plan run", "--db"): DB,
    ("schedule", "plan"): MISSING_FILE,
    ("schedule", "--job"): ["", "nosuchjob"],
    ("schedule", "--webhook"): ["", "junk", "ftp://h/x"],
    ("schedule", "--hook"): [""],
    ("schedule", "--exporter-port"): PORT,
    ("schedule", "--exporter-addr"): ["", "junk addr"],
    ("schedule", "--db"): DB,
    ("export grafana", "--db"): DB,
    ("export grafana", "-o"): NEW_FILE,
    ("export grafana", "--prometheus-url"): ["", "junk"],
}

BAD.update(
    {  # a tune measures each configuration with the sweep's options, refused alike
        ("tune", option): values
        for (command, option), values in list(BAD.items())
        if command == "sweep"
        and option not in ("--search", "--repeats", "--latency-limit", "--csv", "--report")
        and not option.startswith("--exporter")
    }
)
BAD.update(
    {
        ("tune", "--slo"): ["", "junk", "p101=5ms", "-5ms"],
        ("tune", "--instances"): ["", "junk", "0", "4..1"],
        ("tune", "--max-batch-size"): ["", "junk", "0", "1.5"],
        ("tune", "--queue-delay"): ["", ",", "junk", "-5us", "1.5us"],
        ("tune", "--search"): ["", "junk"],
        ("tune", "--resume"): ["", "nosuchtune"],
        ("tune", "--json"): NEW_FILE,
        ("model add", "onnx"): [*MISSING_FILE, "pyproject.toml"],
        ("model add", "--name"): ["", "a/b", ".hidden", "two words"],
        ("model add", "--model-repository"): MISSING_FILE,
        ("model add", "--backend"): ["", "tensorflow"],
        ("model add", "--max-batch-size"): [*WHOLE, "-1"],
        ("model add", "--dynamic-batching-delay"): ["", "junk", "-1us", "1.5us", "5parsecs"],
        ("model add", "--instances"): [*WHOLE, "0"],
        ("model add", "-u"): [""],
        ("report", "--tune"): ["", "nosuchtune"],
        ("serve", "--model-control"): ["", "junk", "poll"],
    }
)


def _options() -> Iterator[tuple[str, argparse.Action]]:
    """(command path, action) for every option and positional that takes a value."""

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[str, argparse.Action]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])
            elif action.nargs != 0 and not isinstance(action, argparse._HelpAction | argparse._VersionAction):
                yield " ".join(path), action

    yield from walk(build_parser(), [])


def _name(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def _names(command: str, option: str) -> list[str]:
    """How a message may name the option: any of its flags, or its argument's name."""
    for path, action in _options():
        if path == command and _name(action) == option:
            return [*action.option_strings, action.dest, action.dest.replace("_", " ")]
    raise AssertionError(f"no option {option} in {command}")


def test_every_option_has_its_bad_values() -> None:
    named = {(command, _name(action)) for command, action in _options()}
    assert named == set(BAD), f"missing: {sorted(named - set(BAD))}; stale: {sorted(set(BAD) - named)}"


class Started(Exception):
    """A refused command must never get this far."""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A database with one run, and a plan: made once, read by every case (and checked unchanged)."""
    tmp = tmp_path_factory.mktemp("junk")
    db = tmp / "runs.db"
    with RunStore(f"sqlite:///{db}") as store:
        info = RunInfo(
            model="identity",
            model_version="",
            scenario="concurrency",
            server_url="127.0.0.1:1",
            started_at=datetime.now(UTC),
            settings={"levels": [1]},
            model_config={},
            model_metadata={},
            server_metadata={},
            host={},
            labels={},
        )
        run_id = store.create_run(info)
        hist = LatencyHistogram()
        hist.record_ns(1_000_000)
        store.add_step(run_id, StepResult(0, 1, datetime.now(UTC), 1.0, 1, 1, hist))
        store.finish_run(run_id, RunStatus.COMPLETED, None)
    plan = tmp / "plan.yaml"
    plan.write_text("cron: '0 2 * * *'\njobs:\n  j:\n    model: identity\n    url: 127.0.0.1:1\n")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph), str(tmp / "relu.onnx"))
    return db, plan


@pytest.fixture
def world(seeded: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The seeded database and plan, and every long-running entry point replaced by a tripwire."""
    db, plan = seeded

    def tripwire(*args: object, **kwargs: object) -> None:
        raise Started

    import loadgen.commands.serve
    import loadgen.launch
    import loadgen.plans.run
    import loadgen.server.embedded
    import loadgen.tune.tuning

    monkeypatch.setattr(loadgen.launch, "run_sweeps", tripwire)
    monkeypatch.setattr(loadgen.plans.run, "run_job", tripwire)
    monkeypatch.setattr(loadgen.tune.tuning, "run_tune", tripwire)
    monkeypatch.setattr(loadgen.server.embedded.EmbeddedServer, "start", tripwire)
    monkeypatch.chdir(tmp_path)
    return {
        "db": f"sqlite:///{db}",
        "db_file": str(db),
        "plan": str(plan),
        "tmp": str(tmp_path),
        "onnx": str(db.parent / "relu.onnx"),
    }


def _argv(command: str, option: str, value: str, world: dict[str, str]) -> list[str]:
    """A command line that is valid except for ``option``'s value."""
    new_db = f"sqlite:///{world['tmp']}/new.db"
    base: dict[str, list[str]] = {
        "serve": [],
        "sweep": ["-m", "identity", "-u", "127.0.0.1:1", "--db", new_db],
        "runs": ["--db", world["db"]],
        "show": ["1", "--db", world["db"]],
        "db upgrade": ["--db", new_db],
        "db current": ["--db", new_db],
        "table": ["1", "--db", world["db"]],
        "compare": ["1", "1", "--db", world["db"]],
        "report": ["1", "-o", f"{world['tmp']}/r.html", "--db", world["db"]],
        "plan check": [world["plan"]],
        "plan run": [world["plan"], "--db", new_db],
        "schedule": [world["plan"], "--db", new_db],
        "export grafana": ["-o", f"{world['tmp']}/grafana", "--db", world["db"]],
        "workers": [],
        "tune": ["-m", "identity", "-u", "127.0.0.1:1", "--instances", "1,2", "--db", new_db],
        "model add": [world["onnx"], "--name", "m", "--model-repository", world["tmp"]],
    }
    argv = base[command]
    positionals = {"run_id": 0, "base_run": 0, "new_run": 1, "run_ids": 0, "plan": 0, "onnx": 0}
    if option in positionals:
        argv = list(argv)
        argv[positionals[option]] = value
    else:
        argv = [*argv, option, value]
        if option in ("-o", "--db", "--model-repository") and option in base[command]:  # replace
            at = base[command].index(option)
            argv = [*base[command][:at], option, value, *base[command][at + 2 :]]
    return [*command.split(), *argv]


CASES = [(command, option, value) for (command, option), values in BAD.items() for value in values]


@pytest.mark.parametrize(("command", "option", "value"), CASES, ids=[f"{c}|{o}|{v!r}" for c, o, v in CASES])
def test_a_bad_value_is_one_line_and_exit_2(
    command: str, option: str, value: str, world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = hashlib.sha256(Path(world["db_file"]).read_bytes()).hexdigest()
    try:
        code = main(_argv(command, option, value, world))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except Started:
        pytest.fail(f"loadgen {command} {option} {value!r} was accepted")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert len(lines) == 1, err
    names = _names(command, option)
    named = any(name in lines[0] for name in names) or (value.strip() != "" and value in lines[0])
    assert named, f"the message names neither {names} nor {value!r}: {lines[0]}"
    assert hashlib.sha256(Path(world["db_file"]).read_bytes()).hexdigest() == before
    assert not (Path(world["tmp"]) / "new.db").exists()
