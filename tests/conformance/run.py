"""Run CPython's ``test.test_asyncio`` on trio-asyncio's loop; report conformance.

Usage (from the repository root, with the Python to test)::

    python -m tests.conformance.run [--mode loop|whole|all] [-k GLOB]... [--json PATH]

The tests run in worker processes (``worker.py``), one after the other; a
test that hangs past ``--timeout`` or crashes its worker is recorded as such
and a new worker carries on with the next test. Every test that fails is
looked up in ``exclusions.txt``. The run fails (exit status 1) when a test
that is not excluded fails, times out or crashes, and when an excluded test
passes (the entry must then be removed, unless it is marked ``flaky``).

Writes a JSON report (default ``build/conformance/python-X.Y.json``) and
prints a human summary.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import exclusions

ROOT = Path(__file__).resolve().parents[2]
MODES = ("loop", "trio", "whole")
WORKER = [sys.executable, "-m", "tests.conformance.worker"]
# A worker that shows no progress for this long past the per-test timeout is
# killed (a hang outside any test, e.g. in a class fixture).
WATCHDOG_GRACE = 60.0
MAX_WORKERS_PER_MODE = 100
# Workers in a row that may die before their first test.
MAX_STARTUP_FAILURES = 3
EXIT_MISSING_TESTS = 4


class MissingTests(RuntimeError):
    pass


# ---- running one mode ----------------------------------------------------------------


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _module_of(test_id: str) -> str:
    return test_id.partition(":")[2].partition(".")[0]


def list_tests(mode: str, work_dir: Path) -> list[str]:
    out = work_dir / f"{mode}-ids.txt"
    proc = subprocess.run(
        [*WORKER, "list", mode, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == EXIT_MISSING_TESTS:
        raise MissingTests(proc.stderr.strip())
    if proc.returncode != 0:
        raise RuntimeError(f"listing the {mode} tests failed:\n{proc.stdout}\n{proc.stderr}")
    return [line.strip() for line in out.read_text(encoding="utf-8").splitlines() if line]


class Progress:
    """One line per test module, printed when the run moves past it."""

    def __init__(self, mode: str, excluded: Callable[[str], bool]) -> None:
        self.mode = mode
        self.excluded = excluded
        self.module: str | None = None
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()

    def test_started(self, test_id: str) -> None:
        module = _module_of(test_id)
        if module != self.module:
            self.flush()
            self.module = module
            self.started = time.monotonic()

    def test_done(self, test_id: str, outcome: str) -> None:
        self.test_started(test_id)
        if outcome not in ("passed", "skipped") and self.excluded(test_id):
            outcome = "excluded"
        self.counts[outcome] += 1

    def flush(self) -> None:
        if self.module is None:
            return
        total = sum(self.counts.values())
        bad = {k: v for k, v in self.counts.items() if k != "passed"}
        extra = "".join(f", {v} {k}" for k, v in sorted(bad.items()))
        took = time.monotonic() - self.started
        print(
            f"  {self.mode}: {self.module:<28} {total:4d} tests{extra}  ({took:.1f} s)", flush=True
        )
        self.module = None
        self.counts.clear()


def run_mode(
    mode: str,
    ids: list[str],
    timeout: float,
    matcher: exclusions.Matcher,
    work_dir: Path,
) -> dict[str, dict]:
    """Run the tests *ids* of *mode* in workers; return {id: raw result}.

    Excluded tests may have shorter timeouts (those that hang).
    """
    timeouts = {}
    for test_id in ids:
        entry = matcher.find(test_id, mark_used=False)
        if entry is not None and entry.timeout is not None:
            timeouts[test_id] = entry.timeout
    results: dict[str, dict] = {}
    remaining = list(ids)
    progress = Progress(mode, lambda t: matcher.find(t, mark_used=False) is not None)
    attempt = 0
    startup_failures = 0
    while remaining:
        attempt += 1
        if attempt > MAX_WORKERS_PER_MODE:
            for test_id in remaining:
                results[test_id] = _raw(test_id, "crash", "too many worker crashes: not run")
            break
        ids_file = work_dir / f"{mode}-{attempt}-ids.txt"
        events_file = work_dir / f"{mode}-{attempt}-events.jsonl"
        log_file = work_dir / f"{mode}-{attempt}.log"
        ids_file.write_text(
            "".join(f"{t}\t{timeouts.get(t, timeout):g}\n" for t in remaining), encoding="utf-8"
        )
        events_file.write_text("", encoding="utf-8")
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                [*WORKER, "run", mode, str(ids_file), str(events_file)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            current, done, hung = _follow(proc, events_file, results, progress, timeout)
        _kill_group(proc)
        if done:
            for test_id in remaining:
                if test_id not in results:
                    results[test_id] = _raw(
                        test_id,
                        "not-run",
                        "unittest never started this test (did a class or module fixture "
                        "fail? see the fixture's own entry)",
                    )
            break
        if current is None:
            if not any(t in results for t in remaining):
                # A worker killed from outside (the OOM killer, a stray
                # signal) says nothing about the tests: try again, twice.
                startup_failures += 1
                if startup_failures < MAX_STARTUP_FAILURES:
                    continue
                detail = f"the worker failed before any test (exit {proc.returncode}):\n"
                for test_id in remaining:
                    results[test_id] = _raw(test_id, "crash", detail + _tail(log_file))
                break
        else:
            startup_failures = 0
        if current is not None:
            outcome = "timeout" if hung or "Timeout (0:" in _tail(log_file, 400) else "crash"
            what = (
                f"no result within {timeouts.get(current, timeout):g} s"
                if outcome == "timeout"
                else f"the worker died (exit {proc.returncode})"
            )
            results[current] = _raw(
                current, outcome, f"{what}; end of {log_file.name}:\n{_tail(log_file)}"
            )
            progress.test_done(current, outcome)
        remaining = [t for t in remaining if t not in results]
    progress.flush()
    return results


def _raw(test_id: str, outcome: str, details: str) -> dict:
    return {
        "id": test_id,
        "outcome": outcome,
        "details": details,
        "duration": 0.0,
        "created": False,
        "ran": False,
    }


def _follow(
    proc: subprocess.Popen[Any],
    events_file: Path,
    results: dict[str, dict],
    progress: Progress,
    timeout: float,
) -> tuple[str | None, bool, bool]:
    """Read the worker's events until it exits; return (unfinished test, done, hung)."""
    current: str | None = None
    done = False
    hung = False
    offset = 0
    pending = ""
    last_event = time.monotonic()
    while True:
        exited = proc.poll() is not None
        with open(events_file, encoding="utf-8") as f:
            f.seek(offset)
            chunk = f.read()
            offset = f.tell()
        pending += chunk
        *lines, pending = pending.split("\n")
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            last_event = time.monotonic()
            kind = event.pop("event")
            if kind == "start":
                current = event["id"]
                progress.test_started(current)
            elif kind == "end":
                test_id = event["id"]
                if test_id in results and results[test_id]["outcome"] != "passed":
                    # Several reports for one fixture: keep them all.
                    results[test_id]["details"] += "\n" + (event.get("details") or "")
                else:
                    results[test_id] = event
                if test_id == current:
                    current = None
                progress.test_done(test_id, event["outcome"])
            elif kind == "done":
                done = True
        if exited:
            return current, done, hung
        if time.monotonic() - last_event > timeout + WATCHDOG_GRACE:
            hung = True
            _kill_group(proc)
            proc.wait()
            continue
        time.sleep(0.2)


# ---- classification and reports -----------------------------------------------------


def classify(
    mode: str, ids: list[str], raw: dict[str, dict], matcher: exclusions.Matcher
) -> list[dict]:
    """Attach the exclusion and the final status to each test's raw result."""
    records = []
    extra = [t for t in raw if t not in set(ids)]  # fixtures (setUpClass...) that failed
    for test_id in [*ids, *extra]:
        record = dict(raw.get(test_id) or _raw(test_id, "not-run", "no result"))
        record["mode"] = mode
        outcome = record["outcome"]
        if mode in ("loop", "trio") and outcome == "passed" and not record["created"]:
            outcome = record["outcome"] = "failed"
            record["details"] = "the test did not create a trio-asyncio loop: not on our loop"
        entry = matcher.find(test_id)
        if entry is not None:
            record["exclusion"] = {
                "category": entry.category,
                "reason": entry.reason,
                "line": entry.line,
                "flaky": entry.flaky,
            }
        else:
            record["exclusion"] = None
        if outcome == "skipped":
            status = "skipped"
        elif outcome == "passed":
            status = "xpass" if entry is not None and not entry.flaky else "passed"
        else:
            status = "excluded" if entry is not None else "failed"
        record["status"] = status
        records.append(record)
    return records


def summarize(records: list[dict], duration: float) -> dict[str, Any]:
    status = Counter(r["status"] for r in records)
    excluded = Counter(r["exclusion"]["category"] for r in records if r["status"] == "excluded")
    on_loop = [r for r in records if r["created"]]
    ran_loop = [r for r in records if r["ran"]]
    return {
        "tests": len(records),
        "created_our_loop": len(on_loop),
        "ran_our_loop": len(ran_loop),
        "ran_our_loop_passed": sum(1 for r in ran_loop if r["status"] == "passed"),
        "ran_our_loop_excluded": sum(1 for r in ran_loop if r["status"] == "excluded"),
        "passed": status["passed"],
        "skipped": status["skipped"],
        "excluded": {c: excluded[c] for c in exclusions.CATEGORIES},
        "failed": status["failed"],
        "xpass": status["xpass"],
        "duration": round(duration, 1),
    }


def _first_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip()[:160] if lines else ""


def print_report(report: dict[str, Any], records: list[dict], stale: list[Any]) -> None:
    print()
    print(f"======== conformance on Python {report['python']} ========")
    for mode, s in report["modes"].items():
        ex = s["excluded"]
        print(
            f"{mode:>5}: {s['tests']} tests, {s['created_our_loop']} created our loop, "
            f"{s['ran_our_loop']} ran it ({s['ran_our_loop_passed']} of those passed, "
            f"{s['ran_our_loop_excluded']} excluded)"
        )
        print(
            f"       passed {s['passed']}, skipped by the test itself {s['skipped']}, "
            f"excluded {sum(ex.values())} (stdlib-internals {ex['stdlib-internals']}, "
            f"deliberate {ex['deliberate']}, bug {ex['bug']}), "
            f"FAILED {s['failed']}, XPASS {s['xpass']}  [{s['duration']} s]"
        )
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        print()
        print(f"FAILED: {len(failed)} tests not in exclusions.txt")
        for r in failed:
            print(f"  {r['id']}  ({r['outcome']})")
        print()
        for r in failed[:30]:
            print(f"---- {r['id']} ({r['outcome']})")
            details = (r.get("details") or "").strip().splitlines()
            print("\n".join(details[-25:]))
    xpass = [r for r in records if r["status"] == "xpass"]
    if xpass:
        print()
        print(
            f"XPASS: {len(xpass)} excluded tests PASSED; remove their entries from exclusions.txt"
        )
        for r in xpass:
            print(f"  {r['id']}  (exclusions.txt line {r['exclusion']['line']})")
    if stale:
        print()
        print(f"warning: {len(stale)} exclusions matched no test on this Python:")
        for entry in stale:
            print(f"  line {entry.line}: {entry.pattern}")
    print(f"JSON report: {report['json']}")


# ---- main -------------------------------------------------------------------------------


def _selected(ids: list[str], patterns: list[str]) -> list[str]:
    if not patterns:
        return ids
    keep = []
    for test_id in ids:
        bare = test_id.partition(":")[2]
        if any(fnmatch.fnmatchcase(test_id, p) or fnmatch.fnmatchcase(bare, p) for p in patterns):
            keep.append(test_id)
    return keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.run", description=__doc__)
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all")
    parser.add_argument(
        "-k", dest="patterns", action="append", default=[], help="only ids matching this glob"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per-test timeout (s)")
    parser.add_argument("--json", type=Path, help="the JSON report's path")
    parser.add_argument("--exclusions", type=Path, default=exclusions.DEFAULT_PATH)
    parser.add_argument(
        "--allow-xpass", action="store_true", help="excluded tests that pass do not fail the run"
    )
    args = parser.parse_args(argv)

    version = sys.version_info[:2]
    tag = f"{version[0]}.{version[1]}"
    out_dir = ROOT / "build" / "conformance"
    work_dir = out_dir / f"python-{tag}"
    work_dir.mkdir(parents=True, exist_ok=True)
    for old in work_dir.iterdir():
        old.unlink()
    json_path = args.json or out_dir / f"python-{tag}.json"

    try:
        entries = exclusions.load(args.exclusions)
    except exclusions.ExclusionsError as exc:
        print(f"{args.exclusions}: {exc}", file=sys.stderr)
        return 2
    matcher = exclusions.Matcher(entries, version)

    modes = list(MODES) if args.mode == "all" else [args.mode]
    print(f"==> conformance: Python {platform.python_version()} ({sys.executable}), modes {modes}")
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "json": str(json_path),
        "exclusions": str(args.exclusions),
        "modes": {},
    }
    all_records: list[dict] = []
    started = time.monotonic()
    for mode in modes:
        mode_started = time.monotonic()
        try:
            ids = _selected(list_tests(mode, work_dir), args.patterns)
        except MissingTests as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return EXIT_MISSING_TESTS
        raw = run_mode(mode, ids, args.timeout, matcher, work_dir)
        records = classify(mode, ids, raw, matcher)
        report["modes"][mode] = summarize(records, time.monotonic() - mode_started)
        all_records.extend(records)
    report["duration"] = round(time.monotonic() - started, 1)
    stale = [] if args.patterns or len(modes) < len(MODES) else matcher.unused(modes)
    report["stale_exclusions"] = [{"line": e.line, "pattern": e.pattern} for e in stale]
    report["tests"] = all_records

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print_report(report, all_records, stale)

    failed = any(r["status"] == "failed" for r in all_records)
    xpass = any(r["status"] == "xpass" for r in all_records)
    if failed or (xpass and not args.allow_xpass):
        print(f"conformance on Python {tag}: FAILED ({report['duration']} s)")
        return 1
    print(f"conformance on Python {tag}: OK ({report['duration']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
