"""loadgen's Grafana dashboards as code: ``python dashboards/build.py`` rewrites the files here.

Each query is defined once, below, and shown wherever it is useful: the live
dashboard puts the Triton server panels beside loadgen's own. Every per-model
PromQL expression aggregates ``by (model, version)``: a GPU model has one series
per GPU (``gpu_uuid``) plus a model-level one, and namespaces or ``metric_tags``
add labels, so bare series would double count.

The history SQL is defined once per query, as a function of the runs database's
dialect: plain SQL with window functions, where only a run's start as Unix seconds
and a label's value differ (``SqlDialect``). It is rendered twice: for SQLite
(Grafana plugin ``frser-sqlite-datasource``, ``loadgen-history.json``) and for
PostgreSQL (Grafana's ``grafana-postgresql-datasource``, ``loadgen-history-postgres.json``).

Needs the dev extra (``grafana-foundation-sdk``). The tests run every query against
a real Prometheus and a real runs database, and check that the files here are what
this script builds.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from loadgen.provisioning import (
    DASHBOARD_FILES,
    DOCKER_DASHBOARDS_DIR,
    DOCKER_DB_PATH,
    DOCKER_POSTGRES_URL,
    DOCKER_PROMETHEUS_URL,
    HISTORY_FILES,
    POSTGRES_PLUGIN,
    POSTGRES_PROVISIONING,
    SQLITE_PLUGIN,
    SqliteRuns,
    provisioning_files,
    runs_database,
)

HERE = Path(__file__).resolve().parent
PROM = DataSourceRef(type_val="prometheus", uid="${prometheus}")
TAGS = ["loadgen"]


@dataclass(frozen=True)
class SqlDialect:
    """What the history SQL needs that SQLite and PostgreSQL spell differently, and Grafana's plugin."""

    backend: str
    """SQLAlchemy's backend name (``HISTORY_FILES``' key)."""
    plugin: str
    epoch_sql: str
    """A UTC timestamp column ``{column}`` as whole Unix seconds."""
    label_sql: str
    """The value of key ``{key}`` in a JSON object column ``{column}`` (NULL when absent)."""

    def epoch(self, column: str) -> str:
        return self.epoch_sql.format(column=column)

    def label(self, column: str, key: str) -> str:
        return self.label_sql.format(column=column, key=key)

    @property
    def runs(self) -> DataSourceRef:
        """The runs database: a dashboard variable of this plugin's datasources."""
        return DataSourceRef(type_val=self.plugin, uid="${runs}")


SQLITE = SqlDialect(
    "sqlite", SQLITE_PLUGIN, "CAST(strftime('%s', {column}) AS INTEGER)", "json_extract({column}, '$.{key}')"
)
POSTGRES = SqlDialect(
    "postgresql", POSTGRES_PLUGIN, "CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS BIGINT)", "{column}->>'{key}'"
)


# -- what a panel shows ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Prom:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Sql:
    sql: Callable[[SqlDialect], str]
    kind: Literal["time series", "table"] = "table"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Prom | Sql, ...]
    unit: str = "short"
    viz: Literal["timeseries", "table", "stat"] = "timeseries"
    width: int = 12
    height: int = 8


MODEL = 'model=~"$model"'
RATE = "$__rate_interval"
BY_MODEL = "model, version"
LEGEND = "{{model}} v{{version}}"


def rate(metric: str, by: str = BY_MODEL) -> str:
    return f"sum by ({by}) (rate({metric}{{{MODEL}}}[{RATE}]))"


def level(metric: str, by: str = BY_MODEL) -> str:
    return f"sum by ({by}) ({metric}{{{MODEL}}})"


# -- Triton (nv_* on :8002) --------------------------------------------------------------------------
SERVER_THROUGHPUT = Panel(
    "Server throughput",
    "Inferences (a batch of B counts B) and successful requests per second, as Triton counts them.",
    (
        Prom(rate("nv_inference_count"), f"{LEGEND} infer/s"),
        Prom(rate("nv_inference_request_success"), f"{LEGEND} req/s"),
    ),
)
SERVER_TIME = Panel(
    "Server time per request",
    "Average queue, compute input, infer and output time per request: Triton adds each request's "
    "own share to the *_duration_us counters, so they divide by successful requests, not executions.",
    tuple(
        Prom(
            f"{rate(f'nv_inference_{part}_duration_us')} / {rate('nv_inference_request_success')}",
            f"{LEGEND} {part}",
        )
        for part in ("queue", "compute_input", "compute_infer", "compute_output")
    ),
    unit="µs",
)
BATCHING = Panel(
    "Inferences per execution",
    "The batch the server actually ran (nv_inference_count / nv_inference_exec_count): above the "
    "client's batch size, dynamic batching is merging requests.",
    (Prom(f"{rate('nv_inference_count')} / {rate('nv_inference_exec_count')}", LEGEND),),
)
PENDING = Panel(
    "Pending requests",
    "Requests queued in Triton and not yet executing (a gauge).",
    (Prom(level("nv_inference_pending_request_count"), LEGEND),),
)
SERVER_FAILURES = Panel(
    "Server failures by reason",
    "Failed requests per second by Triton's reason (REJECTED, CANCELED, BACKEND, OTHER). A Python model "
    "that returns an error counts as a success here, and a request refused for its shape nowhere: "
    "compare with the client's errors.",
    (Prom(rate("nv_inference_request_failure", f"{BY_MODEL}, reason"), f"{LEGEND} {{{{reason}}}}"),),
    unit="reqps",
)
GPU = "Needs Triton's GPU metrics (DCGM): empty on a CPU-only server."
GPU_UTILIZATION = Panel(
    "GPU utilization",
    f"Per GPU, 0-100%. {GPU}",
    (Prom("avg by (instance, gpu_uuid) (nv_gpu_utilization)", "{{instance}} {{gpu_uuid}}"),),
    unit="percentunit",
)
GPU_MEMORY = Panel(
    "GPU memory",
    f"Used and total frame buffer per GPU. {GPU}",
    (
        Prom("sum by (instance, gpu_uuid) (nv_gpu_memory_used_bytes)", "{{instance}} {{gpu_uuid}} used"),
        Prom("sum by (instance, gpu_uuid) (nv_gpu_memory_total_bytes)", "{{instance}} {{gpu_uuid}} total"),
    ),
    unit="bytes",
)
GPU_POWER = Panel(
    "GPU power",
    f"Power draw and limit per GPU. {GPU}",
    (
        Prom("sum by (instance, gpu_uuid) (nv_gpu_power_usage)", "{{instance}} {{gpu_uuid}} usage"),
        Prom("sum by (instance, gpu_uuid) (nv_gpu_power_limit)", "{{instance}} {{gpu_uuid}} limit"),
    ),
    unit="watt",
)
CPU_UTILIZATION = Panel(
    "CPU utilization",
    "The server host's CPU, all cores, as Triton reads /proc/stat.",
    (Prom("avg by (instance) (nv_cpu_utilization)", "{{instance}}"),),
    unit="percentunit",
)
CPU_MEMORY = Panel(
    "CPU memory",
    "The server host's memory, used and total.",
    (
        Prom("sum by (instance) (nv_cpu_memory_used_bytes)", "{{instance}} used"),
        Prom("sum by (instance) (nv_cpu_memory_total_bytes)", "{{instance}} total"),
    ),
    unit="bytes",
)

# -- loadgen's exporter (loadgen sweep --exporter-port 9108) --------------------------------------------
CLIENT_THROUGHPUT = Panel(
    "Client throughput",
    "Inferences and requests completed per second as loadgen measured them (measured windows only).",
    (
        Prom(rate("loadgen_inferences_total"), f"{LEGEND} infer/s"),
        Prom(rate("loadgen_requests_total"), f"{LEGEND} req/s"),
    ),
)


LATENCY = "loadgen_request_latency_seconds"


def _quantile(q: float) -> Prom:
    buckets = rate(f"{LATENCY}_bucket", f"{BY_MODEL}, le")
    return Prom(f"histogram_quantile({q}, {buckets})", f"{LEGEND} p{q * 100:g}")


CLIENT_LATENCY = Panel(
    "Client latency",
    "Percentiles from the exporter's latency histogram (closed loop: send to response; open loop: "
    "intended send to response), and the mean.",
    (
        _quantile(0.5),
        _quantile(0.9),
        _quantile(0.99),
        Prom(f"{rate(f'{LATENCY}_sum')} / {rate(f'{LATENCY}_count')}", f"{LEGEND} mean"),
    ),
    unit="s",
)
CLIENT_LOAD = Panel(
    "In flight and load level",
    "Requests in flight (closed loop: the step's concurrency; open loop: completion rate x latency) "
    "and the step's target concurrency or rate (requests/s).",
    (
        Prom(level("loadgen_in_flight_requests"), f"{LEGEND} in flight"),
        Prom(level("loadgen_target_concurrency"), f"{LEGEND} target concurrency"),
        Prom(level("loadgen_target_request_rate"), f"{LEGEND} target req/s"),
    ),
)
CLIENT_ERRORS = Panel(
    "Client errors by reason",
    "Failed requests per second by status (the part of the message before ':'; the full messages are in "
    "the runs database). Zero while a model has no failures.",
    (
        Prom(
            f"{rate('loadgen_request_failures_total', f'{BY_MODEL}, reason')} "
            f"or on (model, version) (0 * {rate('loadgen_requests_total')})",
            f"{LEGEND} {{{{reason}}}}",
        ),
    ),
    unit="reqps",
)
CLIENT_RUN = Panel(
    "Run",
    "The run being measured: its id in the runs database (loadgen show RUN_ID) and scenario.",
    (Prom(f"max by ({BY_MODEL}, run_id, scenario) (loadgen_run_info{{{MODEL}}})", instant=True),),
    viz="table",
    height=5,
)
CLIENT_STEP = Panel(
    "Step",
    "Index of the step being measured.",
    (Prom(f"max by ({BY_MODEL}) (loadgen_step_index{{{MODEL}}})", LEGEND, instant=True),),
    viz="stat",
    width=6,
    height=5,
)


# -- history (the runs database) ---------------------------------------------------------------------
def _epoch(d: SqlDialect) -> str:
    return d.epoch("r.started_at")


def _label(d: SqlDialect, key: str) -> str:
    """``loadgen plan run`` and ``loadgen schedule`` label each run ``plan=<name>`` and ``job=<job>``."""
    return f"COALESCE({d.label('r.labels', key)}, '(none)')"


def _selected(d: SqlDialect) -> str:
    return (
        f"r.model IN (${{model:sqlstring}}) AND {_label(d, 'plan')} IN (${{plan:sqlstring}}) "
        f"AND {_label(d, 'job')} IN (${{job:sqlstring}})"
    )


def _in_range(d: SqlDialect) -> str:
    return f"{_epoch(d)} BETWEEN $__from / 1000 AND $__to / 1000"


PEAK = """WITH peak AS (
  SELECT s.run_id, s.throughput, s.lat_p99_us,
         ROW_NUMBER() OVER (PARTITION BY s.run_id ORDER BY s.throughput DESC) AS pick
  FROM steps s
)"""


def _peak_sql(value: str) -> Callable[[SqlDialect], str]:
    """Each completed run's best step: its start time, model and ``value`` (an expression of ``p``)."""

    def sql(d: SqlDialect) -> str:
        return f"""{PEAK}
SELECT {_epoch(d)} AS time, r.model AS model, {value}
FROM runs r JOIN peak p ON p.run_id = r.id AND p.pick = 1
WHERE r.status = 'completed' AND {_selected(d)} AND {_in_range(d)}
ORDER BY time"""

    return sql


def _runs_sql(d: SqlDialect) -> str:
    return f"""SELECT r.id AS run, r.started_at AS started, r.model AS model, r.model_version AS version,
  r.scenario AS scenario, r.status AS status, {_label(d, "plan")} AS plan, {_label(d, "job")} AS job,
  COUNT(s.id) AS steps, MAX(s.throughput) AS "peak infer/s"
FROM runs r LEFT JOIN steps s ON s.run_id = r.id
WHERE {_selected(d)} AND {_in_range(d)}
GROUP BY r.id
ORDER BY r.id DESC"""


def _latest_run_sql(d: SqlDialect) -> str:
    return f"""SELECT s.run_id AS run, s.step_index AS step, s.concurrency AS concurrency,
  s.request_rate AS "target req/s", s.throughput AS "infer/s",
  s.lat_avg_us / 1000.0 AS "avg ms", s.lat_p50_us / 1000.0 AS "p50 ms", s.lat_p90_us / 1000.0 AS "p90 ms",
  s.lat_p95_us / 1000.0 AS "p95 ms", s.lat_p99_us / 1000.0 AS "p99 ms",
  s.error_count AS errors, s.stable AS stable
FROM steps s
WHERE s.run_id = (SELECT MAX(r.id) FROM runs r WHERE {_selected(d)})
ORDER BY s.step_index"""


HISTORY_THROUGHPUT = Panel(
    "Peak throughput per run",
    "Each completed run's best step (inferences/s), per model, at the run's start time.",
    (Sql(_peak_sql('p.throughput AS "infer/s"'), "time series"),),
)
HISTORY_P99 = Panel(
    "p99 latency at peak throughput",
    "The p99 latency of each completed run's best step, per model: read with the panel beside it.",
    (Sql(_peak_sql('p.lat_p99_us / 1000.0 AS "p99 ms"'), "time series"),),
    unit="ms",
)
HISTORY_RUNS = Panel(
    "Runs",
    "Runs started in the time range, newest first (loadgen show RUN_ID for the full table).",
    (Sql(_runs_sql),),
    viz="table",
    width=24,
)
LATEST_RUN = Panel(
    "Latest run",
    "Every step of the newest run of the selected models, plans and jobs, whatever the time range.",
    (Sql(_latest_run_sql),),
    viz="table",
    width=24,
)


def history_variables_sql(d: SqlDialect) -> dict[str, str]:
    """The history dashboard's variables (name -> query)."""
    return {
        "model": "SELECT DISTINCT model FROM runs ORDER BY model",
        "plan": f"SELECT DISTINCT {_label(d, 'plan')} AS plan FROM runs r ORDER BY plan",
        "job": f"SELECT DISTINCT {_label(d, 'job')} AS job FROM runs r ORDER BY job",
    }


# -- building ---------------------------------------------------------------------------------------
class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL target of the runs database's plugin (the SDK has no model for either)."""

    def __init__(
        self, ref_id: str, sql: str, kind: Literal["time series", "table"], dialect: SqlDialect
    ) -> None:
        self.ref_id = ref_id
        self.sql = sql
        self.kind = kind
        self.dialect = dialect

    def to_json(self) -> dict[str, object]:
        target: dict[str, object] = {"refId": self.ref_id, "datasource": self.dialect.runs.to_json()}
        if self.dialect.plugin == SQLITE_PLUGIN:
            target.update(
                queryType=self.kind, rawQueryText=self.sql, queryText=self.sql, timeColumns=["time"]
            )
        else:  # Grafana's SQL datasources: the code editor's raw query
            target.update(
                editorMode="code",
                format="time_series" if self.kind == "time series" else "table",
                rawQuery=True,
                rawSql=self.sql,
            )
        return target


class SqlQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, query: SqlQuery) -> None:
        self.query = query

    def build(self) -> cogvariants.Dataquery:
        return self.query


PanelBuilder = timeseries.Panel | table.Panel | stat.Panel


def _panel(spec: Panel, panel_id: int, dialect: SqlDialect) -> PanelBuilder:
    builder: PanelBuilder
    if spec.viz == "table":
        builder = table.Panel()
    elif spec.viz == "stat":
        builder = stat.Panel()
    else:
        builder = timeseries.Panel()
    uses_sql = any(isinstance(q, Sql) for q in spec.queries)
    builder.id(panel_id).title(spec.title).description(spec.description).unit(spec.unit)
    builder.datasource(dialect.runs if uses_sql else PROM).span(spec.width).height(spec.height)
    for index, query in enumerate(spec.queries):
        ref_id = chr(ord("A") + index)
        if isinstance(query, Sql):
            builder.with_target(SqlQueryBuilder(SqlQuery(ref_id, query.sql(dialect), query.kind, dialect)))
            continue
        target = prometheus.Dataquery().expr(query.expr).ref_id(ref_id).datasource(PROM)
        if query.legend:
            target.legend_format(query.legend)
        if query.instant:
            target.instant()
            if spec.viz == "table":
                target.format(PromQueryFormat.TABLE)
        else:
            target.range()
        builder.with_target(target)
    return builder


def _dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[Any],
    rows: list[tuple[str, list[Panel]]],
    dialect: SqlDialect = SQLITE,
) -> gd.Dashboard:
    board = (
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(gd.DashboardLink("loadgen").type(DashboardLinkType.DASHBOARDS).tags(TAGS).as_dropdown(True))
    )
    for variable in variables:
        board.with_variable(variable)
    panel_id = 1
    for row_title, panels in rows:
        board.with_row(gd.Row(row_title).id(panel_id))
        panel_id += 1
        for spec in panels:
            board.with_panel(_panel(spec, panel_id, dialect))
            panel_id += 1
    return board


def _prometheus_variables(model_metric: str) -> list[Any]:
    return [
        gd.DatasourceVariable("prometheus").label("Prometheus").type("prometheus"),
        gd.QueryVariable("model")
        .label("Model")
        .datasource(PROM)
        .query(f"label_values({model_metric}, model)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
    ]


def _sql_variable(name: str, label: str, sql: str, dialect: SqlDialect) -> Any:
    return (
        gd.QueryVariable(name)
        .label(label)
        .datasource(dialect.runs)
        .query(sql)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def _history(uid: str, title: str, database: str, dialect: SqlDialect) -> gd.Dashboard:
    queries = history_variables_sql(dialect)
    return _dashboard(
        uid,
        title,
        f"Stored runs from the runs database ({database}): how throughput and tail latency move across runs.",
        [
            gd.DatasourceVariable("runs").label("Runs database").type(dialect.plugin),
            _sql_variable("model", "Model", queries["model"], dialect),
            _sql_variable("plan", "Plan", queries["plan"], dialect),
            _sql_variable("job", "Job", queries["job"], dialect),
        ],
        [
            ("Across runs", [HISTORY_THROUGHPUT, HISTORY_P99, HISTORY_RUNS]),
            ("Latest run", [LATEST_RUN]),
        ],
        dialect,
    ).time("now-30d", "now")


def dashboards() -> dict[str, gd.Dashboard]:
    """The shipped dashboards by file name."""
    return {
        "triton-server.json": _dashboard(
            "loadgen-triton-server",
            "Triton server",
            "Triton's own metrics (:8002): throughput, where a request's time goes, batching, queue, "
            "failures, and the host's GPUs and CPU.",
            _prometheus_variables("nv_inference_count"),
            [
                ("Models", [SERVER_THROUGHPUT, SERVER_TIME, BATCHING, PENDING, SERVER_FAILURES]),
                (
                    "GPU",
                    [
                        replace(GPU_UTILIZATION, width=8),
                        replace(GPU_MEMORY, width=8),
                        replace(GPU_POWER, width=8),
                    ],
                ),
                ("CPU", [CPU_UTILIZATION, CPU_MEMORY]),
            ],
        ),
        "loadgen-live.json": _dashboard(
            "loadgen-live",
            "loadgen live",
            "A sweep while it runs (loadgen sweep --exporter-port 9108): the client's view on the left, "
            "Triton's on the right.",
            _prometheus_variables("loadgen_requests_total"),
            [
                (
                    "Client (loadgen) | server (Triton)",
                    [
                        CLIENT_THROUGHPUT,
                        SERVER_THROUGHPUT,
                        CLIENT_LATENCY,
                        SERVER_TIME,
                        CLIENT_LOAD,
                        PENDING,
                        CLIENT_ERRORS,
                        SERVER_FAILURES,
                        CLIENT_RUN,
                        CLIENT_STEP,
                        replace(BATCHING, height=5, width=6),
                    ],
                ),
                ("Server resources", [CPU_UTILIZATION, replace(GPU_UTILIZATION, width=12)]),
            ],
        ),
        HISTORY_FILES[SQLITE.backend]: _history("loadgen-history", "loadgen history", "SQLite", SQLITE),
        HISTORY_FILES[POSTGRES.backend]: _history(
            "loadgen-history-postgres", "loadgen history (PostgreSQL)", "PostgreSQL", POSTGRES
        ),
    }


def render(board: gd.Dashboard) -> str:
    """The dashboard as the JSON text committed here (stable: sorted keys, 2-space indent)."""
    data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_files() -> dict[str, str]:
    """Every generated file (path relative to this folder -> text)."""
    boards = dashboards()
    assert tuple(boards) == (*DASHBOARD_FILES, HISTORY_FILES["postgresql"])
    files = {name: render(board) for name, board in boards.items()}
    files.update(provisioning_files(DOCKER_PROMETHEUS_URL, SqliteRuns(DOCKER_DB_PATH), DOCKER_DASHBOARDS_DIR))
    # the same for a PostgreSQL runs database (a server named `postgres` beside Grafana), not used by docker/
    postgres = provisioning_files(
        DOCKER_PROMETHEUS_URL, runs_database(DOCKER_POSTGRES_URL), DOCKER_DASHBOARDS_DIR
    )
    files.update(
        {
            f"{POSTGRES_PROVISIONING}/{path.removeprefix('provisioning/')}": text
            for path, text in postgres.items()
        }
    )
    return files


def main() -> int:
    for relative, text in build_files().items():
        path = HERE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
