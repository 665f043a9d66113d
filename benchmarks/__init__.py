"""Benchmarks and experiment scripts, run from the repository root as modules
(``python -m benchmarks.speed.bench_model``): ``speed/`` times the app, the models and
distillation; ``experiments/`` holds the measurements behind docs/; ``figures/`` writes the
tables, screenshots and card checks the README and docs quote."""
