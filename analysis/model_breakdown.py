"""Where a composite model's time goes, model by model: an ensemble's steps, or the models a BLS
model calls, each with its own ``/stats`` delta per step (``composing_stats``).

Each composing model's "server time" is what Triton counts for its successful requests (queue and
compute, from the request's arrival at that model to its response); its share is of the composing
models' total, so the model to attack is the one with the largest share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.finding_kinds import Finding, Kind, Severity
from analysis.frames import load_level

DOMINANT_SHARE = 0.5
"""A composing model with this share of the composing models' server time or more dominates."""


def models_of(frame: pd.DataFrame) -> list[str]:
    """The composing models, in the order they were stored (an ensemble's step order)."""
    return list(dict.fromkeys(frame["model"]))


def model_table(frame: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Per step and composing model: rates, mean batch, queue and compute (ms), share of the time."""
    duration = dict(zip(steps["step_index"], steps["duration_s"], strict=True))
    seconds = frame["step_index"].map(duration).astype("float64")
    loads = [load_level(row)[0] for row in frame.to_dict("records")]
    return pd.DataFrame(
        {
            "Load": loads,
            "Model": frame["model"],
            "Inferences/s": frame["inference_count"] / seconds,
            "Executions/s": frame["execution_count"] / seconds,
            "Avg batch": frame["inference_count"] / frame["execution_count"].replace(0, np.nan),
            "Queue (ms)": frame["queue_us"] / 1000.0,
            "Compute (ms)": frame["compute_us"] / 1000.0,
            "In model (ms)": frame["request_us"] / 1000.0,
            "Share of server time": [f"{v:.0%}" if v == v else "-" for v in frame["share"]],
        }
    )


def composing_csv_frames(frame: pd.DataFrame, steps: pd.DataFrame, scenario: str) -> dict[str, pd.DataFrame]:
    """Each composing model's CSV in perf_analyzer's layout (the files it writes beside its ``-f``
    file for an ensemble's models): its load column, Inferences/Second (the client's, scaled by the
    model's share of the requests, as perf_analyzer does), Client Send 0, Network+Server Send/Recv
    (the model's own time beyond queue and compute), Server Queue, Server Compute Input/Infer/Output
    (us) and Client Recv 0."""
    ordered = steps.sort_values("step_index")
    load = (
        ("Request Rate", ordered["request_rate"])
        if scenario == "request_rate"
        else ("Concurrency", ordered["concurrency"])
    )
    found = {}
    for model in models_of(frame):
        rows = frame[frame["model"] == model].set_index("step_index").reindex(ordered["step_index"])
        requests = ordered["server_success_count"].replace(0, np.nan).to_numpy()
        share = rows["success_count"].to_numpy() / requests
        columns = {
            load[0]: load[1].to_numpy(),
            "Inferences/Second": share * ordered["throughput"].to_numpy(),
            "Client Send": 0,
            "Network+Server Send/Recv": np.maximum(
                (rows["request_us"] - rows["queue_us"] - rows["compute_us"]).to_numpy(), 0
            ),
            "Server Queue": rows["queue_us"].to_numpy(),
            "Server Compute Input": rows["compute_input_us"].to_numpy(),
            "Server Compute Infer": rows["compute_infer_us"].to_numpy(),
            "Server Compute Output": rows["compute_output_us"].to_numpy(),
            "Client Recv": 0,
        }
        table = pd.DataFrame(columns)
        times = [c for c in table.columns if c.startswith(("Server", "Network"))]
        table[times] = table[times].round().astype("Int64")
        found[model] = table
    return found


def dominant_models(frame: pd.DataFrame) -> list[tuple[int, str, str, float, float, float]]:
    """Per step (in load order): (step index, load, the model with the largest share, its share,
    queue us, compute us per request)."""
    found = []
    for step_index, group in frame.sort_values("step_index").groupby("step_index", sort=False):
        if group["share"].isna().all():
            continue
        top = group.sort_values("share", ascending=False).to_dict("records")[0]
        compute = float(top["compute_us"])
        load, model = load_level(top)[0].replace("c=", "concurrency "), str(top["model"])
        found.append(
            (int(str(step_index)), load, model, float(top["share"]), float(top["queue_us"]), compute)
        )
    return found


def dominant_text(load: str, model: str, share: float, queue_us: float, compute_us: float) -> str:
    """``preprocess dominates: 71% of the composing models' server time at c=32 ...``."""
    verb = "dominates" if share >= DOMINANT_SHARE else "takes the most"
    where = "queueing" if queue_us > compute_us else "compute"
    cure = (
        f"add instances of {model} or let it batch"
        if where == "queueing"
        else f"{model}'s own execution is the bottleneck"
    )
    per_request = f"queue {queue_us / 1000:.2f} ms, compute {compute_us / 1000:.2f} ms per request"
    return (
        f"{model} {verb}: {share:.0%} of the composing models' server time at {load} "
        f"({per_request}): mostly {where}; {cure}"
    )


def model_findings(frame: pd.DataFrame) -> list[Finding]:
    """Which composing model takes the time: one finding per run of neighbouring loads where the
    same model leads, said at the highest of them (where it matters most)."""
    groups: list[list[tuple[int, str, str, float, float, float]]] = []
    for step_index, load, model, share, queue, compute in dominant_models(frame):
        if groups and groups[-1][-1][2] == model:
            groups[-1].append((step_index, load, model, share, queue, compute))
        else:
            groups.append([(step_index, load, model, share, queue, compute)])
    found = []
    for group in groups:
        step_index, load, model, share, queue, compute = group[-1]
        text = dominant_text(load, model, share, queue, compute)
        if len(group) > 1:
            shares = [g[3] for g in group]
            text += f" ({min(shares):.0%} to {max(shares):.0%} from {group[0][1]} to {load})"
        found.append(Finding(Kind.COMPOSING, Severity.INFO, text, step_index))
    return found
