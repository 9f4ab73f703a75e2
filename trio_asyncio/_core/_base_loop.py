"""The driver-independent heart of the loop: ready queue, timer heap, tasks.

``CoreEventLoop`` implements everything of ``asyncio.AbstractEventLoop`` that
is about *what* runs and *when*: ``call_soon``, timers, futures and tasks,
lifecycle and thread checks. How the loop sleeps and wakes up is left to a
driver subclass (``_async`` for Trio-hosted loops, ``_sync`` for loops driven
from synchronous code), which calls :meth:`_run_ready` once per iteration and
provides :meth:`_wake`.

Hot path: ``call_soon`` and :meth:`_run_ready` are written for speed; keep
attribute look-ups and calls out of them, and benchmark any change there.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import os
import sys
import threading
import time
from asyncio import Handle, TimerHandle
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any

from .. import _compat
from ._asyncgens import AsyncGenMixin
from ._exception_handling import ExceptionHandlingMixin
from ._executors import ExecutorMixin

logger = logging.getLogger("asyncio")

_get_ident = threading.get_ident
_heappush = heapq.heappush
_heappop = heapq.heappop

# Compact the timer heap when more than this many timers are in it and more
# than this fraction of them is cancelled (same thresholds as the stdlib).
_MIN_TIMERS_FOR_COMPACTION = 100
_CANCELLED_FRACTION_FOR_COMPACTION = 0.5
# Longest single wait; keeps a sleeping loop responsive to clock oddities.
MAXIMUM_WAIT = 24 * 3600


def _debug_from_environment() -> bool:
    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
    )


class CoreEventLoop(
    ExceptionHandlingMixin, ExecutorMixin, AsyncGenMixin, asyncio.AbstractEventLoop
):
    """Scheduling, timers, tasks and lifecycle shared by every trio-asyncio loop."""

    def __init__(self) -> None:
        self._ready: collections.deque[Handle] = collections.deque()
        self._timers: list[TimerHandle] = []
        self._timer_cancelled_count = 0
        self._closed = False
        self._stopping = False
        # Thread that owns the loop while it runs (None when not running);
        # every non-threadsafe entry point checks it.
        self._thread_id: int | None = None
        # True while the driver may be (about to be) blocked: then a new
        # callback must wake it through self._wake().
        self._may_park = False
        self._debug = _debug_from_environment()
        self.slow_callback_duration = 0.1
        self._current_handle: Handle | None = None
        self._task_factory: Callable[..., asyncio.Future[Any]] | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        ExceptionHandlingMixin.__init__(self)
        ExecutorMixin.__init__(self)
        AsyncGenMixin.__init__(self)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self._closed} debug={self._debug}>"
        )

    # ---- the driver's side -------------------------------------------------

    def _wake(self) -> None:
        """Wake a parked driver. Called in the loop's thread; drivers override."""

    def _wake_threadsafe(self) -> None:
        """Wake a parked driver from any thread; drivers override."""

    def _next_wait(self) -> float | None:
        """How long the driver may sleep: 0 when there is work, None for ever.

        Also drops cancelled timers from the heap (all of them when they
        are many, else those at its top), so a cancelled timer never wakes us.
        """
        timers = self._timers
        if len(timers) > _MIN_TIMERS_FOR_COMPACTION and (
            self._timer_cancelled_count / len(timers) > _CANCELLED_FRACTION_FOR_COMPACTION
        ):
            self._compact_timers()
        else:
            while timers and timers[0]._cancelled:
                self._timer_cancelled_count -= 1
                _heappop(timers)._scheduled = False
        if self._ready or self._stopping:
            return 0
        if not timers:
            return None
        wait = timers[0]._when - self.time()
        if wait <= 0:
            return 0
        return wait if wait < MAXIMUM_WAIT else MAXIMUM_WAIT

    def _compact_timers(self) -> None:
        live = []
        for timer in self._timers:
            if timer._cancelled:
                timer._scheduled = False
            else:
                live.append(timer)
        heapq.heapify(live)
        self._timers = live
        self._timer_cancelled_count = 0

    def _collect_due_timers(self) -> None:
        """Move every timer that is due now to the end of the ready queue."""
        timers = self._timers
        ready = self._ready
        end = self.time() + self._clock_resolution
        while timers and timers[0]._when < end:
            timer = _heappop(timers)
            timer._scheduled = False
            ready.append(timer)

    def _run_ready(self) -> None:
        """Run every callback that is ready now; newer ones wait for the next batch."""
        ready = self._ready
        if self._debug:
            self._run_ready_debug(len(ready))
            return
        popleft = ready.popleft
        for _ in range(len(ready)):
            handle = popleft()
            if not handle._cancelled:
                handle._run()
        # This frame outlives the batch when a traceback holds a frame it
        # called; it must not keep the last callback (and its task) alive.
        handle = None

    def _run_ready_debug(self, count: int) -> None:
        ready = self._ready
        clock = time.perf_counter
        for _ in range(count):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            self._current_handle = handle
            try:
                started = clock()
                handle._run()
                took = clock() - started
                if took >= self.slow_callback_duration:
                    logger.warning("Executing %s took %.3f seconds", _describe(handle), took)
            finally:
                self._current_handle = None
        handle = None  # as in _run_ready()

    # ---- scheduling --------------------------------------------------------

    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Handle:
        """Arrange for ``callback(*args)`` to run in the next batch (FIFO)."""
        if self._closed:
            self._raise_closed()
        tid = self._thread_id
        if tid is not None and tid != _get_ident():
            self._raise_wrong_thread("call_soon")
        if self._debug or not callable(callback):
            self._check_callback(callback, "call_soon")
        handle = Handle(callback, args, self, context)
        if self._debug:
            _compat.trim_source_traceback(handle)
        self._ready.append(handle)
        if self._may_park:
            self._wake()
        return handle

    def call_soon_threadsafe(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Handle:
        """Like :meth:`call_soon`, but callable from any thread."""
        if self._closed:
            self._raise_closed()
        if self._debug or not callable(callback):
            self._check_callback(callback, "call_soon_threadsafe")
        handle = Handle(callback, args, self, context)
        if self._debug:
            _compat.trim_source_traceback(handle)
        self._ready.append(handle)
        # Read after the append: either the driver sees the handle before it
        # parks, or we see that it may be parking and wake it.
        if self._may_park:
            self._wake_threadsafe()
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> TimerHandle:
        """Arrange for ``callback(*args)`` to run after *delay* seconds."""
        if delay is None:
            raise TypeError("delay must not be None")
        timer = self.call_at(self.time() + delay, callback, *args, context=context)
        if self._debug:
            _compat.trim_source_traceback(timer)
        return timer

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> TimerHandle:
        """Arrange for ``callback(*args)`` to run at loop time *when*."""
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            self._raise_closed()
        tid = self._thread_id
        if tid is not None and tid != _get_ident():
            self._raise_wrong_thread("call_at")
        if self._debug or not callable(callback):
            self._check_callback(callback, "call_at")
        timer = TimerHandle(when, callback, args, self, context)
        if self._debug:
            _compat.trim_source_traceback(timer)
        timers = self._timers
        _heappush(timers, timer)
        timer._scheduled = True
        if self._may_park and timers[0] is timer:
            self._timer_moved_earlier()
        return timer

    def _timer_moved_earlier(self) -> None:
        """The earliest timer changed while the driver may be parked."""
        self._wake()

    def _timer_handle_cancelled(self, handle: TimerHandle) -> None:
        # Called by TimerHandle.cancel(); see _compat.
        if handle._scheduled:
            self._timer_cancelled_count += 1

    def time(self) -> float:
        """The loop's clock: ``time.monotonic()``, or Trio's clock when a test replaced it."""
        return self._clock()

    # ---- lifecycle ---------------------------------------------------------

    def is_closed(self) -> bool:
        return self._closed

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = bool(enabled)

    def _raise_closed(self) -> None:
        raise RuntimeError("Event loop is closed")

    def _check_closed(self) -> None:
        if self._closed:
            self._raise_closed()

    def _raise_wrong_thread(self, what: str) -> None:
        raise RuntimeError(
            f"Non-thread-safe operation {what}() invoked on an event loop other than the "
            "current one: this loop runs in another thread. Use "
            "loop.call_soon_threadsafe() or asyncio.run_coroutine_threadsafe() "
            "to reach it from this thread."
        )

    def _check_thread(self, what: str = "a loop method") -> None:
        """RuntimeError if the loop runs in another thread; *what* names the refused call."""
        tid = self._thread_id
        if tid is not None and tid != _get_ident():
            self._raise_wrong_thread(what)

    def _check_callback(self, callback: object, method: str) -> None:
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    # ---- futures and tasks -------------------------------------------------

    def create_future(self) -> asyncio.Future[Any]:
        """A new :class:`asyncio.Future` attached to this loop."""
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[Any]:
        """Wrap *coro* in a task (through the task factory, if one is set)."""
        self._check_closed()
        tid = self._thread_id
        if tid is not None and tid != _get_ident():
            # Before the task exists: one half-made by a refused call_soon()
            # would be reported as "destroyed but pending" later.
            self._raise_wrong_thread("create_task")
        factory = self._task_factory
        if factory is None:
            if context is None:
                task = asyncio.Task(coro, loop=self, name=name)
            else:
                task = _new_task_in_context(coro, self, name, context)
            if self._debug:
                _compat.trim_source_traceback(task)
            return task
        task = factory(self, coro) if context is None else factory(self, coro, context=context)
        if name is not None:
            task.set_name(name)
        return task

    def set_task_factory(self, factory: Callable[..., asyncio.Future[Any]] | None) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Callable[..., asyncio.Future[Any]] | None:
        return self._task_factory

    # ---- running (drivers implement) ---------------------------------------

    def stop(self) -> None:
        """Stop the loop once the current batch of callbacks has run."""
        self._stopping = True
        if self._may_park:
            self._wake()


if sys.version_info >= (3, 11):

    def _new_task_in_context(coro, loop, name, context):
        return asyncio.Task(coro, loop=loop, name=name, context=context)

else:

    def _new_task_in_context(coro, loop, name, context):
        # 3.10's Task has no context argument: it copies the current one.
        return context.run(asyncio.Task, coro, loop=loop, name=name)


def _describe(handle: Handle) -> str:
    return repr(handle)
