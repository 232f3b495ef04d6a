"""Benchmarks, each next to its plainly-written baseline."""
