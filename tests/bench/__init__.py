"""Benchmarks: `make bench` (or `python -m tests.bench [NAME ...]`) runs every `bench_*.py` module here.

Each module defines `run(out_dir: pathlib.Path) -> dict` and returns its numbers; the runner writes them to
`bench-results/<name>.json` (modules may also write plots there). Speed is compared as ratios to a baseline
measured in the same run, never as absolute numbers in unit tests: machines here are shared and noisy.
"""
