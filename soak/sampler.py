"""Process metrics from /proc, and the thread that samples them into the CSV.

Linux only (the soak reads ``/proc/self``). Each sample holds the open fd
count, the thread count (``Threads:`` of ``/proc/self/status``, so threads
that Python does not know about count too), the resident set size in all
(``VmRSS``) and its anonymous part (``RssAnon``: heap, stacks, anonymous
maps, which is where a leak shows), and every churn counter. Three more columns tell a leak from allocator
behaviour when RSS grows: the objects the garbage collector tracks, the
memory blocks Python has allocated (``sys.getallocatedblocks()``: every
object, containers or not), and the bytes glibc's malloc has handed out
and not got back (``mallinfo2()``; -1 where there is no such function).
If RSS steps up while these stay flat, the allocator kept pages, nobody
leaked them.
Rows are written and flushed as they are taken, so a run that crashes or
hangs still leaves its data behind. They are not kept in memory: the
verdict and the plot read the CSV back at the end, so that the soak's own
bookkeeping does not grow RSS (a dict of counters per second is about 0.7
MiB over 10 minutes, 2% of the process).
"""

from __future__ import annotations

import csv
import ctypes
import gc
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from soak.state import COUNTERS, SoakState

#: The CSV columns, in order.
FIELDS: tuple[str, ...] = (
    "t",
    "phase",
    "fds",
    "threads",
    "rss_kib",
    "rss_anon_kib",
    "py_objects",
    "py_blocks",
    "malloc_kib",
    *COUNTERS,
    "errors",
)


def fd_count() -> int:
    """Open fds of this process (the listing's own directory fd included, always)."""
    return len(os.listdir("/proc/self/fd"))


def fd_table() -> dict[int, str]:
    """fd -> what it points to (``socket:[123]``, a path, ...), for leak reports."""
    table = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            table[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # closed meanwhile, or the listing's own fd
    return table


def status_fields() -> dict[str, int]:
    """The numeric fields of ``/proc/self/status`` (``Threads``, ``VmRSS``, ``RssAnon``, ...)."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            first = value.split(maxsplit=1)[:1]
            if first and first[0].isdigit():
                fields[name] = int(first[0])
    return fields


def thread_ids() -> set[int]:
    """The native ids (tids) of this process's threads."""
    return {int(tid) for tid in os.listdir("/proc/self/task")}


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _find_mallinfo2() -> Callable[[], _Mallinfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2  # glibc 2.33+
    except (OSError, AttributeError):
        return None
    function.restype = _Mallinfo2
    function.argtypes = []
    return function  # type: ignore[no-any-return]


_mallinfo2 = _find_mallinfo2()


def malloc_in_use_kib() -> int:
    """KiB that malloc has handed out and not got back (all arenas and mmaps); -1 if unknown."""
    if _mallinfo2 is None:
        return -1
    info = _mallinfo2()
    return (info.uordblks + info.hblkhd) // 1024


#: Trio's thread cache names an idle worker "Trio thread N" (a busy one
#: takes its job's name while it runs, and gets this name back after).
_IDLE_TRIO_WORKER = re.compile(r"Trio thread \d+")


def describe_threads(tids: set[int]) -> list[tuple[int, str, bool]]:
    """(tid, name, is an idle Trio thread-cache worker) for each of *tids*."""
    by_tid = {t.native_id: t.name for t in threading.enumerate()}
    described = []
    for tid in sorted(tids):
        name = by_tid.get(tid)
        if name is None:
            try:
                with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as f:
                    name = f"{f.read().strip()} (not a Python thread)"
            except OSError:
                name = "(exited)"
        described.append((tid, name, bool(_IDLE_TRIO_WORKER.fullmatch(name))))
    return described


@dataclass
class Sample:
    """One row of the CSV."""

    t: float
    phase: str
    fds: int
    threads: int
    rss_kib: int
    rss_anon_kib: int
    py_objects: int
    py_blocks: int
    malloc_kib: int
    counts: dict[str, int]
    errors: int

    def row(self) -> list[object]:
        return [
            f"{self.t:.2f}",
            self.phase,
            self.fds,
            self.threads,
            self.rss_kib,
            self.rss_anon_kib,
            self.py_objects,
            self.py_blocks,
            self.malloc_kib,
            *(self.counts[name] for name in COUNTERS),
            self.errors,
        ]


@dataclass
class Sampler:
    """Samples the process every *interval* seconds in a daemon thread, into *csv_path*.

    The phase of a row is ``warmup`` before *warmup* seconds, ``run`` until the
    churn's deadline, then ``drain`` while the churn stops and threads exit;
    :meth:`sample_now` takes the final ``start`` and ``end`` rows from the
    caller's thread.
    """

    state: SoakState
    csv_path: Path
    interval: float
    warmup: float
    #: Called with a sample every *progress_seconds* (the runner prints a line).
    progress: Callable[[Sample], None] | None = None
    progress_seconds: float = 30.0

    def __post_init__(self) -> None:
        self._file: IO[str] = open(self.csv_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        self._writer.writerow(FIELDS)
        self._file.flush()
        #: Held while sampling; hold it to list fds without racing the sampler.
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the CSV."""
        self._stop.set()
        self._thread.join()
        self._file.close()

    def sample_now(self, phase: str | None = None, last: bool = False) -> Sample:
        """Take one sample (with the given phase, or the one the clock says) and write it.

        With *last*, the sampling thread takes no more after this one, so
        that this is the CSV's last row (it stays alive until :meth:`stop`,
        to be counted in this sample's threads as it was at the start).
        """
        # Under the lock: two listings of /proc/self/fd at once would each
        # see the other's directory fd.
        with self.lock:
            now = time.monotonic()
            elapsed = now - self.state.started
            if phase is None:
                if elapsed < self.warmup:
                    phase = "warmup"
                elif now < self.state.deadline:
                    phase = "run"
                else:
                    phase = "drain"
            status = status_fields()
            sample = Sample(
                t=elapsed,
                phase=phase,
                fds=fd_count(),
                threads=status["Threads"],
                rss_kib=status["VmRSS"],
                rss_anon_kib=status.get("RssAnon", status["VmRSS"]),
                py_objects=len(gc.get_objects()),
                py_blocks=sys.getallocatedblocks(),
                malloc_kib=malloc_in_use_kib(),
                counts=self.state.snapshot(),
                errors=self.state.error_count,
            )
            self._writer.writerow(sample.row())
            self._file.flush()
            if last:
                self._stop.set()  # after the counts: the thread was alive in them
        return sample

    def _run(self) -> None:
        # Ticks on a fixed grid (start + k * interval), so a slow sample does
        # not shift every later one; ticks missed on a starved machine are skipped.
        started, interval = self.state.started, self.interval
        k = 1
        next_progress = self.progress_seconds
        while not self._stop.wait(max(0.0, started + k * interval - time.monotonic())):
            with self.lock:
                if self._stop.is_set():  # the last sample was taken meanwhile
                    return
                sample = self.sample_now()
            if self.progress is not None and sample.t >= next_progress:
                self.progress(sample)
                while next_progress <= sample.t:
                    next_progress += self.progress_seconds
            k = max(k + 1, int((time.monotonic() - started) / interval) + 1)


def read_samples(csv_path: Path) -> list[Sample]:
    """The samples of a run, read back from its CSV."""
    samples = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            samples.append(
                Sample(
                    t=float(row["t"]),
                    phase=row["phase"],
                    fds=int(row["fds"]),
                    threads=int(row["threads"]),
                    rss_kib=int(row["rss_kib"]),
                    rss_anon_kib=int(row["rss_anon_kib"]),
                    py_objects=int(row["py_objects"]),
                    py_blocks=int(row["py_blocks"]),
                    malloc_kib=int(row["malloc_kib"]),
                    counts={name: int(row[name]) for name in COUNTERS},
                    errors=int(row["errors"]),
                )
            )
    return samples
