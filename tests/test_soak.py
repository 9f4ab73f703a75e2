"""Smoke test of the soak harness (``python -m soak``, soak/README.rst), and of its verdicts.

The real soak runs for minutes (``make soak``); here a few seconds show that
every kind of churn moves, the CSV is written, and a healthy run passes.
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soak.checks import ResourceVerdict, judge_rss, warmup_seconds, window_seconds  # noqa: E402
from soak.sampler import Sample  # noqa: E402
from soak.state import COUNTERS, GROUPS  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_short_soak_run_churns_everything_and_passes(tmp_path: Path) -> None:
    # --thread-drain 1: idle Trio cache threads (they exit after 10 s) are
    # tolerated instead of waited for, which keeps this test short.
    argv = ["--seconds", "4", "--out", str(tmp_path), "--thread-drain", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "soak", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "RESULT: PASS" in proc.stdout

    with open(tmp_path / "soak.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["phase"] == "start"
    assert rows[-1]["phase"] == "end"
    assert {row["phase"] for row in rows[1:-1]} >= {"warmup", "run"}
    first, last = rows[0], rows[-1]
    for name in COUNTERS:
        assert int(first[name]) == 0
        assert int(last[name]) > 0, f"{name} did not move:\n{output}"
    assert int(last["errors"]) == 0
    assert int(last["fds"]) == int(first["fds"])
    for row in rows:
        assert int(row["rss_kib"]) >= int(row["rss_anon_kib"]) > 0
        assert int(row["threads"]) >= 1

    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "soak.png").stat().st_size > 0
    else:
        assert not (tmp_path / "soak.png").exists()


def _samples(duration: float, rss: list[int]) -> list[Sample]:
    warmup = warmup_seconds(duration)
    zero = dict.fromkeys(COUNTERS, 0)
    return [
        Sample(float(t), "warmup" if t < warmup else "run", 10, 3, kib, kib, 0, 0, 0, zero, 0)
        for t, kib in enumerate(rss)
    ]


def test_rss_verdict_compares_window_medians() -> None:
    duration = 120.0
    assert warmup_seconds(duration) == 30.0
    assert window_seconds(duration, 1.0) == 12.0
    flat = [50_000] * 30 + [40_000] * 91  # warm-up ignored
    verdict = judge_rss(_samples(duration, flat), duration, 1.0, 5.0)
    assert verdict.checked and verdict.passed and verdict.growth_pct == 0.0
    # A few spikes in the last window do not move its median.
    spiky = [40_000] * 110 + [60_000, 40_000, 60_000, 40_000] + [40_000] * 7
    assert judge_rss(_samples(duration, spiky), duration, 1.0, 5.0).passed
    # A steady 10% climb fails.
    growing = [40_000 + 40 * t for t in range(121)]
    verdict = judge_rss(_samples(duration, growing), duration, 1.0, 5.0)
    assert verdict.checked and not verdict.passed
    assert verdict.growth_pct is not None and verdict.growth_pct > 5.0


def test_rss_verdict_skips_runs_too_short_to_judge() -> None:
    verdict = judge_rss(_samples(5.0, [40_000, 50_000, 60_000, 70_000, 80_000]), 5.0, 1.0, 5.0)
    assert not verdict.checked and verdict.passed
    assert "too short" in verdict.note


def test_thread_verdict_tolerates_only_idle_trio_workers() -> None:
    def verdict(leftover: list[tuple[int, str, bool]], end: int) -> ResourceVerdict:
        return ResourceVerdict(5, 5, {}, 2, end, leftover, 1.0)

    assert verdict([], 2).threads_passed
    assert verdict([(11, "Trio thread 3", True)], 3).threads_passed
    assert not verdict([(11, "asyncio_0", False)], 3).threads_passed
    assert not verdict([(11, "Trio thread 3", True), (12, "asyncio_0", False)], 4).threads_passed
    assert not verdict([], 3).threads_passed  # one more thread, and not even identified
    assert not ResourceVerdict(5, 6, {6: "socket:[1]"}, 2, 2, [], 1.0).fds_passed


def test_groups_cover_the_counters() -> None:
    grouped = {name for members in GROUPS.values() for name in members}
    assert grouped | {"conn_from_sync"} == set(COUNTERS)
