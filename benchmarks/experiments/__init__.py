"""Benchmarks: experiments."""
