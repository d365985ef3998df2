"""A sweep's settings: the frozen objects, every option once, and the one constructor.

``settings`` holds the objects and the rules about each, ``options`` the table of
sweep options (``option``: key, flags, help, parser; ``request_options``: those that shape how
each request is sent), ``values`` and ``ranges`` the parsers,
``build`` the constructor every front-end calls (a broken rule is a
:class:`~loadgen.errors.SettingProblem`). Nothing here imports the engine or results:
reading settings costs no load machinery.
"""

from loadgen.config.build import build_settings, merge, option_key, parse_layer
from loadgen.config.measurement import MeasurementSettings, StopRule
from loadgen.config.option import Option
from loadgen.config.options import BY_KEY, BY_NAME, DERIVED, LOAD_KEYS, OPTIONS, spell_flag
from loadgen.config.ranges import parse_levels, parse_rates
from loadgen.config.settings import (
    DEFAULT_GRPC_URL,
    DEFAULT_HTTP_URL,
    DEFAULT_METRICS_PORT,
    DEFAULT_URLS,
    GRPC_CLIENTS,
    REQUEST_TIMEOUT_S,
    Distribution,
    LatencyLimit,
    Protocol,
    Scenario,
    SweepSettings,
    default_metrics_url,
)
from loadgen.config.values import parse_latency_limit
from loadgen.errors import SettingProblem, SettingsError

__all__ = [
    "BY_KEY",
    "BY_NAME",
    "DEFAULT_GRPC_URL",
    "DEFAULT_HTTP_URL",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_URLS",
    "DERIVED",
    "GRPC_CLIENTS",
    "LOAD_KEYS",
    "OPTIONS",
    "REQUEST_TIMEOUT_S",
    "Distribution",
    "LatencyLimit",
    "MeasurementSettings",
    "StopRule",
    "Option",
    "Protocol",
    "Scenario",
    "SettingProblem",
    "SettingsError",
    "SweepSettings",
    "build_settings",
    "default_metrics_url",
    "merge",
    "option_key",
    "parse_latency_limit",
    "parse_layer",
    "parse_levels",
    "parse_rates",
    "spell_flag",
]
