"""The pass/fail criteria of a soak run.

A run fails if any of these holds:

**Errors.** Any churn operation raised, or anything was reported where nobody
could catch it (loop exception handlers, unraisable exceptions, crashed
threads, warnings, WARNING+ log records). Each error is a bug or a leak in
the making; none is expected.

**RSS growth.** The median RSS of the *last window* of the churn is more than
``rss_limit`` (5%) above the median of the *first window after warm-up*.

* The RSS judged is its anonymous part (``RssAnon``: heap, thread stacks,
  anonymous maps), where a leak shows. The rest (``RssFile``) is the pages
  of the interpreter, shared libraries and modules that are resident at the
  moment: they come in as code runs for the first time, and the kernel
  evicts them when the machine runs short of memory (a busy CI machine
  has been seen to take 8 MiB, a quarter of the total, away in the middle
  of a run). Total RSS is in the CSV, the plot and the summary too.

* Warm-up is ``max(20% of the run, min(30 s, 50% of the run))``: 120 s of a
  10-minute run, 30 s of a 2-minute one. During it, RSS rises for reasons
  that are not leaks and happen once: lazy imports, the interpreter's
  specialization caches, pymalloc arenas, malloc heaps and free lists
  growing to the run's steady state, executor and Trio cache threads and
  their stacks.
* A window is ``max(5 samples, 10% of the run)``: 60 s of a 10-minute run.
  Medians, not single samples: RSS under churn jitters with the number of
  connections in flight and with the timing of garbage collections, and a
  median ignores those spikes, where a first-vs-last sample comparison
  would flag (or hide) one.
* Both windows are taken *during* the churn, under the same load, so they
  compare like with like. The RSS after the churn has stopped is reported
  but not judged: malloc rarely gives freed memory back to the OS, so it
  says little either way.
* A run too short to hold warm-up and two separate windows (the smoke test)
  is not judged on RSS; the summary says so.

The least-squares slope of RSS after warm-up is reported too (MiB/min), as a
second opinion that does not depend on where the windows fall.

**File descriptors.** After the churn has stopped, every loop is closed and
``gc.collect()`` has run, the fd count must equal its count at the start
(before any churn). The leftover fds are listed (``/proc/self/fd`` targets).

**Threads.** After the churn, the OS thread count must come back to its
count at the start. Threads that churn legitimately leaves behind for a
while, and only those, are waited for, up to ``thread_drain`` seconds
(default 15):

* default-executor workers: each loop shuts its executor down on closing
  (``shutdown_default_executor`` waits for the threads), so they are gone
  by then, or within moments for a loop closed without that step;
* Trio's thread cache (``trio.to_thread``, so ``TrioExecutor`` jobs, and the
  I/O thread of each sync loop's guest run): an idle worker exits after
  10 s (``trio._core._thread_cache.IDLE_TIMEOUT``), so the default drain of
  15 s outlasts it and the count is then exact.

If the drain time runs out first (a short ``--thread-drain``, as in the
smoke test), leftover threads that are idle Trio cache workers (named
``Trio thread N``; a busy one carries its job's name) are tolerated, and
anything else fails: a named executor thread, a loop's helper thread, a
thread that Python does not know about.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from soak.sampler import Sample


def warmup_seconds(duration: float) -> float:
    """The warm-up of a run of *duration* seconds (see the module docstring)."""
    return max(0.2 * duration, min(30.0, 0.5 * duration))


def window_seconds(duration: float, interval: float) -> float:
    """The length of the RSS comparison windows."""
    return max(5 * interval, 0.1 * duration)


@dataclass
class RssVerdict:
    """The RSS comparison: medians of the two windows, growth in %, trend, and why."""

    checked: bool
    passed: bool
    limit_pct: float
    first_median_kib: float | None = None
    last_median_kib: float | None = None
    first_window: tuple[float, float] | None = None
    last_window: tuple[float, float] | None = None
    growth_pct: float | None = None
    slope_mib_per_min: float | None = None
    note: str = ""


def judge_rss(
    samples: list[Sample], duration: float, interval: float, limit_pct: float
) -> RssVerdict:
    """Compare the median anonymous RSS of the first window after warm-up with the last window's."""
    warmup = warmup_seconds(duration)
    window = window_seconds(duration, interval)
    during = [s for s in samples if s.phase in ("warmup", "run")]
    after_warmup = [s for s in during if s.t >= warmup]
    slope = _slope_mib_per_min(after_warmup)
    if duration - warmup < 2 * window:
        return RssVerdict(
            checked=False,
            passed=True,
            limit_pct=limit_pct,
            slope_mib_per_min=slope,
            note=f"not judged: a {duration:.0f} s run is too short for warm-up "
            f"({warmup:.0f} s) and two {window:.0f} s windows",
        )
    first_window = (warmup, warmup + window)
    last_window = (duration - window, duration)
    first = [s.rss_anon_kib for s in after_warmup if first_window[0] <= s.t < first_window[1]]
    last = [s.rss_anon_kib for s in after_warmup if last_window[0] <= s.t <= last_window[1]]
    if len(first) < 2 or len(last) < 2:
        return RssVerdict(
            checked=False,
            passed=False,
            limit_pct=limit_pct,
            slope_mib_per_min=slope,
            note=f"too few samples to judge ({len(first)} and {len(last)} in the windows): "
            "the sampler was starved",
        )
    first_median = statistics.median(first)
    last_median = statistics.median(last)
    growth = 100.0 * (last_median - first_median) / first_median
    return RssVerdict(
        checked=True,
        passed=growth <= limit_pct,
        limit_pct=limit_pct,
        first_median_kib=first_median,
        last_median_kib=last_median,
        first_window=first_window,
        last_window=last_window,
        growth_pct=growth,
        slope_mib_per_min=slope,
    )


def _slope_mib_per_min(samples: list[Sample]) -> float | None:
    """Least-squares slope of anonymous RSS over time, in MiB per minute."""
    if len(samples) < 3:
        return None
    ts = [s.t for s in samples]
    rs = [s.rss_anon_kib / 1024 for s in samples]
    mean_t = statistics.fmean(ts)
    mean_r = statistics.fmean(rs)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rs))
    return cov / var * 60


@dataclass
class ResourceVerdict:
    """fds and threads: counts at start and end, what is left over, and the outcome."""

    fds_start: int
    fds_end: int
    leftover_fds: dict[int, str]
    threads_start: int
    threads_end: int
    leftover_threads: list[tuple[int, str, bool]]  # tid, name, idle Trio cache worker
    thread_drain_seconds: float
    fds_passed: bool = field(init=False)
    threads_passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.fds_passed = self.fds_end <= self.fds_start
        tolerated = sum(1 for _, _, idle_trio in self.leftover_threads if idle_trio)
        self.threads_passed = self.threads_end - tolerated <= self.threads_start and all(
            idle_trio for _, _, idle_trio in self.leftover_threads
        )
