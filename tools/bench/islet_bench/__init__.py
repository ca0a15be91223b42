"""Islet's benchmark program: measurement, statistics and reports (tools/bench/bench.py)."""
