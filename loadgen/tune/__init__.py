"""``loadgen tune``: a served model's instances and batching searched live under an SLO (issue 21)."""
