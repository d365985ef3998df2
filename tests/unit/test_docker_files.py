"""docker/: files parse, every path they name exists, images are pinned, ports agree with the CLI.

``promtool check config`` needs Debian's prometheus package: skipped without it unless
LOADGEN_REQUIRE_PROMETHEUS is set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from loadgen import __version__
from loadgen.cli import build_parser
from loadgen.config import DEFAULT_GRPC_URL, DEFAULT_HTTP_URL, DEFAULT_METRICS_PORT
from loadgen.exporter import DEFAULT_EXPORTER_PORT
from loadgen.provisioning import (
    DOCKER_DASHBOARDS_DIR,
    DOCKER_DB_PATH,
    DOCKER_PROMETHEUS_URL,
    SCRAPE_INTERVAL,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = _yaml(DOCKER / "docker-compose.yml")
    return data


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path, for the bind mounts (named volumes are not in the repo)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (DOCKER / source).resolve()
    return mounts


def _on_host(service: dict[str, Any], container_path: str) -> Path | None:
    for target, source in _mounts(service).items():
        path = PurePosixPath(container_path)
        if path.is_relative_to(target):
            return source / path.relative_to(target)
    return None


def _port(url: str) -> int:
    port = urlsplit(f"//{url}").port
    assert port is not None
    return port


def test_every_file_parses() -> None:
    for path in [
        DOCKER / "docker-compose.yml",
        DOCKER / "prometheus.yml",
        *sorted((ROOT / "dashboards/provisioning").rglob("*.yaml")),
    ]:
        assert isinstance(_yaml(path), dict), path
    assert (DOCKER / "Dockerfile").read_text("utf-8").startswith("#")


def test_every_path_the_files_name_exists(compose: dict[str, Any]) -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text("utf-8")
    copied = re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M)
    assert copied
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), source
    build = compose["services"]["loadgen"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target})"
        # container paths in commands and settings that fall inside a bind mount must exist in the repo
        words = [*service.get("command", []), *service.get("environment", {}).values()]
        for word in words:
            for path in re.findall(r"(/[\w./-]+)", str(word)):
                host = _on_host(service, path)
                if host is not None:
                    assert host.exists(), f"{name}: {path} -> {host}"
    loadgen = compose["services"]["loadgen"]
    assert _on_host(loadgen, "/plans/nightly.yaml") == ROOT / "plans/nightly.yaml"
    grafana = compose["services"]["grafana"]
    for board in ("triton-server.json", "loadgen-live.json", "loadgen-history.json"):  # not the Postgres one
        assert _on_host(grafana, f"{DOCKER_DASHBOARDS_DIR}/{board}") == ROOT / "dashboards" / board
    assert _on_host(grafana, f"{DOCKER_DASHBOARDS_DIR}/loadgen-history-postgres.json") is None
    assert _on_host(grafana, "/etc/grafana/provisioning") == ROOT / "dashboards/provisioning"


def test_images_are_pinned_to_tags(compose: dict[str, Any]) -> None:
    (base,) = re.findall(r"^FROM (\S+)", (DOCKER / "Dockerfile").read_text("utf-8"), flags=re.M)
    images = [base, *(service["image"] for service in compose["services"].values())]
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, image
    assert compose["services"]["loadgen"]["image"] == f"loadgen:{__version__}"
    assert compose["services"]["tritonserver"]["image"].startswith("nvcr.io/nvidia/tritonserver:")


def test_ports_agree_with_the_cli_defaults(compose: dict[str, Any]) -> None:
    serve = build_parser().parse_args(["serve"])
    http, grpc, metrics = _port(DEFAULT_HTTP_URL), _port(DEFAULT_GRPC_URL), DEFAULT_METRICS_PORT
    assert (
        (http, grpc, metrics) == (serve.http_port, serve.grpc_port, serve.metrics_port) == (8000, 8001, 8002)
    )
    assert DEFAULT_EXPORTER_PORT == 9108
    triton = compose["services"]["tritonserver"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in triton["command"] if arg.startswith("--"))
    assert (int(flags["http-port"]), int(flags["grpc-port"]), int(flags["metrics-port"])) == (
        http,
        grpc,
        metrics,
    )
    published = {str(p) for p in triton["ports"]}
    assert {f"{p}:{p}" for p in (http, grpc, metrics, DEFAULT_EXPORTER_PORT)} <= published
    # loadgen shares Triton's network namespace: the plan's localhost:8001 is Triton there
    loadgen = compose["services"]["loadgen"]
    assert loadgen["network_mode"] == "service:tritonserver"
    # the exporter listens on loopback unless told: Prometheus scrapes it from another container
    here = [
        str(DOCKER.parent / arg.lstrip("/")) if arg.startswith("/plans/") else arg
        for arg in loadgen["command"]
    ]
    scheduled = build_parser().parse_args(here)  # the plan as mounted (../plans:/plans)
    assert (scheduled.exporter_port, scheduled.exporter_addr) == (DEFAULT_EXPORTER_PORT, "0.0.0.0")
    assert re.search(rf"^EXPOSE {DEFAULT_EXPORTER_PORT}$", (DOCKER / "Dockerfile").read_text("utf-8"), re.M)
    prometheus = _yaml(DOCKER / "prometheus.yml")
    targets = {
        job["job_name"]: target
        for job in prometheus["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {
        "triton": f"tritonserver:{metrics}",
        "loadgen": f"tritonserver:{DEFAULT_EXPORTER_PORT}",
    }
    assert prometheus["global"]["scrape_interval"] == SCRAPE_INTERVAL
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    assert _port(urlsplit(DOCKER_PROMETHEUS_URL).netloc) == 9090


def test_the_runs_database_is_shared_where_grafana_looks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    command = services["loadgen"]["command"]
    assert command[:2] == ["schedule", "/plans/nightly.yaml"]
    assert command[command.index("--db") + 1] == f"sqlite:///{DOCKER_DB_PATH}"
    data_dir = str(PurePosixPath(DOCKER_DB_PATH).parent)
    for name in ("loadgen", "grafana"):
        assert f"loadgen-data:{data_dir}" in services[name]["volumes"], name
    environment = services["grafana"]["environment"]
    assert "frser-sqlite-datasource" in environment["GF_INSTALL_PLUGINS"]


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("LOADGEN_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool not installed (Debian: apt-get install prometheus)")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", str(DOCKER / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kuberay_examples_agree_with_their_image() -> None:
    """docker/kuberay/: a RayCluster and a RayJob whose Ray is the Ray of docker/Dockerfile.ray."""
    image_file = (DOCKER / "Dockerfile.ray").read_text("utf-8")
    (base,) = re.findall(r"^FROM (\S+)", image_file, flags=re.M)
    name, _, tag = base.rpartition(":")
    assert name == "rayproject/ray" and tag.split("-")[0].count(".") == 2, base
    for sources in re.findall(r"^COPY (?:--\S+ )?(.+) \S+$", image_file, flags=re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    assert "'.[ray," in image_file  # the optional extra --ray needs
    cluster, job = (_yaml(DOCKER / "kuberay" / f) for f in ("raycluster.yaml", "rayjob.yaml"))
    assert (cluster["kind"], job["kind"]) == ("RayCluster", "RayJob")
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == tag.split("-")[0]
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["num-cpus"] == "0"  # the driver's node generates no load
        groups = [head["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
        images = {c["image"] for group in groups for c in group["spec"]["containers"]}
        assert len(images) == 1  # every node runs the same loadgen
    assert job["spec"]["entrypoint"].split()[:3] == ["loadgen", "plan", "run"]
