"""Run the benchmarks named on the command line (all of them when none is named).

A benchmark module may take options: it defines `add_arguments(parser)`, and its `run(out_dir, options)`
gets the parsed namespace (e.g. `python -m tests.bench settlement --receipts 100000`; `--help` after the
names lists them).
"""

import os

# As `dolphin` does (cli/main.py): no third-party tqdm redraws in a benchmark's log.
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import tests.bench as bench_package


def available() -> list[str]:
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(bench_package.__path__)
        if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    names = available()
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {names}")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="where results are written")
    # The named benchmarks' own options (an option's value is never taken for a benchmark's name).
    modules = {name: importlib.import_module(f"tests.bench.bench_{name}") for name in names if name in argv}
    takes_options = {name for name, module in modules.items() if hasattr(module, "add_arguments")}
    for name in sorted(takes_options):
        modules[name].add_arguments(parser)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {names}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or names:
        module = modules.get(name) or importlib.import_module(f"tests.bench.bench_{name}")
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        results = module.run(args.out, args) if name in takes_options else module.run(args.out)
        results["wall_seconds"] = round(time.perf_counter() - started, 2)
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(json.dumps(results, indent=2, sort_keys=True))
        print(f"-> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
