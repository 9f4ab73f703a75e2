"""What the churn threads share: the counters, the recorded errors and the stop signal.

Every churn operation that completes adds one to its counter; every one that
fails records an error and the run carries on (a soak test wants to see all
the failures of a long run, not only the first). Errors also come from places
nobody awaits: loop exception handlers, ``sys.unraisablehook``,
``threading.excepthook``, warnings (``ResourceWarning`` for an unclosed
socket, "coroutine was never awaited") and WARNING-or-worse log records.
Any error fails the run.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

#: The churn counters, in CSV column order.
COUNTERS: tuple[str, ...] = (
    # Connections (connect, exchange a little data, close), by transport and API;
    # each counts connections driven from both drivers.
    "conn_tcp_protocol",
    "conn_tcp_streams",
    "conn_unix_protocol",
    "conn_unix_streams",
    # How many of those connections were driven from sync-mode loops.
    "conn_from_sync",
    "subprocesses",
    # Loops opened and closed: open_loop() inside the long trio.run,
    # trio_asyncio.run() as a whole, and new_event_loop()/run_until_complete/close.
    "loops_open_loop",
    "loops_run",
    "loops_sync",
    # run_in_executor jobs: the default executor and TrioExecutor.
    "exec_default",
    "exec_trio",
    # Cross-calls in both directions.
    "cross_aio_as_trio",
    "cross_trio_as_aio",
    # Timers scheduled (call_later; about half are cancelled) and call_soon callbacks.
    "timers",
    "call_soon",
)

#: Totals shown in the summary and the plot: group name -> member counters.
GROUPS: dict[str, tuple[str, ...]] = {
    "connections": (
        "conn_tcp_protocol",
        "conn_tcp_streams",
        "conn_unix_protocol",
        "conn_unix_streams",
    ),
    "subprocesses": ("subprocesses",),
    "loops": ("loops_open_loop", "loops_run", "loops_sync"),
    "executor_jobs": ("exec_default", "exec_trio"),
    "cross_calls": ("cross_aio_as_trio", "cross_trio_as_aio"),
    "timers": ("timers", "call_soon"),
}

#: Full tracebacks kept (the rest are only counted, by kind and message).
MAX_KEPT_ERRORS = 20
#: Past this many errors the run stops early: it has failed anyway.
MAX_ERRORS = 1000


@dataclass
class ErrorRecord:
    """One recorded failure: where it happened, a one-line summary and the details."""

    where: str
    summary: str
    details: str
    at: float  # seconds since the run started


class SoakState:
    """Counters, errors and the stop signal of one soak run, shared by every thread.

    ``add`` takes a lock: the counters are written from the main thread (the
    Trio-hosted churn), the sync-loop thread and the executor threads, and
    ``d[k] += n`` is not atomic between threads.
    """

    def __init__(self, duration: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + duration
        self.stop = threading.Event()
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.errors: list[ErrorRecord] = []
        self.error_kinds: Counter[str] = Counter()
        self.error_count = 0
        self._lock = threading.Lock()

    # ---- churn side ----------------------------------------------------------

    def keep_going(self) -> bool:
        """True while the churn should go on (before the deadline, no stop requested)."""
        return time.monotonic() < self.deadline and not self.stop.is_set()

    def remaining(self) -> float:
        """Seconds left until the deadline (0 once it has passed)."""
        return max(0.0, self.deadline - time.monotonic())

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self.counts[counter] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def record_error(self, where: str, exc: BaseException | None = None, message: str = "") -> None:
        """Count a failure; keep its traceback if it is among the first ones."""
        if exc is not None:
            summary = f"{type(exc).__name__}: {exc}"
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        else:
            summary = message
            details = message
        if message and exc is not None:
            summary = f"{message}: {summary}"
        # Group by where and exception type (messages carry addresses, pids, ...).
        kind = f"{where}: {type(exc).__name__ if exc is not None else message[:60]}"
        with self._lock:
            self.error_count += 1
            self.error_kinds[kind] += 1
            if len(self.errors) < MAX_KEPT_ERRORS:
                self.errors.append(
                    ErrorRecord(where, summary, details, time.monotonic() - self.started)
                )
            too_many = self.error_count >= MAX_ERRORS
        if too_many and not self.stop.is_set():
            print(f"soak: {MAX_ERRORS} errors, stopping early", file=sys.stderr, flush=True)
            self.stop.set()

    def exception_handler(self, where: str) -> Callable[[Any, dict[str, Any]], None]:
        """An asyncio loop exception handler that records each report as an error.

        Set on every loop the churn creates, so that an error inside a
        callback, a server's connection handler or a transport is counted
        instead of ending the host loop (where it would be raised from
        ``open_loop``) or being only logged.
        """

        def handler(loop: Any, context: dict[str, Any]) -> None:
            self.record_error(
                f"{where} exception handler",
                context.get("exception"),
                str(context.get("message", "")),
            )

        return handler

    # ---- error sources nobody awaits ---------------------------------------

    @contextlib.contextmanager
    def catching_stray_errors(self) -> Iterator[None]:
        """Record unraisable exceptions, thread crashes, warnings and WARNING+ log records."""
        old_unraisable = sys.unraisablehook
        old_excepthook = threading.excepthook
        old_showwarning = warnings.showwarning

        def unraisable(info: Any) -> None:
            self.record_error(
                "unraisable",
                info.exc_value,
                f"{info.err_msg or 'Exception ignored'} {info.object!r}",
            )

        def excepthook(args: Any) -> None:
            name = args.thread.name if args.thread is not None else "?"
            self.record_error(f"thread {name}", args.exc_value)

        def showwarning(
            message: Any, category: Any, filename: str, lineno: int, *rest: Any
        ) -> None:
            self.record_error(
                "warning", message=f"{category.__name__}: {message} ({filename}:{lineno})"
            )

        handler = _RecordingLogHandler(self)
        root = logging.getLogger()
        sys.unraisablehook = unraisable
        threading.excepthook = excepthook
        warnings.showwarning = showwarning
        root.addHandler(handler)
        try:
            with warnings.catch_warnings():
                # Every warning, every time: ResourceWarning is ignored by default.
                warnings.simplefilter("always")
                warnings.showwarning = showwarning
                yield
        finally:
            root.removeHandler(handler)
            warnings.showwarning = old_showwarning
            threading.excepthook = old_excepthook
            sys.unraisablehook = old_unraisable


class _RecordingLogHandler(logging.Handler):
    """Records log records of level WARNING and above (asyncio logs lost errors there)."""

    def __init__(self, state: SoakState) -> None:
        super().__init__(logging.WARNING)
        self._state = state

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self._state.record_error(f"log {record.name}", exc, record.getMessage())
