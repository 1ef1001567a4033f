"""`python -m tests.perf` (what `make bench` runs): the four benchmarks against the real
RabbitMQ and PostgreSQL, medians of `--rounds`, written to docs/performance.md."""
from __future__ import annotations

import argparse
import asyncio
from dataclasses import fields
from pathlib import Path

from tests.perf.harness import BENCHES, Sizes, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES), help="benchmarks to run")
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"),
                        help="Markdown report to write ('-' for none)")
    for f in fields(Sizes):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, dest=f.name)
    args = parser.parse_args(argv)
    sizes = Sizes(**{f.name: getattr(args, f.name) for f in fields(Sizes)})
    out = None if str(args.out) == "-" else args.out
    asyncio.run(run(tuple(args.only), sizes, args.rounds, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
