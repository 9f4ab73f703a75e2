"""Smoke test of the benchmark harness: ``python -m benchmarks --quick`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_quick_run_prints_table_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    proc = _run("--quick", "--only", "call_soon_chained,sleep0", "--output", str(output))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    table = proc.stdout
    header = next(line for line in table.splitlines() if line.startswith("workload"))
    for kind in ("stdlib", "uvloop", "trio_asyncio", "trio_asyncio_sync"):
        assert kind in header
    assert any(line.startswith("call_soon_chained") for line in table.splitlines())
    assert any(line.startswith("sleep0 ") for line in table.splitlines())
    assert "geomean (core)" in table

    report = json.loads(output.read_text(encoding="utf-8"))
    assert set(report["workloads"]) == {"call_soon_chained", "sleep0"}
    for row in report["workloads"].values():
        stdlib = row["loops"]["stdlib"]
        assert stdlib["status"] == "ok"
        assert len(stdlib["times"]) == report["meta"]["repeat"] == 3
        assert stdlib["ratio"] == 1.0
        ours = row["loops"]["trio_asyncio"]
        assert ours["status"] == "ok"
        assert ours["per_op"] > 0 and ours["ratio"] > 0
    assert report["geomean"]["core"]["stdlib"]["geomean"] == 1.0


def test_list_and_unknown_names() -> None:
    listing = _run("--list")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert {"call_soon_chained", "timers", "tcp_echo_protocol", "aio_as_trio_call"} <= set(names)

    unknown = _run("--only", "no_such_workload")
    assert unknown.returncode != 0
    assert "no_such_workload" in unknown.stderr
