"""Benchmarks of the lab engine: per-step check/solve/reset and fork-bomb containment."""
