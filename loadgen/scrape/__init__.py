"""What the server says about itself: control-plane API, ``/stats`` and Prometheus metrics."""

from loadgen.errors import ServerUnavailable, UnknownModel
from loadgen.scrape.metrics import MetricsScraper, parse_metrics
from loadgen.scrape.server_api import ServerAPI, parse_model_stats

__all__ = [
    "MetricsScraper",
    "ServerAPI",
    "ServerUnavailable",
    "UnknownModel",
    "parse_metrics",
    "parse_model_stats",
]
