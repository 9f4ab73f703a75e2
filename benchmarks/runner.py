"""The command line: choose workloads and loops, run them interleaved, report.

For each workload, the loops take turns (round-robin, the starting loop
rotating from one repeat to the next) until each has been measured
``--repeat`` times; each measurement is a fresh process that warms up once
and then times one run on a fresh loop. A loop that is not available, or
that lacks an API the workload needs, is reported and not retried.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import _timing, loops, report
from ._child import MARKER
from ._registry import LOOP_KINDS, Workload, all_workloads

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time the same asyncio workloads on the stdlib loop, uvloop and "
        "trio-asyncio, interleaved, and compare them.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and 3 repeats (a smoke run, for CI)"
    )
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help="run only these workloads (see --list)"
    )
    parser.add_argument(
        "--repeat", type=int, metavar="N", help="measurements per loop and workload (default 5)"
    )
    parser.add_argument(
        "--loops",
        default=",".join(LOOP_KINDS),
        metavar="KIND[,KIND]",
        help=f"loop kinds, in column order (default: {','.join(LOOP_KINDS)})",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, metavar="F", help="multiply every size by F"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (a fresh loop per run) instead of a process per run",
    )
    parser.add_argument(
        "--gc",
        choices=_timing.GC_MODES,
        default="freeze",
        help="garbage collector during the timed part: freeze the pre-existing objects "
        "(default), turn it off, or leave it as it is",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up on one measurement after this long (default 120, quick 30)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="PATH",
        help="where to write the JSON results (default benchmarks/results/latest.json)",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show tracebacks of failed runs"
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.timeout is None:
        args.timeout = 30.0 if args.quick else 120.0
    if args.scale <= 0:
        parser.error("--scale must be positive")
    args.loop_kinds = [k.strip() for k in args.loops.split(",") if k.strip()]
    unknown = [k for k in args.loop_kinds if k not in LOOP_KINDS]
    if unknown or not args.loop_kinds:
        parser.error(f"--loops: unknown {', '.join(unknown)}; choose from {', '.join(LOOP_KINDS)}")
    return args


def select_workloads(only: str | None) -> tuple[list[Workload], list[str]]:
    """The workloads named by ``--only`` (all by default), plus the baselines they need."""
    registry = all_workloads()
    if not only:
        return list(registry.values()), []
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in registry]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}\nknown: {', '.join(registry)}")
    added = []
    for name in list(wanted):
        baseline = registry[name].baseline
        if baseline and baseline not in wanted:
            wanted.append(baseline)
            added.append(f"{baseline} (baseline of {name})")
    return [w for w in registry.values() if w.name in wanted], added


def run_measurement(
    kind: str, wl: Workload, size: int, args: argparse.Namespace, *, first: bool
) -> dict[str, Any]:
    """One measurement: in a new process, or here (warming up only the first time)."""
    if args.in_process:
        return loops.measure(kind, wl, size, warmup=first)
    spec = {"loop": kind, "workload": wl.name, "size": size, "warmup": True, "gc": args.gc}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._child", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=args.timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "note": f"timed out after {args.timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    stderr = proc.stderr.strip().splitlines()
    return {
        "status": "error",
        "note": f"exit status {proc.returncode}: " + (stderr[-1] if stderr else "no output"),
        "traceback": proc.stderr,
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    import trio_asyncio

    found = {"python": platform.python_version(), "trio_asyncio": trio_asyncio.__version__}
    for dist in ("trio", "uvloop", "aiohttp"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "-"
    return found


def _machine() -> dict[str, Any]:
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "load": load,
    }


def measure_workload(
    wl: Workload,
    kinds: list[str],
    unavailable: dict[str, str],
    args: argparse.Namespace,
    notes: list[str],
) -> tuple[dict[str, Any], int]:
    """Measure *wl* on every loop in *kinds*, interleaved; return its row and its error count."""
    size = max(2, round((wl.quick_size if args.quick else wl.size) * args.scale))
    row = report.row_skeleton(wl, size, size)
    missing = loops.missing_requirement(wl)
    if missing is not None:
        notes.append(f"{wl.name}: skipped: {missing} is not installed")
    cells: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {}
    for kind in kinds:
        if not wl.runs_on(kind):
            cells[kind] = {"status": "n/a"}
        elif kind in unavailable:
            cells[kind] = {"status": "skipped", "note": unavailable[kind]}
        elif missing is not None:
            cells[kind] = {"status": "skipped", "note": f"{missing} is not installed"}
        else:
            times[kind] = []
    active = list(times)
    errors = 0
    for repeat in range(args.repeat):
        shift = repeat % len(active) if active else 0
        for kind in active[shift:] + active[:shift]:
            if kind in cells:
                continue  # failed earlier: not retried
            result = run_measurement(kind, wl, size, args, first=repeat == 0)
            if result["status"] == "ok":
                times[kind].append(result["seconds"])
                continue
            cells[kind] = result
            notes.append(f"{wl.name}: {kind}: {result['note']}")
            if result["status"] == "error":
                errors += 1
                if args.verbose and result.get("traceback"):
                    print(result["traceback"], file=sys.stderr)
    for kind in active:
        if kind not in cells:
            cells[kind] = {"status": "ok", **report.summarize(times[kind], size)}
    row["loops"] = {kind: cells[kind] for kind in kinds}
    return row, errors


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``; returns the exit status."""
    args = parse_args(argv)
    _timing.set_gc_mode(args.gc)
    if args.list:
        for wl in all_workloads().values():
            print(f"{wl.name:<24} {wl.group:<9} {wl.description}")
        return 0
    selected, added = select_workloads(args.only)
    kinds: list[str] = args.loop_kinds
    notes = [f"added {name}" for name in added]
    unavailable = {k: r for k in kinds if (r := loops.unavailable_reason(k)) is not None}
    notes += [f"{k}: skipped everywhere: {reason}" for k, reason in unavailable.items()]
    if "stdlib" not in kinds:
        notes.append("no ratios: the stdlib loop, their reference, is not among --loops")

    started_at = time.time()
    results: dict[str, dict[str, Any]] = {}
    errors = 0
    for index, wl in enumerate(selected, 1):
        print(f"[{index}/{len(selected)}] {wl.name} ...", file=sys.stderr, flush=True)
        results[wl.name], failed = measure_workload(wl, kinds, unavailable, args, notes)
        errors += failed
        report.add_ratios(results)
        print("    " + report.progress_line(results[wl.name], kinds), file=sys.stderr, flush=True)

    full = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started_at, 1),
            "argv": sys.argv[1:] if argv is None else argv,
            "repeat": args.repeat,
            "quick": args.quick,
            "scale": args.scale,
            "gc": args.gc,
            "isolation": "in-process" if args.in_process else "process",
            "versions": _versions(),
            "machine": _machine(),
            "loop_descriptions": {k: loops.DESCRIPTIONS[k] for k in kinds},
        },
        "loops": kinds,
        "workloads": results,
        "geomean": report.geomeans(results, kinds),
        "notes": notes,
    }
    print(report.format_table(full))
    report.write_json(full, args.output)
    print(f"\nresults written to {args.output}", file=sys.stderr)
    return 1 if errors else 0
