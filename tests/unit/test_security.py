"""Security without a server: the exporter's address, plans that cannot run commands, webhook and
hook failures said in one line that names no secret, TLS verification on by default."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from loadgen import cron
from loadgen.cli import main
from loadgen.errors import ConfigError
from loadgen.exporter import DEFAULT_EXPORTER_ADDR, SweepExporter
from loadgen.plans import JobResult, PlanError, parse_plan
from loadgen.results import RunInfo, RunStatus
from loadgen.storage import RunStore
from loadgen.tls import TlsSettings, tls_for_url
from tests.cli import free_port

WEBHOOK_SECRETS = ("HOOK-USER-5", "HOOK-PW-9", "TOKEN-XYZ-7")


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine outside 127/8 (``ip -4 addr``, else the default route's), or None."""
    found: list[str] = []
    if ip := shutil.which("ip"):
        out = subprocess.run([ip, "-4", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout
        found += re.findall(r"inet (\d+\.\d+\.\d+\.\d+)", out)
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # UDP: picks the route's source address, sends nothing
        found.append(probe.getsockname()[0])
    return next((a for a in found if not ipaddress.ip_address(a).is_loopback), None)


def reachable(addr: str, port: int) -> bool:
    """Whether a TCP connection to ``addr:port`` opens (refused or filtered: not reachable)."""
    try:
        with socket.create_connection((addr, port), timeout=2):
            return True
    except OSError:
        return False


# -- the exporter binds loopback unless told ------------------------------------------------------
def test_the_exporter_listens_on_loopback_unless_told() -> None:
    other = non_loopback_ipv4()
    port = free_port()
    with SweepExporter(port) as exporter:
        assert exporter.addr == DEFAULT_EXPORTER_ADDR == "127.0.0.1"
        assert reachable("127.0.0.1", port)
        if other is not None:  # a machine with loopback only has nothing to hide it from
            assert not reachable(other, port), f"the exporter answered on {other}"
    with SweepExporter(port, "0.0.0.0"):
        assert reachable("127.0.0.1", port)
        if other is not None:
            assert reachable(other, port)


def test_an_address_this_machine_lacks_is_a_one_line_config_error() -> None:
    for addr in ("203.0.113.1", "no-such-host.invalid"):
        with pytest.raises(ConfigError) as caught:
            SweepExporter(free_port(), addr).start()
        message = str(caught.value)
        assert addr in message and "--exporter-addr" in message and "\n" not in message


# -- plans cannot run commands --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("hook: 'touch /tmp/pwned'\njobs:\n  a: {model: identity}\n", "hook", 1),
        ("jobs:\n  a:\n    model: identity\n    webhook: http://127.0.0.1:1/x\n", "webhook", 4),
        ("jobs:\n  a:\n    model: identity\n    command: 'rm -rf ~'\n", "command", 4),
        ("jobs:\n  a:\n    models: [{model: identity, hook: x}]\n", "hook", 3),
    ],
)
def test_a_plan_naming_a_command_is_refused_in_one_line(text: str, key: str, line: int) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(text, "p.yaml")
    (problem,) = caught.value.problems
    assert str(problem).startswith(f"p.yaml:{line}: unknown key {key!r}") and "\n" not in str(problem)


# -- webhook and hook failures --------------------------------------------------------------------
class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def scheduler_log() -> Iterator[list[logging.LogRecord]]:
    """The scheduler's log records (each is one stderr line of ``loadgen schedule``)."""
    kept = _Kept()
    logger = logging.getLogger("loadgen.scheduler")
    level = logger.level
    logger.addHandler(kept)
    logger.setLevel(logging.INFO)  # as `loadgen schedule` sets it
    try:
        yield kept.records
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)


def _errors(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR]


def _regression(run_id: int = 5) -> JobResult:
    return JobResult(plan="p", job="nightly", model="identity", outcome="regression", run_id=run_id)


def _secret_url(port: int) -> str:
    user, password, token = WEBHOOK_SECRETS
    return f"http://{user}:{password}@127.0.0.1:{port}/verdicts?token={token}&team=ml"


def test_urls_are_redacted_for_logs() -> None:
    redacted = cron.redact_url("https://user:pw@host:8443/x?token=abc&t#frag")
    assert redacted == "https://***@host:8443/x?token=***&***"
    assert cron.redact_url("http://host/x") == "http://host/x"
    assert cron.redact_url("http://[::1") == "***"


async def _with_webhook_server(kind: str, body: Callable[[str], Awaitable[None]]) -> None:
    """Run ``body`` (a coroutine factory taking the URL) against a webhook that fails as ``kind``."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts and never answers

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    if kind == "refused":
        await body(_secret_url(free_port()))
    elif kind == "timeout":
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        try:
            await body(_secret_url(server.sockets[0].getsockname()[1]))
        finally:
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()
    else:
        app = web.Application()
        app.router.add_post("/verdicts", failing)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            await body(_secret_url(port))
        finally:
            await runner.cleanup()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("http-500", "answered HTTP 500"),
        ("refused", "Connection refused"),
        ("timeout", "no answer within 0.3 s"),
    ],
)
def test_a_failing_webhook_is_one_line_naming_it_and_no_secret(
    kind: str, reason: str, scheduler_log: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cron, "WEBHOOK_TIMEOUT_S", 0.3)

    async def notify(url: str) -> None:
        await cron._notify(_regression(), url, None)

    asyncio.run(_with_webhook_server(kind, notify))
    (line,) = _errors(scheduler_log)
    assert line.startswith("job nightly model identity run 5: webhook http://***@127.0.0.1:"), line
    assert "/verdicts?token=***&team=***" in line and reason in line, line
    assert not any(secret in line for secret in WEBHOOK_SECRETS), line


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("exit 3  # HOOK-SECRET-1", "hook exited with status 3 (--hook)"),
        (
            "/no/such/notifier --token HOOK-SECRET-1",
            "hook exited with status 127 (the shell found no such command)",
        ),
        ("sleep 30  # HOOK-SECRET-1", "hook killed after running 0.3 s (--hook)"),
    ],
)
def test_a_failing_hook_is_one_line_naming_it_and_not_its_command(
    command: str, said: str, scheduler_log: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cron, "HOOK_TIMEOUT_S", 0.3)
    asyncio.run(cron._notify(_regression(), None, command))
    (line,) = _errors(scheduler_log)
    assert line.startswith("job nightly model identity run 5: ") and said in line, line
    assert "HOOK-SECRET-1" not in line


def test_failed_notifications_leave_the_stored_run_as_it_was(
    tmp_path: Path, scheduler_log: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = parse_plan("cron: '0 2 * * *'\njobs:\n  nightly: {model: identity}\n")
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:

        async def measured(*args: object, **kwargs: object) -> list[JobResult]:
            info = RunInfo(
                {}, "identity", "1", "concurrency", "localhost:8001", {}, {}, {}, {}, datetime.now(UTC)
            )
            run_id = store.create_run(info)
            store.finish_run(run_id, RunStatus.COMPLETED)
            return [_regression(run_id)]

        monkeypatch.setattr(cron, "run_job", measured)
        url = _secret_url(free_port())  # refused
        turn = cron._turn(plan, plan.jobs[0], store, asyncio.Lock(), url, "exit 4", None)
        asyncio.run(turn)  # returns: the scheduler goes on
        (run,) = store.list_runs()
        assert run.status is RunStatus.COMPLETED and run.error is None
    lines = [r.getMessage() for r in scheduler_log]
    assert lines[0] == f"job nightly model identity run {run.id}: regression"
    assert [line.split(": ")[1].split()[0] for line in _errors(scheduler_log)] == ["webhook", "hook"]


def test_webhook_urls_are_checked_at_start_and_shown_redacted() -> None:
    assert cron.webhook_problem("https://u:p@hooks.example/x?token=abc") is None
    assert cron.webhook_problem("ftp://u:p@h/x") == "expected an http:// or https:// URL"
    assert cron.webhook_problem("http://h:0/x") == "expected a port within 1..65535"


# -- TLS verification is on by default ------------------------------------------------------------
def test_tls_verifies_the_server_unless_told_not_to() -> None:
    default = tls_for_url("https://triton.example", None)
    assert default == TlsSettings() and not default.insecure
    context = default.ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


# -- one-line refusals on the command line ---------------------------------------------------------
def _exits(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code, capsys.readouterr().err


def test_exporter_addr_goes_with_exporter_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exits(["sweep", "-m", "identity", "-u", "127.0.0.1:1", "--exporter-addr", "0.0.0.0"], capsys)
    assert code == 2 and "loadgen: error: --exporter-addr goes with --exporter-port" in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://u:DB-PASSWORD-7@127.0.0.1:1/x",  # refused
        "postgresql+psycopg://u:DB-PASSWORD-7@127.0.0.1/x?sslmode=bogus",  # libpq refuses the URL
    ],
)
def test_a_database_url_password_is_never_printed(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exits(["runs", "--db", url], capsys)
    assert code == 2 and err.startswith("loadgen: error: runs database") and "DB-PASSWORD-7" not in err, err


def test_a_bad_webhook_is_refused_at_start_without_its_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("cron: '0 0 1 1 *'\njobs:\n  yearly: {model: identity, url: '127.0.0.1:1'}\n")
    code, err = _exits(
        ["schedule", str(plan), "--webhook", "ftp://bot:HOOK-PW-9@h/x?token=TOKEN-XYZ-7"], capsys
    )
    assert code == 2 and "bad --webhook 'ftp://***@h/x?token=***': expected an http://" in err, err
    assert not any(secret in err for secret in WEBHOOK_SECRETS)


def test_a_plan_cannot_run_a_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"hook: 'touch {marker}'\njobs:\n  a: {{model: identity, url: '127.0.0.1:1'}}\n")
    code, err = _exits(["plan", "run", str(plan), "--db", f"sqlite:///{tmp_path / 'runs.db'}"], capsys)
    assert code == 2 and f"{plan}:1: unknown key 'hook' in the plan" in err, err
    assert not marker.exists() and not (tmp_path / "runs.db").exists()


# -- --ssl-insecure is said ------------------------------------------------------------------------
INSECURE_LINE = "loadgen: warning: --ssl-insecure: the server's certificate and host name are not checked"


def test_ssl_insecure_prints_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    https = ["-i", "http", "-u", "https://127.0.0.1:1", "-q", "--db", db]
    code, err = _exits(["sweep", "-m", "identity", "-m", "other", *https, "--ssl-insecure"], capsys)
    assert code == 2 and err.splitlines().count(INSECURE_LINE) == 1, err  # nothing listens: exit 2
    code, err = _exits(["sweep", "-m", "identity", *https], capsys)
    assert code == 2 and "warning" not in err, err  # verified by default: nothing to say
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "protocol: http\nurl: 'https://127.0.0.1:1'\njobs:\n  a: {model: identity, ssl_insecure: true}\n"
        "  b: {model: identity}\n"
    )
    code, err = _exits(["plan", "run", str(plan), "-q", "--db", db], capsys)
    said = "the server's certificate and host name are not checked"
    assert code == 2 and f"loadgen: warning: job a: ssl_insecure: {said}" in err.splitlines(), err
    assert err.count(said) == 1, err


@pytest.mark.parametrize(
    "argv",
    [
        ["-H", "Authorization Bearer SECRET-TOKEN-1"],  # the colon forgotten: the whole token in one word
        ["-H", "Authorization:Bearer SECRET-TOKEN-1\u00e9"],  # a value that is not printable ASCII
        ["-u", "https://user:SECRET-TOKEN-1@triton:443", "-i", "http"],  # credentials in the address
    ],
)
def test_a_refused_secret_is_never_echoed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exits(["sweep", "-m", "identity", *argv], capsys)
    assert code == 2 and err.startswith("loadgen: error: ") and len(err.splitlines()) == 1, err
    assert "SECRET" not in err, err
