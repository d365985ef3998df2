"""The sub-commands of ``loadgen``: one module each, whose ``register(sub)`` adds its parser(s) with
``handler=<function(args) -> exit code>``; ``loadgen.cli`` registers them in the order of ``COMMANDS``."""

COMMANDS = (
    "serve",
    "model",
    "sweep",
    "tune",
    "runs",
    "db",
    "tables",
    "compare",
    "report",
    "plan",
    "schedule",
    "export",
    "workers",
)
