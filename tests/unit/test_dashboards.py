"""The shipped Grafana dashboards: built from code, well-formed, and exported ready to provision."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from loadgen.cli import main
from loadgen.provisioning import DASHBOARD_FILES, PROMETHEUS_UID, RUNS_UID, dashboard_json

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
MODEL_SELECTOR = 'model=~"$model"'
BY_MODEL_VERSION = re.compile(r"\b(sum|max) by \(model, version\b[^)]*\) \(")


def _targets(name: str) -> list[dict[str, object]]:
    return [t for p in dashboard_json(name)["panels"] for t in p.get("targets", [])]


def test_the_committed_files_are_what_build_py_builds() -> None:
    pytest.importorskip("grafana_foundation_sdk", reason="the dev extra builds the dashboards")
    from dashboards.build import build_files

    stale = [path for path, text in build_files().items() if (DASHBOARDS / path).read_text("utf-8") != text]
    assert stale == [], "run: python dashboards/build.py"


def test_the_package_ships_the_committed_dashboards() -> None:
    for name in DASHBOARD_FILES:
        assert dashboard_json(name) == json.loads((DASHBOARDS / name).read_text("utf-8"))


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_model_query_sums_by_model_and_version(name: str) -> None:
    for target in _targets(name):
        expr = target.get("expr")
        if isinstance(expr, str):
            assert expr.count(MODEL_SELECTOR) == len(BY_MODEL_VERSION.findall(expr)), expr


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panels_are_well_formed(name: str) -> None:
    board = dashboard_json(name)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"].startswith("loadgen")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"]
        datasource = panel["datasource"]["uid"]
        assert datasource in ("${prometheus}", "${runs}") and datasource[2:-1] in variables
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)) and "" not in ref_ids
    assert "model" in variables


def test_export_writes_dashboards_and_provisioning_for_this_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    out = tmp_path / "grafana"
    code = main(
        [
            "export",
            "grafana",
            "--db",
            f"sqlite:///{db}",
            "-o",
            str(out),
            "--prometheus-url",
            "http://prom:9090",
        ]
    )
    assert code == 0
    for name in DASHBOARD_FILES:
        assert json.loads((out / "dashboards" / name).read_text("utf-8")) == dashboard_json(name)
    datasources = yaml.safe_load((out / "provisioning/datasources/loadgen.yaml").read_text("utf-8"))
    by_uid = {d["uid"]: d for d in datasources["datasources"]}
    assert by_uid[PROMETHEUS_UID]["url"] == "http://prom:9090"
    assert by_uid[RUNS_UID]["type"] == "frser-sqlite-datasource"
    assert by_uid[RUNS_UID]["jsonData"]["path"] == str(db.resolve())
    providers = yaml.safe_load((out / "provisioning/dashboards/loadgen.yaml").read_text("utf-8"))
    assert providers["providers"][0]["options"]["path"] == str((out / "dashboards").resolve())
    assert "does not exist yet" in capsys.readouterr().err  # no database yet: a note, not an error


@pytest.mark.parametrize("db", ["mysql://u@h/db", "postgresql:///db", "sqlite://", "://not a url"])
def test_export_refuses_what_the_history_dashboard_cannot_read(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["export", "grafana", "--db", db, "-o", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("loadgen: error:") and "\n" not in err
    assert not (tmp_path / "out").exists()
