"""Benchmarks: figures."""
