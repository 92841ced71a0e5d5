"""Experiments that reproduce claims of the papers in miniature (scripts, not run in CI)."""
