"""Sub-commands beyond the core ones; each module's ``register(sub)`` adds its parsers."""
