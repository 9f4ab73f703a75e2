"""The Trio-hosted driver: ``TrioEventLoop``, ``open_loop()`` and ``run()``.

The scheduler is one Trio task. Each iteration it polls the loop's selector
without blocking (when fds are registered), moves due timers to the ready
queue and runs one batch of callbacks, as the stdlib loop does. It yields to
Trio at most once per ``_BUDGET`` seconds of continuous work, not once per
callback or per batch, and when there is nothing to do it *parks*:

* with no fds registered: ``wait_task_rescheduled``, woken by a direct
  ``reschedule`` from ``call_soon`` (the cheapest wake-up Trio has);
* with fds registered: ``wait_readable`` on the selector's own fd, woken by
  I/O or by a byte on the self-pipe.

Timers wake it through the deadline of one long-lived cancel scope whose
deadline is moved, never through a new scope per wait. See docs/design.rst.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Any

import outcome
import trio

from . import _compat
from ._core._current import current_loop
from ._loop_base import BaseTrioEventLoop
from ._sigint_deferral import hold_for_trio_hosted_loop, release_for_trio_hosted_loop
from ._trio_tasks import TrioJobRunner

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

# Longest stretch of callbacks run without letting other Trio tasks in.
_BUDGET = 0.0005

_reschedule = trio.lowlevel.reschedule
_Abort = trio.lowlevel.Abort
_get_running_loop = _compat.get_running_loop_or_none
_set_running_loop = _compat.set_running_loop
_sniffio = _compat.sniffio_state
_hide_trio_task = _compat.hide_trio_task
_restore_trio_task = _compat.restore_trio_task


class TrioEventLoop(BaseTrioEventLoop):
    """An asyncio event loop whose callbacks run as Trio work under ``open_loop()``.

    Don't create it directly: use :func:`open_loop` (or :func:`run`).
    """

    #: Ctrl-C landing in loop code during our batches waits for the next
    #: callback boundary (see _sigint_deferral).
    _defers_sigint_in_batches = True

    def __init__(self) -> None:
        super().__init__()
        self._scheduler_task: trio.lowlevel.Task | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._trio_nursery: trio.Nursery | None = None
        self._trio_jobs: TrioJobRunner | None = None
        self._park_scope: trio.CancelScope | None = None
        self._scheduler_scope: trio.CancelScope | None = None
        self._parked = False  # in wait_task_rescheduled: wake by reschedule
        self._io_parked = False  # in wait_readable(selector): wake by self-pipe
        self._running = False
        self._closing = False
        self._shutting_down = False
        self._stopped = trio.Event()
        self._resume: trio.Event | None = None
        self._trio_tasks_closing = trio.Event()
        self._trio_tasks_closed = trio.Event()
        self._body_scope: trio.CancelScope | None = None
        self._fatal_errors: list[BaseException] = []
        self._next_fair_yield = 0.0
        self._holds_sigint_deferral = False

    # ---- state ------------------------------------------------------------

    def is_running(self) -> bool:
        return self._running

    def run_forever(self) -> None:
        # The stdlib's order of checks: a closed loop is reported as closed.
        self._check_closed()
        raise RuntimeError(
            "This event loop is already running: it is driven by Trio inside "
            "'async with trio_asyncio.open_loop()'. Await asyncio code from Trio "
            "with trio_asyncio.aio_as_trio() instead of run_forever()."
        )

    def run_until_complete(self, future: Awaitable[Any]) -> Any:
        if asyncio.iscoroutine(future):
            future.close()  # it will never run: no "never awaited" warning
        self._check_closed()
        raise RuntimeError(
            "This event loop is already running: it is driven by Trio inside "
            "'async with trio_asyncio.open_loop()'. Use "
            "'await trio_asyncio.aio_as_trio(fn)(*args)' instead of run_until_complete()."
        )

    def close(self) -> None:
        if self._running or (self._scheduler_task is not None and not self._closed):
            raise RuntimeError(
                "Cannot close a running event loop: leave the 'async with open_loop()' block."
            )
        self._close_now()

    async def wait_stopped(self) -> None:
        """Wait until the loop has stopped (after ``stop()``). Trio-flavoured."""
        await self._stopped.wait()

    # ---- waking the scheduler ---------------------------------------------

    def _wake(self) -> None:
        if self._parked:
            self._parked = False
            _reschedule(self._scheduler_task)  # type: ignore[arg-type]
        elif self._io_parked:
            self._io_parked = False
            self._write_to_self()

    def _wake_threadsafe(self) -> None:
        token = self._token
        if token is not None:
            try:
                token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _fd_registered(self) -> None:
        # A first fd while the scheduler is parked without watching the
        # selector (e.g. registered while a Trio task was helping): re-park
        # it on the selector.
        if self._parked:
            self._parked = False
            _reschedule(self._scheduler_task)  # type: ignore[arg-type]

    def _timer_moved_earlier(self) -> None:
        scope = self._park_scope
        if scope is None or not (self._parked or self._io_parked):
            return
        deadline = trio.current_time() + (self._timers[0]._when - self.time())
        if deadline < scope.deadline:
            scope.deadline = deadline

    # ---- helping: run callbacks in the calling Trio task ---------------------
    #
    # A Trio task that waits for asyncio work (or a Trio task that just
    # finished work asyncio waits for) would otherwise wake the parked
    # scheduler task and then park itself: two Trio task switches per
    # cross-call. Instead, while the scheduler is parked, the calling task
    # runs the ready callbacks itself, within the same time budget, with
    # wake-ups suppressed; the scheduler is woken afterwards only if work is
    # left. Callback order and batching are exactly as if the scheduler ran.

    def _can_help(self) -> bool:
        return self._may_park and (self._parked or self._io_parked)

    def _help(self, until: asyncio.Future[Any] | None = None) -> None:
        """Run loop iterations here until nothing is ready, *until* is done, or the budget ends.

        Call only when :meth:`_can_help` is true and with ``_may_park``
        cleared by the caller (see :meth:`_stop_helping`).
        """
        saved = (_get_running_loop(), _sniffio.name, _hide_trio_task())
        _set_running_loop(self)
        _sniffio.name = "asyncio"
        try:
            end = perf_counter() + _BUDGET
            iterate = self._iterate_without_blocking
            while not self._stopping and (until is None or not until.done()):
                if not iterate() or perf_counter() > end:
                    break
        except (KeyboardInterrupt, SystemExit) as exc:
            # As in the scheduler: it ends the open_loop() block. It must not
            # escape into whichever Trio task happened to help (a worker of
            # the loop's Trio tasks, say, whose nursery it would crash).
            self._report_fatal(exc)
        finally:
            _set_running_loop(saved[0])
            _sniffio.name = saved[1]
            _restore_trio_task(saved[2])

    def _stop_helping(self) -> None:
        # The scheduler is still parked: hand it whatever is left.
        self._may_park = True
        if self._ready or self._stopping:
            self._wake()
        elif self._timers:
            self._timer_moved_earlier()

    def _start_and_wait(self, coro: Any, cleanup: bool = False) -> Any:
        if not self._can_help():
            return self._wait_future(self._create_task_from_trio(coro), cleanup)
        self._may_park = False
        try:
            future = self._create_task_from_trio(coro)
            self._help(future)
        finally:
            self._stop_helping()
        if future.done():
            return self._finish_fast(future)
        return self._wait_future(future, cleanup)

    async def _finish_fast(self, future: asyncio.Future[Any]) -> Any:
        # The work completed without this task blocking. Stay a checkpoint
        # for cancellation, and let other Trio tasks run at least once per
        # budget, without paying a full scheduling pass every call.
        # (The caller checked for cancellation before starting the work, so
        # the finished result is never thrown away here.)
        if perf_counter() > self._next_fair_yield:
            await trio.lowlevel.cancel_shielded_checkpoint()
            self._next_fair_yield = perf_counter() + _BUDGET
        return future.result()

    def _complete_from_trio(self, finish: Callable[..., None], *args: Any) -> None:
        if not self._can_help():
            finish(*args)
            return
        self._may_park = False
        try:
            finish(*args)
            self._help()
        finally:
            self._stop_helping()

    def _abort_park(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._parked = False
        return _Abort.SUCCEEDED

    # ---- Trio side --------------------------------------------------------

    def _spawn_trio(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        nursery = self._trio_nursery
        if nursery is None or self._trio_tasks_closing.is_set():
            raise RuntimeError("This trio-asyncio loop is closing: it cannot start Trio tasks")
        if threading.get_ident() != self._thread_id:
            self._token.run_sync_soon(nursery.start_soon, async_fn, *args)  # type: ignore[union-attr]
        else:
            nursery.start_soon(async_fn, *args)

    def _submit_trio_job(
        self, future: Any, proc: Callable[..., Awaitable[Any]], args: tuple[Any, ...], context: Any
    ) -> None:
        jobs = self._trio_jobs
        if jobs is None or self._trio_tasks_closing.is_set():
            raise RuntimeError("This trio-asyncio loop is closing: it cannot start Trio tasks")
        if threading.get_ident() != self._thread_id:
            self._token.run_sync_soon(jobs.submit, future, proc, args, context)  # type: ignore[union-attr]
        else:
            jobs.submit(future, proc, args, context)

    def _reschedule_trio(
        self, task: trio.lowlevel.Task, value: outcome.Outcome[Any] | None = None
    ) -> None:
        if value is None:
            _reschedule(task)
        else:
            _reschedule(task, value)

    def _unhandled_error(self, context: dict[str, Any]) -> None:
        # Async-mode policy: an exception nobody handled surfaces in the
        # open_loop() block, as Trio users expect. Network failures that
        # transports and servers report (an OSError, which includes
        # ssl.SSLError, not attributed to a task or callback: a peer
        # resetting, a client with a bad certificate) are operational, not
        # bugs: they are logged as the stdlib logs them, like reports
        # without an exception.
        exc = context.get("exception")
        operational = isinstance(exc, OSError) and not (
            "task" in context or "future" in context or "handle" in context
        )
        if isinstance(exc, BaseException) and not operational and not self._closed:
            message = context.get("message")
            if message and sys.version_info >= (3, 11):
                exc.add_note(f"trio-asyncio: {message}")
            self._report_fatal(exc)
        else:
            self.default_exception_handler(context)

    def _report_fatal(self, exc: BaseException) -> None:
        if any(known is exc for known in self._fatal_errors):
            # The same error again, on its way up a chain of cross-calls
            # (an asyncio task raised it, then the Trio job awaiting that
            # task): it is raised from open_loop() once.
            return
        self._fatal_errors.append(exc)
        token = self._token
        if token is not None:
            try:
                token.run_sync_soon(self._cancel_body)
            except trio.RunFinishedError:
                pass

    def _cancel_body(self) -> None:
        if self._body_scope is not None:
            self._body_scope.cancel()

    # ---- the scheduler task ----------------------------------------------

    async def _run_scheduler(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._scheduler_task = trio.lowlevel.current_task()
        self._token = trio.lowlevel.current_trio_token()
        if not _compat.clock_is_default(trio.lowlevel.current_clock()):
            self._clock = trio.current_time
        self._thread_id = threading.get_ident()
        self._install_asyncgen_hooks()
        if threading.current_thread() is threading.main_thread():
            self._holds_sigint_deferral = hold_for_trio_hosted_loop()
        task_status.started()
        # Shielded: an outer cancellation must not stop the scheduler, since
        # the shutdown sequence needs it; only _shutdown() ends it.
        with trio.CancelScope(shield=True) as self._scheduler_scope:
            while True:
                self._running = True
                try:
                    await self._schedule_until_stopped()
                finally:
                    self._running = False
                    self._stopping = False
                self._stopped.set()
                if self._closing:
                    return
                if not self._shutting_down:
                    self._resume = trio.Event()
                    await self._resume.wait()
                self._stopped = trio.Event()

    async def _schedule_until_stopped(self) -> None:
        while True:
            try:
                with trio.CancelScope() as scope:
                    self._park_scope = scope
                    await self._schedule(scope)
            except (KeyboardInterrupt, SystemExit) as exc:
                self._report_fatal(exc)
                continue
            finally:
                self._park_scope = None
            if not scope.cancelled_caught:
                return  # _schedule() returns only once stopped
            # Woken by the timer deadline: carry on in a fresh scope.

    def _iterate_without_blocking(self) -> bool:
        """One loop iteration that never blocks; False when nothing at all was ready.

        Ready fds are polled *before* deciding to park: on a busy loop the
        data is usually there already, and parking through Trio costs far
        more than a non-blocking ``select``.
        """
        wait = self._next_wait()
        if self._fd_count:
            events = self._selector.select(0)
            if events:
                self._process_fd_events(events)
            elif wait != 0:
                return False
        elif wait != 0:
            return False
        if self._timers:
            self._collect_due_timers()
        if self._ready:
            self._run_ready()
        return True

    async def _schedule(self, scope: trio.CancelScope) -> None:
        # Between awaits this task is "in asyncio": running loop, sniffio and
        # Trio's current task are switched once here, not per callback.
        iterate = self._iterate_without_blocking
        saved = (_get_running_loop(), _sniffio.name, _hide_trio_task())
        _set_running_loop(self)
        _sniffio.name = "asyncio"
        try:
            budget_end = perf_counter() + _BUDGET
            while True:
                # As the stdlib's run_forever: stop() ends the loop after the
                # iteration in which it is seen, so what was queued runs.
                ran = iterate()
                if self._stopping:
                    break
                if ran:
                    if perf_counter() <= budget_end:
                        continue
                    wait: float | None = 0
                else:
                    wait = self._next_wait()
                # Leave asyncio context for the await (a fair-share yield, or parking).
                _set_running_loop(saved[0])
                _sniffio.name = saved[1]
                _restore_trio_task(saved[2])
                try:
                    if wait == 0:
                        await trio.lowlevel.checkpoint()
                    else:
                        await self._park(scope, wait)
                finally:
                    saved = (_get_running_loop(), _sniffio.name, _hide_trio_task())
                    _set_running_loop(self)
                    _sniffio.name = "asyncio"
                budget_end = perf_counter() + _BUDGET
        finally:
            _set_running_loop(saved[0])
            _sniffio.name = saved[1]
            _restore_trio_task(saved[2])

    async def _park(self, scope: trio.CancelScope, wait: float | None) -> None:
        if wait is not None:
            scope.deadline = trio.current_time() + wait
        self._may_park = True
        try:
            if self._ready or self._stopping:
                return  # a threadsafe call_soon raced us
            if self._fd_count:
                self._io_parked = True
                await trio.lowlevel.wait_readable(self._selector.fileno())
            else:
                self._parked = True
                await trio.lowlevel.wait_task_rescheduled(self._abort_park)
        finally:
            self._may_park = self._parked = self._io_parked = False
            if wait is not None:
                scope.deadline = math.inf

    async def _host_trio_tasks(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery of Trio tasks started from asyncio, until shutdown."""
        try:
            # Shielded like the scheduler: these tasks are cancelled in order
            # during shutdown, after the asyncio tasks that may wait for them.
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    self._trio_nursery = nursery
                    self._trio_jobs = TrioJobRunner(nursery)
                    task_status.started()
                    await self._trio_tasks_closing.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self._trio_tasks_closed.set()

    # ---- shutdown ---------------------------------------------------------

    async def _shutdown(self) -> None:
        """Like the end of ``asyncio.run()``; runs shielded when open_loop exits."""
        self._shutting_down = True
        if self._resume is not None:
            self._resume.set()
        await self._cancel_all_tasks()
        self._trio_tasks_closing.set()
        await self._trio_tasks_closed.wait()
        await self._cancel_all_tasks()
        try:
            await self.run_aio_coroutine(self.shutdown_asyncgens())
            await self.run_aio_coroutine(self.shutdown_default_executor())
        finally:
            self._closing = True
            self.stop()
            await self._stopped.wait()
            self._close_now()

    def _abandon_scheduler(self) -> None:
        """The shutdown sequence failed: end the scheduler and the host of the
        Trio tasks anyway, so that the ``open_loop()`` block exits with the
        error instead of waiting for them forever."""
        self._closing = True
        self._trio_tasks_closing.set()
        scope = self._scheduler_scope
        if scope is not None:
            scope.shield = False
            scope.cancel()

    async def _cancel_all_tasks(self) -> None:
        for _ in range(10):
            pending = [task for task in asyncio.all_tasks(self) if not task.done()]
            if not pending:
                return
            saved = self._enter_asyncio()
            try:
                for task in pending:
                    task.cancel()
                gathered = asyncio.gather(*pending, return_exceptions=True)
            finally:
                self._leave_asyncio(saved)
            await self.run_aio_future(gathered)
            for task in pending:
                if task.cancelled():
                    continue
                exc = task.exception()
                if exc is not None:
                    self.call_exception_handler(
                        {
                            "message": "unhandled exception during loop shutdown",
                            "exception": exc,
                            "task": task,
                        }
                    )

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        self._abandon_trio_waits()
        self._close_autoclose_fds()
        if self._token is not None:
            try:
                trio.lowlevel.notify_closing(self._selector.fileno())
            except (RuntimeError, ValueError, OSError):
                pass
        self._close_selector()
        self._shutdown_default_executor_now()
        self._uninstall_asyncgen_hooks()
        self._thread_id = None
        if self._holds_sigint_deferral:
            self._holds_sigint_deferral = False
            release_for_trio_hosted_loop()

    def _take_fatal_errors(self) -> BaseException | None:
        errors, self._fatal_errors = self._fatal_errors, []
        if not errors:
            return None
        if len(errors) == 1:
            return errors[0]
        return BaseExceptionGroup("errors in trio-asyncio loop", errors)


OPEN_LOOP_OUTSIDE_TRIO = (
    "open_loop() must be used in Trio code, inside trio.run() (or use trio_asyncio.run()). "
    "asyncio code that needs Trio should run on a loop from trio_asyncio.new_event_loop() "
    "and call Trio code through trio_asyncio.trio_as_aio()."
)


def _check_in_trio() -> None:
    """RuntimeError saying what to do when there is no Trio run here (plain asyncio code).

    Without it, Trio fails deep inside ``open_nursery()`` with an
    AttributeError. In asyncio code on a Trio-hosted loop Trio's current task
    is our sentinel, whose own error (Trio called from asyncio) follows.
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(OPEN_LOOP_OUTSIDE_TRIO) from None


@asynccontextmanager
async def open_loop(queue_len: int | None = None) -> AsyncIterator[TrioEventLoop]:
    """Run an asyncio event loop for the duration of the block. Trio-flavoured.

    Inside, asyncio code runs on the returned loop; call it from Trio with
    :func:`aio_as_trio`. Leaving the block (normally, by an error or by
    cancellation) cancels and awaits the loop's remaining asyncio tasks and
    the Trio tasks they started, finalizes async generators, shuts down the
    default executor and closes the loop. An exception that escaped an
    asyncio callback or task and that no exception handler took is raised
    here. *queue_len* is accepted for compatibility and ignored.
    """
    _check_in_trio()
    loop = TrioEventLoop()
    token = current_loop.set(loop)
    unwrapped: BaseException | None = None
    try:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(loop._run_scheduler)
                await nursery.start(loop._host_trio_tasks)
                try:
                    with trio.CancelScope() as body_scope:
                        loop._body_scope = body_scope
                        yield loop
                finally:
                    loop._body_scope = None
                    with trio.CancelScope(shield=True):
                        try:
                            await loop._shutdown()
                        except BaseException:
                            loop._abandon_scheduler()
                            raise
                    fatal = loop._take_fatal_errors()
                    if fatal is not None:
                        raise fatal
        except BaseExceptionGroup as group:
            # Our own tasks never fail, so a group holds the one error of the
            # block: give it back unwrapped, as a context manager should.
            if len(group.exceptions) != 1:
                raise
            unwrapped = group.exceptions[0]
        if unwrapped is not None:
            try:
                raise unwrapped
            finally:
                unwrapped = None
    finally:
        current_loop.reset(token)
        loop._close_now()


def run(proc: Callable[..., Awaitable[Any]], *args: Any, queue_len: int | None = None) -> Any:
    """Like :func:`trio.run`, with an asyncio loop open around ``proc(*args)``."""

    async def main() -> Any:
        async with open_loop(queue_len=queue_len):
            return await proc(*args)

    return trio.run(main)
