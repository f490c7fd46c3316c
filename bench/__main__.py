"""``python -m bench [ingest] [pipeline] [scale] [--quick]``: run, print a table, write results."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from typing import Any

from bench import common

BENCHMARKS = ("ingest", "pipeline", "scale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[*BENCHMARKS, []],
        metavar="name",
        help=f"which benchmarks (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes (whole suite well under 2 minutes)"
    )
    parser.add_argument(
        "--workers",
        type=_counts,
        default=None,
        metavar="N[,N…]",
        help="pipeline: also drain on PostgreSQL with each of these numbers of worker processes (e.g. 1,2,4)",
    )
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    rows: list[tuple[str, str, str]] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        t0 = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            options = {"workers": args.workers} if name == "pipeline" and args.workers else {}
            result: dict[str, Any] = module.run(quick=args.quick, **options)
        except Exception as exc:
            traceback.print_exc()
            failed.append(name)
            rows.append((name, "FAILED", f"{type(exc).__name__}: {exc}"[:100]))
            continue
        result["quick"] = args.quick
        result["wall_seconds"] = round(time.monotonic() - t0, 1)
        table = result.pop("table")
        path = common.write_result(name, result)
        rows.extend(table)
        if not result.get("correct", True):
            failed.append(name)
            rows.append((name, "INCORRECT", "; ".join(_problems(result))[:160]))
        print(f"   wrote {path.relative_to(common.PROJECT_ROOT)} ({result['wall_seconds']} s)", flush=True)
    _print_table(rows)
    print(f"total {time.monotonic() - started:.0f} s on {common.machine_info()['nproc']} CPUs", flush=True)
    return 1 if failed else 0


def _counts(text: str) -> list[int]:
    """``1,2,4`` → [1, 2, 4]: whole numbers from 1 to 16, the whole string."""
    import re

    if not re.fullmatch(r"(?:[1-9]|1[0-6])(?:,(?:[1-9]|1[0-6]))*", text):
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated worker counts from 1 to 16, e.g. 1,2,4")
    return [int(n) for n in text.split(",")]


def _problems(result: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.extend(node.get("problems") or ())
            for key, value in node.items():
                if key != "problems":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(result)
    return found


def _print_table(rows: list[tuple[str, str, str]]) -> None:
    if not rows:
        return
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    print(f"{'benchmark'.ljust(w0)}  {'figure'.rjust(w1)}  detail")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 40}")
    for a, b, c in rows:
        print(f"{a.ljust(w0)}  {b.rjust(w1)}  {c}")


if __name__ == "__main__":
    sys.exit(main())
