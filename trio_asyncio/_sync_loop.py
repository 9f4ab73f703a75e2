"""The synchronous driver: ``SyncTrioEventLoop`` for asyncio-first programs.

``run_forever`` / ``run_until_complete`` drive the loop core natively in the
calling thread, blocking in the selector exactly like the stdlib loop, so
pure asyncio work costs what it costs there. Trio is started only when
asyncio code first needs it (``run_trio``, ``trio_as_aio``, a
``TrioExecutor``): as a *guest run* (:func:`trio.lowlevel.start_guest_run`,
Trio's public way to live inside another loop) hosted by this loop. Trio's
scheduling ticks arrive as ordinary callbacks; Trio blocks for I/O in its own
worker thread and wakes us with ``call_soon_threadsafe``. The guest run lives
as long as the loop: Trio tasks persist across ``run_forever`` calls, and
``close()`` ends the guest run and waits for it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from . import _compat
from ._core._current import current_loop
from ._loop_base import BaseTrioEventLoop
from ._trio_tasks import TrioJobRunner

_get_ident = threading.get_ident
_get_running_loop = _compat.get_running_loop_or_none
_set_running_loop = _compat.set_running_loop
_sniffio = _compat.sniffio_state


class SyncTrioEventLoop(BaseTrioEventLoop):
    """An asyncio event loop for synchronous callers, with Trio available inside.

    Get one from :func:`trio_asyncio.new_event_loop` (or, after
    ``import trio_asyncio``, from ``asyncio.new_event_loop()``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._make_self_pipe()
        self._running = False
        # The Trio guest run (started on first use).
        self._token: trio.lowlevel.TrioToken | None = None
        self._trio_jobs: TrioJobRunner | None = None
        self._trio_state = "none"  # none -> starting -> running -> stopping -> done
        self._trio_waiting: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._trio_outcome: outcome.Outcome[Any] | None = None
        self._guest_stop: trio.Event | None = None
        self._trio_stash: dict[str, object] | None = None
        self._sigint_wrapper: Any = None

    # ---- running ---------------------------------------------------------------

    def is_running(self) -> bool:
        return self._running

    def _check_not_running(self) -> None:
        if self._running:
            raise RuntimeError("This event loop is already running")
        if _get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    @trio.lowlevel.disable_ki_protection
    def run_forever(self) -> None:
        """Run callbacks until ``stop()`` is called (at least one iteration, as documented)."""
        self._check_closed()
        self._check_not_running()
        saved = self._enter_run()
        try:
            run_once = self._run_once
            while True:
                run_once()
                if self._stopping:
                    break
        finally:
            self._exit_run(saved)

    def _enter_run(self) -> Any:
        if self._trio_stash is not None:
            if _compat.trio_run_active():
                raise RuntimeError(
                    "Cannot run a sync trio-asyncio loop whose Trio part is alive inside "
                    "another Trio run in this thread"
                )
            _compat.restore_trio_run_state(self._trio_stash)
            self._trio_stash = None
        self._thread_id = _get_ident()
        self._running = True
        saved = (_get_running_loop(), _sniffio.name)
        self._install_asyncgen_hooks()
        self._install_signal_wakeup()
        _set_running_loop(self)
        _sniffio.name = "asyncio"
        return saved

    def _exit_run(self, saved: Any) -> None:
        self._leave_trio_state()
        self._stopping = False
        self._running = False
        self._thread_id = None
        _set_running_loop(saved[0])
        _sniffio.name = saved[1]
        self._uninstall_signal_wakeup()
        self._uninstall_asyncgen_hooks()

    def _run_once(self) -> None:
        wait = self._next_wait()
        if wait == 0:
            if self._fd_count:
                self._process_fd_events(self._selector.select(0))
        else:
            self._may_park = True
            try:
                # Re-check after announcing: a thread may have added work.
                events = self._selector.select(0 if self._ready else wait)
            finally:
                self._may_park = False
            self._process_fd_events(events)
        if self._timers:
            self._collect_due_timers()
        if self._ready:
            self._run_ready()

    def run_until_complete(self, future: Awaitable[Any]) -> Any:
        """Run until *future* (a future, task or coroutine) is done; return its result."""
        self._check_closed()
        self._check_not_running()
        new_task = not asyncio.isfuture(future)
        task = asyncio.ensure_future(future, loop=self)
        if new_task:
            # An interrupted run must not also complain that the task was
            # destroyed while pending.
            _compat.quiet_pending_task(task)
        task.add_done_callback(_stop_loop)
        try:
            self.run_forever()
        except BaseException:
            if new_task and task.done() and not task.cancelled():
                task.exception()  # retrieved: don't log it as never retrieved
            raise
        finally:
            task.remove_done_callback(_stop_loop)
        if not task.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return task.result()

    def _wake(self) -> None:
        # Only a signal handler can call_soon while we block in select().
        self._write_to_self()

    def _wake_threadsafe(self) -> None:
        self._write_to_self()

    # ---- the guest run's thread state, confined to our runs ------------------------

    def _leave_trio_state(self) -> None:
        """Between runs, the thread must not look like it is inside Trio."""
        if self._trio_state in ("starting", "running", "stopping") and self._trio_stash is None:
            self._trio_stash = _compat.stash_trio_run_state()

    def _wrap_trio_sigint_handler(self) -> None:
        """Make Trio's SIGINT handler act only while this loop runs.

        Trio's handler hands Ctrl-C to its main task unless the interrupted
        frame is marked unprotected; between our runs (plain synchronous
        code) that would swallow it. The wrapper behaves like Python's
        default handler there, and like Trio's during our runs.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        trio_handler = signal.getsignal(signal.SIGINT)
        if not _compat.is_trio_signal_handler(trio_handler):
            return

        def handler(signum: int, frame: Any) -> None:
            if self._running:
                trio_handler(signum, frame)  # type: ignore[operator]
            else:
                raise KeyboardInterrupt

        self._sigint_wrapper = handler
        signal.signal(signal.SIGINT, handler)

    def _unwrap_trio_sigint_handler(self) -> None:
        wrapper, self._sigint_wrapper = self._sigint_wrapper, None
        if wrapper is None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is wrapper:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    # ---- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Close the loop: end the Trio guest run, drop pending callbacks, release fds."""
        if self._running:
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        self._stop_trio()
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        self._abandon_trio_waits()
        self._remove_all_signal_handlers()
        self._close_autoclose_fds()
        self._close_selector()
        self._shutdown_default_executor_now()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not self._closed:
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self._running:
                self._closed = True
                self._close_selector()

    # ---- Trio, as a guest ------------------------------------------------------------

    def _start_trio(self) -> None:
        self._trio_state = "starting"
        try:
            trio.lowlevel.start_guest_run(
                self._trio_main,
                run_sync_soon_threadsafe=self.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=self._run_trio_tick_soon,
                done_callback=self._trio_done,
                host_uses_signal_set_wakeup_fd=True,
            )
        except BaseException:
            self._trio_state = "none"
            self._trio_waiting.clear()
            raise
        self._wrap_trio_sigint_handler()
        if not self._running:
            self._leave_trio_state()

    def _run_trio_tick_soon(self, tick: Callable[[], object]) -> None:
        self.call_soon(self._run_trio_tick, tick)

    @trio.lowlevel.enable_ki_protection
    def _run_trio_tick(self, tick: Callable[[], object]) -> None:
        # Trio code is not asyncio code: no running asyncio loop inside.
        saved = _get_running_loop()
        _set_running_loop(None)
        try:
            tick()
        finally:
            _set_running_loop(saved)

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._guest_stop = trio.Event()
        current_loop.set(self)
        async with trio.open_nursery() as nursery:
            self._trio_jobs = TrioJobRunner(self, nursery)
            self._trio_state = "running"
            waiting, self._trio_waiting = self._trio_waiting, []
            for fn, args in waiting:
                fn(*args)
            while True:
                try:
                    await self._guest_stop.wait()
                    break
                except KeyboardInterrupt as exc:
                    # Ctrl-C during a Trio tick: it belongs to whoever called
                    # run_forever / run_until_complete.
                    self._raise_in_host(exc)
            nursery.cancel_scope.cancel()

    def _trio_done(self, result: outcome.Outcome[Any]) -> None:
        self._unwrap_trio_sigint_handler()
        self._trio_state = "done"
        self._trio_outcome = result
        self._token = None
        self._trio_jobs = None

    def _in_trio(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` inside the guest Trio run, starting it if needed."""
        state = self._trio_state
        if state == "running":
            self._token.run_sync_soon(fn, *args)  # type: ignore[union-attr]
        elif state == "none" or state == "starting":
            self._trio_waiting.append((fn, args))
            if state == "none":
                self._start_trio()
        else:
            raise RuntimeError("This trio-asyncio loop is closing: it cannot start Trio tasks")

    def _submit_trio_job(
        self, future: Any, proc: Callable[..., Awaitable[Any]], args: tuple[Any, ...], context: Any
    ) -> None:
        self._check_closed()
        self._in_trio(self._submit_in_trio, future, proc, args, context)

    def _submit_in_trio(self, *job: Any) -> None:
        if self._trio_jobs is None:  # pragma: no cover - closing
            job[0]._finish_cancelled()
            return
        self._trio_jobs.submit(*job)

    def _spawn_trio(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._check_closed()
        self._in_trio(self._spawn_in_trio, async_fn, args)

    def _spawn_in_trio(
        self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        if self._trio_jobs is not None:
            self._trio_jobs._nursery.start_soon(async_fn, *args)

    def _call_in_trio(self, fn: Callable[..., object], *args: Any) -> None:
        # Asyncio code is not inside the guest run (and between runs its
        # state is stashed away): go through the token, which also wakes Trio.
        token = self._token
        if token is not None:
            token.run_sync_soon(fn, *args)

    def _reschedule_trio(
        self, task: trio.lowlevel.Task, value: outcome.Outcome[Any] | None = None
    ) -> None:
        token = self._token
        if token is None:
            return
        if value is None:
            token.run_sync_soon(trio.lowlevel.reschedule, task)
        else:
            token.run_sync_soon(trio.lowlevel.reschedule, task, value)

    def _raise_in_host(self, exc: BaseException) -> None:
        """Make *exc* propagate out of the current (or next) run of the loop."""
        if not self._closed:
            self.call_soon_threadsafe(_raise, exc)

    def _report_fatal(self, exc: BaseException) -> None:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            self._raise_in_host(exc)
            return
        # No Trio block to raise into: report like any unhandled error.
        self.default_exception_handler(
            {"message": "Unhandled error in a Trio task started from asyncio", "exception": exc}
        )

    def _stop_trio(self) -> None:
        """End the guest run (cancelling its tasks) and drive it until it is done."""
        if self._trio_state == "none":
            return
        if self._trio_state == "starting":
            # Let it start first, so it can be stopped cleanly.
            self._run_until(lambda: self._trio_state != "starting")
        if self._trio_state == "running":
            self._trio_state = "stopping"
            self._token.run_sync_soon(self._guest_stop.set)  # type: ignore[union-attr]
        self._run_until(lambda: self._trio_state == "done")
        result = self._trio_outcome
        self._trio_outcome = None
        if isinstance(result, outcome.Error):
            self.default_exception_handler(
                {"message": "The Trio guest run of the loop failed", "exception": result.error}
            )

    @trio.lowlevel.disable_ki_protection
    def _run_until(self, done: Callable[[], bool]) -> None:
        saved = self._enter_run()
        try:
            while not done():
                self._run_once()
        finally:
            self._exit_run(saved)


def _stop_loop(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and isinstance(future.exception(), (KeyboardInterrupt, SystemExit)):
        # It is propagating out of run_forever already; a stop() now would
        # wrongly end the next run.
        return
    future.get_loop().stop()


def _raise(exc: BaseException) -> None:
    raise exc


def new_event_loop() -> SyncTrioEventLoop:
    """A new sync-mode loop: ``asyncio.run(main(), loop_factory=trio_asyncio.new_event_loop)``."""
    return SyncTrioEventLoop()
