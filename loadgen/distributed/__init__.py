"""Load from many hosts: a sweep's workers as Ray actors (``--ray``)."""
