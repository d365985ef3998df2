"""Terminal output: live progress and tables."""
