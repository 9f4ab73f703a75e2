"""Leak guard: every test must leave the process as it found it.

An autouse fixture takes a snapshot before each test and checks after it
(in the test's teardown, so a leak fails the test that caused it):

``loops``
    Every event loop created during the test (ours and the stdlib's;
    recorded by wrapping ``__init__``) is closed, and a trio-asyncio loop
    has no Trio task left: no live guest run, no Trio task still waiting
    for one of its futures.
``tasks``
    No asyncio task of those loops is still pending, and nothing logged
    "Task was destroyed but it is pending!".
``threads``
    No new thread is alive, after a grace period for threads that are
    finishing. Idle threads of Trio's thread cache are allowed (they live
    for 10 s after their last job, by design); busy ones are not.
``fds``
    No new file descriptor is open (``/proc/self/fd``). What Trio opens
    per run (its epoll fd, its wake-up socketpair) is closed when the run
    ends, so nothing is exempt.
``state``
    Process-wide state is restored: no running asyncio loop, sniffio's
    flavour, the async-generator hooks, ``signal.set_wakeup_fd`` and the
    SIGINT / SIGCHLD handlers.

Then ``gc.collect()`` runs, so a ResourceWarning or an exception ignored in
``__del__`` surfaces in this test's teardown (pyproject turns both into
errors) rather than in some later test.

Checks are skipped, but cleanup still happens, when the test itself failed
or xfailed: its leaks are consequences, not news.

Opt out with a reason (the kinds default to all of them)::

    @pytest.mark.allow_leaks("threads", reason="the daemon thread ends with the process")

A leaked loop is closed after being reported, so one leak does not show up
again in later tests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sniffio

import trio_asyncio

KINDS = ("loops", "tasks", "threads", "fds", "state")
MARKER = "allow_leaks"
# How long threads (and the fds they close) may take to finish after a test.
THREAD_GRACE = 5.0
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
_report_key = pytest.StashKey[dict[str, pytest.TestReport]]()


# ---- marker validation ---------------------------------------------------------------


def allowed_kinds(item: pytest.Item) -> set[str]:
    allowed: set[str] = set()
    for mark in item.iter_markers(MARKER):
        reason = mark.kwargs.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER} needs reason='...'")
        unknown = set(mark.args) - set(KINDS)
        if unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.{MARKER}: unknown kinds {sorted(unknown)}; "
                f"known: {', '.join(KINDS)}"
            )
        allowed |= set(mark.args) if mark.args else set(KINDS)
    return allowed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        allowed_kinds(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(_report_key, {})[report.when] = report
    return report


def _test_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_report_key, {})
    return any(
        r.failed or (r.skipped and hasattr(r, "wasxfail"))
        for r in reports.values()
        if r.when in ("setup", "call")
    )


# ---- snapshots -----------------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """Open fds and what they point to (the fd listing the directory drops out)."""
    fds = {}
    for name in os.listdir(_FD_DIR):
        try:
            fds[int(name)] = os.readlink(f"{_FD_DIR}/{name}")
        except OSError:
            pass
    return fds


def idle_trio_threads() -> set[threading.Thread]:
    """Threads of Trio's thread cache that are waiting for a job."""
    try:
        from trio._core._thread_cache import THREAD_CACHE
    except ImportError:  # pragma: no cover - Trio moved it
        return set()
    return {worker._thread for worker in list(THREAD_CACHE._idle_workers)}


def process_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "running asyncio loop": asyncio._get_running_loop(),
        "sniffio flavour": sniffio.thread_local.name,
        "async generator hooks": tuple(sys.get_asyncgen_hooks()),
    }
    if threading.current_thread() is threading.main_thread():
        previous = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(previous)
        state["signal wake-up fd"] = previous
        state["SIGINT handler"] = signal.getsignal(signal.SIGINT)
        state["SIGCHLD handler"] = signal.getsignal(signal.SIGCHLD)
    return state


def restore_state(key: str, value: Any) -> None:
    if key == "running asyncio loop":
        asyncio._set_running_loop(value)
    elif key == "sniffio flavour":
        sniffio.thread_local.name = value
    elif key == "async generator hooks":
        sys.set_asyncgen_hooks(*value)
    elif key == "signal wake-up fd":
        signal.set_wakeup_fd(value)
    elif key == "SIGINT handler":
        signal.signal(signal.SIGINT, value)
    elif key == "SIGCHLD handler":
        signal.signal(signal.SIGCHLD, value)


class _PendingTaskLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Task was destroyed but it is pending"):
            self.messages.append(message.splitlines()[0] + " " + _one_line(message))


def _one_line(message: str) -> str:
    for line in message.splitlines():
        if line.startswith("task:"):
            return line
    return ""


@dataclass
class _Tracked:
    """A loop created during the test (weakly) and what to check once it is gone."""

    ref: weakref.ref[Any]
    description: str
    selector: Any = None  # ours only: tells whether a collected loop was closed


@dataclass
class LoopTracker:
    tracked: list[_Tracked] = field(default_factory=list)
    _patched: list[tuple[type, Any]] = field(default_factory=list)

    def install(self) -> None:
        self._wrap(trio_asyncio.BaseTrioEventLoop, ours=True)
        self._wrap(asyncio.BaseEventLoop, ours=False)

    def uninstall(self) -> None:
        for cls, original in reversed(self._patched):
            cls.__init__ = original  # type: ignore[misc]
        self._patched.clear()

    def _wrap(self, cls: type, *, ours: bool) -> None:
        original = cls.__init__
        tracked = self.tracked

        def __init__(loop: Any, *args: Any, **kwargs: Any) -> None:
            original(loop, *args, **kwargs)
            tracked.append(
                _Tracked(
                    weakref.ref(loop),
                    f"{type(loop).__name__} created in thread {threading.current_thread().name!r}",
                    getattr(loop, "_selector", None) if ours else None,
                )
            )

        cls.__init__ = __init__  # type: ignore[misc]
        self._patched.append((cls, original))


# ---- checks ---------------------------------------------------------------------------


def _trio_leftovers(loop: Any) -> list[str]:
    problems = []
    if getattr(loop, "_trio_waits", None):
        problems.append(f"{len(loop._trio_waits)} Trio task(s) still wait for its futures")
    state = getattr(loop, "_trio_state", None)
    if state not in (None, "none", "done"):
        problems.append(f"its Trio guest run is still alive (state {state!r})")
    nursery = getattr(loop, "_trio_nursery", None)
    if nursery is not None and nursery.child_tasks:
        names = sorted(task.name for task in nursery.child_tasks)
        problems.append(f"Trio tasks it started are alive: {names}")
    return problems


def check_loops(tracker: LoopTracker) -> tuple[list[str], list[str]]:
    """Problems of kind "loops" and of kind "tasks"; leaked loops are closed afterwards."""
    loop_problems: list[str] = []
    task_problems: list[str] = []
    to_close = []
    for entry in tracker.tracked:
        loop = entry.ref()
        if loop is None:
            selector = entry.selector
            if selector is not None and selector.get_map() is not None:
                loop_problems.append(f"{entry.description}: garbage-collected without close()")
                selector.close()
            continue
        if not loop.is_closed():
            loop_problems.append(f"{entry.description} was not closed: {loop!r}")
            to_close.append(loop)
        for problem in _trio_leftovers(loop):
            loop_problems.append(f"{entry.description}: {problem}")
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        except RuntimeError:  # pragma: no cover - the set changed size in another thread
            pending = []
        for task in pending:
            task_problems.append(f"pending task on {entry.description}: {task!r}")
            task._log_destroy_pending = False  # reported here: don't log it again later
    for loop in to_close:
        try:
            if not loop.is_running():
                loop.close()
        except Exception as exc:  # pragma: no cover - best effort
            loop_problems.append(f"closing the leaked loop {loop!r} failed: {exc!r}")
    return loop_problems, task_problems


def wait_for_threads(
    before: set[threading.Thread], idle_before: set[threading.Thread]
) -> list[threading.Thread]:
    """Threads the test started (or a cached idle Trio thread it made busy) still alive.

    Waits up to THREAD_GRACE for them to end; idle Trio cache threads are fine.
    """
    deadline = time.monotonic() + THREAD_GRACE
    while True:
        idle = idle_trio_threads()
        left = [
            t
            for t in threading.enumerate()
            if (t not in before or t in idle_before) and t not in idle
        ]
        left = [t for t in left if t.is_alive()]
        if not left or time.monotonic() >= deadline:
            return left
        left[0].join(min(0.05, max(0.0, deadline - time.monotonic())))


def describe_fds(fds: dict[int, str]) -> str:
    return ", ".join(f"{fd} -> {target}" for fd, target in sorted(fds.items()))


# ---- the fixture ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    item = request.node
    allowed = allowed_kinds(item)
    fds_before = open_fds()
    threads_before = set(threading.enumerate())
    idle_threads_before = idle_trio_threads()
    state_before = process_state()
    tracker = LoopTracker()
    tracker.install()
    pending_log = _PendingTaskLog()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(pending_log)
    try:
        yield
    finally:
        tracker.uninstall()
    try:
        problems: dict[str, list[str]] = {kind: [] for kind in KINDS}
        problems["loops"], problems["tasks"] = check_loops(tracker)
        del tracker
        gc.collect()  # surfaces ResourceWarnings and unraisables in this test
        problems["tasks"] += pending_log.messages

        state_after = process_state()
        for key, value in state_before.items():
            if state_after.get(key) != value:
                problems["state"].append(f"{key}: {value!r} before, {state_after.get(key)!r} after")
                try:
                    restore_state(key, value)  # reported once, not by every later test
                except (TypeError, ValueError, OSError):  # pragma: no cover - best effort
                    pass

        threads = wait_for_threads(threads_before, idle_threads_before)
        for thread in threads:
            problems["threads"].append(f"{thread!r} (daemon={thread.daemon})")

        fds_after = open_fds()
        leaked_fds = {fd: t for fd, t in fds_after.items() if fds_before.get(fd) != t}
        if leaked_fds:
            gc.collect()
            fds_after = open_fds()
            leaked_fds = {fd: t for fd, t in fds_after.items() if fds_before.get(fd) != t}
        if leaked_fds:
            problems["fds"].append(describe_fds(leaked_fds))
    finally:
        asyncio_logger.removeHandler(pending_log)

    if _test_failed(item):
        return
    report = [
        f"{kind}: {problem}" for kind in KINDS if kind not in allowed for problem in problems[kind]
    ]
    if report:
        pytest.fail(
            "the test leaked (opt out with @pytest.mark.allow_leaks(kind, reason=...)):\n  "
            + "\n  ".join(report),
            pytrace=False,
        )
