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
import atexit
import contextvars
import signal
import sys
import threading
import time
import types
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from . import _compat
from ._loop_base import BaseTrioEventLoop
from ._sigint_deferral import SigintDeferral
from ._trio_tasks import TrioJobRunner, Warmth

_get_ident = threading.get_ident
_perf_counter = time.perf_counter
_monotonic = time.monotonic
_get_running_loop = _compat.get_running_loop_or_none
_hide_trio_task = _compat.hide_trio_task
_restore_trio_task = _compat.restore_trio_task
_CoroutineType = types.CoroutineType
#: Longest a Trio task runs asyncio steps in a row before yielding to Trio
#: (see SyncTrioEventLoop._start_and_wait).
_BUDGET = 0.0005
_set_running_loop = _compat.set_running_loop
_sniffio = _compat.sniffio_state
_MAIN_THREAD_IDENT = threading.main_thread().ident


class SyncTrioEventLoop(BaseTrioEventLoop):
    """An asyncio event loop for synchronous callers, with Trio available inside.

    Get one from :func:`trio_asyncio.new_event_loop` (or, after
    ``import trio_asyncio``, from ``asyncio.new_event_loop()``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._make_self_pipe()
        self._running = False
        # The future run_until_complete() is waiting for (see _stop_loop).
        self._awaited: asyncio.Future[Any] | None = None
        # The Trio guest run (started on first use).
        self._token: trio.lowlevel.TrioToken | None = None
        self._trio_jobs: TrioJobRunner | None = None
        self._trio_state = "none"  # none -> starting -> running -> stopping -> done
        self._trio_waiting: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._trio_outcome: outcome.Outcome[Any] | None = None
        self._guest_stop: trio.Event | None = None
        self._trio_stash: dict[str, object] | None = None
        self._sigint_wrapper: Any = None
        # Ctrl-C during our runs (see _sigint_deferral); installed: in front
        # of the SIGINT handler for the current run.
        self._sigint_deferral = SigintDeferral(self)
        self._sigint_deferral_installed = False
        # The last errors _raise_in_host queued (see there).
        self._raised_in_host: deque[BaseException] = deque(maxlen=4)
        self._guest_host: _GuestHost | None = None
        self._trio_warmth = Warmth()
        self._next_fair_yield = 0.0
        self._guest_thread: int | None = None
        # Where the guest run's ticks run (see _TrioTick).
        self._tick_context = contextvars.Context()

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
        ident = self._thread_id = _get_ident()
        if ident == _MAIN_THREAD_IDENT:
            # First: a Ctrl-C from here on must not land in our bookkeeping.
            self._sigint_deferral_installed = self._sigint_deferral.install()
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
        if self._sigint_deferral_installed:
            # Last, and it may raise the KeyboardInterrupt it held back.
            self._sigint_deferral_installed = False
            self._sigint_deferral.uninstall()

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
        self._awaited = task
        try:
            self.run_forever()
        except BaseException:
            if new_task and task.done() and not task.cancelled():
                task.exception()  # retrieved: don't log it as never retrieved
            raise
        finally:
            self._awaited = None
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

        loop_ref = weakref.ref(self)  # the handler must not keep the loop alive

        def handler(signum: int, frame: Any) -> None:
            loop = loop_ref()
            if loop is not None and loop._running:
                trio_handler(signum, frame)  # type: ignore[operator]
            else:
                raise KeyboardInterrupt

        handler._trio_asyncio_wraps_trio = True  # type: ignore[attr-defined]
        self._sigint_wrapper = handler
        signal.signal(signal.SIGINT, handler)

    def remove_signal_handler(self, sig: int) -> bool:
        """As on any loop; during a run, our SIGINT handler comes back in front (see _sigint_deferral)."""
        removed = super().remove_signal_handler(sig)
        if removed and sig == signal.SIGINT and self._sigint_deferral_installed:
            self._sigint_deferral.reinstall()
        return removed

    def _unwrap_trio_sigint_handler(self) -> None:
        wrapper, self._sigint_wrapper = self._sigint_wrapper, None
        if wrapper is None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is wrapper:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._sigint_deferral.swap_inner(wrapper, signal.default_int_handler)

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
        self._raised_in_host.clear()
        self._abandon_trio_waits()
        self._remove_all_signal_handlers()
        self._close_autoclose_fds()
        self._close_selector()
        self._shutdown_default_executor_now()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._closed:
            return
        _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
        if self._running:  # pragma: no cover - a running loop is referenced
            return
        host = self._guest_host
        if host is not None and self._trio_state != "done":
            # Its Trio guest run must end too, or Trio's I/O thread and fds
            # stay behind.
            if not self._can_end_guest_run_here():
                return  # leaked, but at least reported
            host.strong = self
            try:
                self.close()
            finally:
                host.strong = None
            return
        self._closed = True
        self._close_selector()

    def _can_end_guest_run_here(self) -> bool:
        """Whether a short run of this loop, to end its guest run, is possible now.

        Only in its own thread, outside any other loop or Trio run, and not
        while the interpreter finalizes: Trio's I/O thread (a daemon) can no
        longer take the GIL to wake us then, and the run could hang the exit
        (unclosed loops are closed earlier, at exit: see _close_at_exit).
        """
        return not (
            sys.is_finalizing()
            or _get_ident() != self._guest_thread
            or _get_running_loop() is not None
            or (self._trio_stash is not None and _compat.trio_run_active())
        )

    # ---- Trio, as a guest ------------------------------------------------------------

    def _start_trio(self) -> None:
        self._trio_state = "starting"
        # Between runs (run_trio() from plain code), Trio's per-run thread
        # state must be stashed at once, as at the end of a run: its
        # async-generator hooks go on top of ours, and come off with them.
        between_runs = not self._running
        if between_runs:
            self._install_asyncgen_hooks()
        # Trio keeps the guest run alive from its I/O thread: it must reach
        # this loop only weakly, or an unclosed loop would never be collected.
        host = self._guest_host = _GuestHost(self)
        self._guest_thread = _get_ident()
        _GUEST_RUN_LOOPS.add(self)
        # Trio installs its SIGINT handler only over Python's: step aside
        # for it, and come back in front of it (or of its wrapper) after.
        deferral = self._sigint_deferral
        stepped_aside = (
            self._sigint_deferral_installed and signal.getsignal(signal.SIGINT) is deferral
        )
        if stepped_aside:
            signal.signal(signal.SIGINT, deferral.inner)
        try:
            trio.lowlevel.start_guest_run(
                _guest_main,
                host,
                run_sync_soon_threadsafe=host.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=host.run_tick_soon,
                done_callback=host.done,
                host_uses_signal_set_wakeup_fd=True,
            )
        except BaseException:
            self._trio_state = "none"
            self._trio_waiting.clear()
            if between_runs:
                self._uninstall_asyncgen_hooks()
            raise
        finally:
            # (After a failed start there is no Trio handler: nothing to wrap.)
            self._wrap_trio_sigint_handler()
            if stepped_aside:
                deferral.inner = signal.getsignal(signal.SIGINT)  # type: ignore[assignment]
                signal.signal(signal.SIGINT, deferral)
        if between_runs:
            self._leave_trio_state()
            self._uninstall_asyncgen_hooks()

    @trio.lowlevel.enable_ki_protection
    def _run_trio_tick(self, tick: Callable[[], object]) -> None:
        # Trio code is not asyncio code: no running asyncio loop inside.
        # Ticks run in this loop's batches, where it is the running loop
        # (known without asking: on 3.10 and 3.11 asking costs a getpid()).
        saved = self if self._running else _get_running_loop()
        _set_running_loop(None)
        try:
            tick()
        finally:
            _set_running_loop(saved)

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
        # Before Trio may be started: a guest run started from a foreign
        # thread would be abandoned half-way when call_soon() refuses it.
        self._check_thread("run_trio")
        jobs = self._trio_jobs
        if jobs is not None and self._running and self._trio_state == "running":
            # During a run, the guest run's state is this thread's: hand the
            # job over directly (Trio is woken if it waits for I/O), which
            # saves a Trio tick and a wake-up through the entry queue.
            jobs.submit(future, proc, args, context)
            return
        self._in_trio(self._submit_in_trio, future, proc, args, context)

    def _submit_in_trio(self, *job: Any) -> None:
        if self._trio_jobs is None:  # pragma: no cover - closing
            job[0]._finish_cancelled()
            return
        self._trio_jobs.submit(*job)

    def _spawn_trio(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._check_closed()
        self._check_thread("run_trio_task")  # as in _submit_trio_job
        self._in_trio(self._spawn_in_trio, async_fn, args)

    def _spawn_in_trio(
        self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        if self._trio_jobs is not None:
            self._trio_jobs._nursery.start_soon(async_fn, *args)

    def _complete_from_trio(self, finish: Callable[..., None], *args: Any) -> None:
        finish(*args)
        # Its worker then keeps the guest run awake for the next job.
        self._trio_warmth.extend()

    def _start_and_wait(self, coro: Any, cleanup: bool = False) -> Any:
        # Trio code runs in guest ticks, which are callbacks of this loop.
        # During a run, the new task's first step (the one handle that
        # create_task() just queued, after everything of the current batch)
        # runs right here instead: a coroutine that finishes without
        # blocking then costs no Trio tick and no wait (as TrioEventLoop's
        # helping does).
        ready = self._ready
        queued = len(ready)
        task = self._create_task_from_trio(coro)
        if (
            len(ready) == queued + 1
            and type(coro) is _CoroutineType
            and self._task_factory is None
            and self._can_run_step_here()
        ):
            self._run_step_here(ready.pop())
            if task.done():
                return self._finish_fast(task)
        return self._wait_future(task, cleanup)

    def _can_run_step_here(self) -> bool:
        """Whether Trio code (in a guest tick) may run an asyncio callback itself."""
        return (
            self._running
            and not self._debug
            and self._trio_state == "running"
            and _get_ident() == self._thread_id
        )

    def _run_step_here(self, handle: asyncio.Handle) -> None:
        saved = (_get_running_loop(), _sniffio.name, _hide_trio_task())
        _set_running_loop(self)
        _sniffio.name = "asyncio"
        try:
            if not handle._cancelled:
                handle._run()
        except (KeyboardInterrupt, SystemExit) as exc:
            # As from the loop's own batch: it ends the run, in the caller of
            # run_forever. It must not escape into the Trio task.
            self._report_fatal(exc)
        finally:
            _set_running_loop(saved[0])
            _sniffio.name = saved[1]
            _restore_trio_task(saved[2])
            handle = None  # type: ignore[assignment]  # as in _run_ready()

    async def _finish_fast(self, future: asyncio.Future[Any]) -> Any:
        # Stay a checkpoint for cancellation, and let Trio (and the rest of
        # this loop, whose batch waits for this tick) run at least once per
        # budget. The caller checked for cancellation before the work began.
        if _perf_counter() > self._next_fair_yield:
            await trio.lowlevel.cancel_shielded_checkpoint()
            self._next_fair_yield = _perf_counter() + _BUDGET
        return future.result()

    def _wait_future(self, future: asyncio.Future[Any], cleanup: bool = False) -> Any:
        # A Trio task starts waiting for asyncio: its result often comes
        # soon, and a warm guest run picks it up without Trio's I/O thread.
        self._trio_warmth.warm_up()
        return super()._wait_future(future, cleanup)

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
        if self._running and self._trio_state == "running" and _get_ident() == self._thread_id:
            # As in _submit_trio_job: during a run, Trio's state is this
            # thread's; Trio wakes its I/O thread itself if it must.
            if value is None:
                trio.lowlevel.reschedule(task)
            else:
                trio.lowlevel.reschedule(task, value)
            return
        if value is None:
            token.run_sync_soon(trio.lowlevel.reschedule, task)
        else:
            token.run_sync_soon(trio.lowlevel.reschedule, task, value)

    def _raise_in_host(self, exc: BaseException) -> None:
        """Make *exc* propagate out of the current (or next) run of the loop.

        Once: a KeyboardInterrupt crossing Trio -> asyncio -> Trio is reported
        by each hop on its way up (the asyncio step a Trio task ran, then the
        Trio job awaiting that task), as the same object.
        """
        if self._closed or any(known is exc for known in self._raised_in_host):
            return
        self._raised_in_host.append(exc)
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


def _close_at_exit() -> None:
    """Close, at interpreter exit, the unclosed sync loops whose guest run is alive.

    Run by atexit, before the interpreter finalizes: Trio's I/O thread can
    still wake the loop, so the guest run ends cleanly (later, a loop's
    ``__del__`` could only leave it behind). Loops of other threads are left
    alone. Each gets the ResourceWarning that ``__del__`` would give.
    """
    for loop in list(_GUEST_RUN_LOOPS):
        if loop._closed or loop._running or loop._trio_state in ("none", "done"):
            continue
        if not loop._can_end_guest_run_here():
            continue
        warnings.warn(f"unclosed event loop {loop!r}", ResourceWarning, stacklevel=1, source=loop)
        loop.close()


#: The sync loops that started a guest run (weakly held), for _close_at_exit.
_GUEST_RUN_LOOPS: weakref.WeakSet[SyncTrioEventLoop] = weakref.WeakSet()
atexit.register(_close_at_exit)


class _GuestHost:
    """What the Trio guest run holds of its host loop: a weak reference.

    While the loop's ``__del__`` closes it, the reference is made strong
    for that time (the cyclic GC has cleared weak references by then).
    """

    __slots__ = ("_ref", "strong")

    def __init__(self, loop: SyncTrioEventLoop) -> None:
        self._ref = weakref.ref(loop)
        self.strong: SyncTrioEventLoop | None = None

    def loop(self) -> SyncTrioEventLoop | None:
        return self.strong or self._ref()

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        loop = self.loop()
        if loop is not None and not loop._closed:
            # Trio passes its guest tick here too (after waiting for I/O in
            # its thread): like any tick, it must run KI-protected, or a
            # Ctrl-C landing in it would lose the tick and stall the run.
            loop.call_soon_threadsafe(loop._run_trio_tick, fn)

    def run_tick_soon(self, tick: Callable[[], object]) -> None:
        # Called inside a tick, in the loop's thread: the next tick joins the
        # ready queue directly, as a _TrioTick (see there).
        loop = self.loop()
        if loop is not None:
            if loop._closed:
                loop._raise_closed()
            loop._ready.append(_TrioTick(loop, tick))

    def done(self, result: outcome.Outcome[Any]) -> None:
        loop = self.loop()
        if loop is not None:
            loop._trio_done(result)


class _TrioTick:
    """A guest-run tick waiting in the loop's ready queue.

    The hot path of every Trio call from sync mode: it stands in for an
    ``asyncio.Handle``, as far as the loop's batch needs (``_cancelled`` and
    ``_run()``), without a Handle's cost (a ``contextvars`` copy per tick).
    Ticks run in one context of the loop's own: Trio's runner code outside
    its tasks sets no context variables, and each Trio task runs in its own.
    """

    __slots__ = ("_loop", "_tick")

    _cancelled = False

    def __init__(self, loop: SyncTrioEventLoop, tick: Callable[[], object]) -> None:
        self._loop = loop
        self._tick = tick

    def cancel(self) -> None:  # pragma: no cover - nobody holds a tick to cancel it
        pass

    def _run(self) -> None:
        loop = self._loop
        try:
            loop._tick_context.run(loop._run_trio_tick, self._tick)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            loop.call_exception_handler(
                {"message": "Exception in a Trio guest tick", "exception": exc, "handle": self}
            )

    def __repr__(self) -> str:
        return f"<Trio guest tick of {self._loop!r}>"


async def _guest_main(host: _GuestHost) -> None:
    """The guest run's main task: it hosts the job runner until the loop closes.

    It holds the loop only while it is not waiting, so that an unclosed,
    unreferenced loop can be collected (and closed by ``__del__``).
    """
    loop = host.loop()
    if loop is None:  # pragma: no cover - collected before Trio started
        return
    loop._token = trio.lowlevel.current_trio_token()
    stop = loop._guest_stop = trio.Event()
    async with trio.open_nursery() as nursery:
        loop._trio_jobs = TrioJobRunner(nursery, loop._trio_warmth)
        nursery.start_soon(_keep_warm, loop._trio_warmth, name="trio-asyncio warmth")
        loop._trio_state = "running"
        waiting, loop._trio_waiting = loop._trio_waiting, []
        del loop
        _run_all(waiting)
        del waiting
        while True:
            try:
                await stop.wait()
                break
            except KeyboardInterrupt as exc:
                # Ctrl-C during a Trio tick: it belongs to whoever called
                # run_forever / run_until_complete.
                loop = host.loop()
                if loop is not None:
                    loop._raise_in_host(exc)
                del loop
        nursery.cancel_scope.cancel()


@trio.lowlevel.enable_ki_protection
async def _keep_warm(warmth: Warmth) -> None:
    """Stay runnable (so Trio does not wait in its thread) while warmth lasts.

    The keeper of :class:`Warmth`: it parks while a spinning worker keeps
    the run awake, or once warmth has run out. KI-protected: a Ctrl-C
    landing here goes to the guest run's main task (and on to
    run_forever's caller) instead of ending the guest run.
    """

    def abort(_: Any) -> trio.lowlevel.Abort:
        warmth.keeper = None
        return trio.lowlevel.Abort.SUCCEEDED

    while True:
        if warmth.spinner is None and _monotonic() < warmth.until:
            await trio.lowlevel.checkpoint()
        else:
            warmth.keeper = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(abort)


def _run_all(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    for fn, args in calls:
        fn(*args)


def _stop_loop(future: asyncio.Future[Any]) -> None:
    # exception() also marks the error retrieved, as the stdlib's callback does.
    if not future.cancelled() and isinstance(future.exception(), (KeyboardInterrupt, SystemExit)):
        # It is propagating out of run_forever already.
        return
    loop = future.get_loop()
    if loop._awaited is future:  # type: ignore[attr-defined]
        loop.stop()
    # Otherwise the run ended another way (a KeyboardInterrupt, say) after
    # this callback was queued: a stop() now would wrongly end the next run.


def _raise(exc: BaseException) -> None:
    raise exc


def new_event_loop() -> SyncTrioEventLoop:
    """A new sync-mode loop: ``asyncio.run(main(), loop_factory=trio_asyncio.new_event_loop)``."""
    return SyncTrioEventLoop()
