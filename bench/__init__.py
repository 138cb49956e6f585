"""Reproducible benchmarks: `python -m bench [CASE ...]` or `make bench`."""
