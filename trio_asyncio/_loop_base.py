"""``BaseTrioEventLoop``: everything both drivers share, including the Trio bridge.

Layer 3 (with the drivers). It composes the loop core (layer 1) with the I/O
mixins (layer 2) and adds the primitives the adapters build on:

* entering and leaving "asyncio context" (running loop, sniffio),
* waiting from a Trio task for an asyncio future (:meth:`run_aio_future`),
* starting a Trio task from asyncio (:meth:`run_trio`).

How Trio tasks are spawned and woken differs between a Trio-hosted loop and a
sync loop (Trio as a guest), so drivers implement :meth:`_spawn_trio` and
:meth:`_reschedule_trio`.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import types
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from . import _compat
from ._core._base_loop import CoreEventLoop
from ._core._current import current_loop
from ._io._connections import ConnectionsMixin
from ._io._datagram import DatagramMixin
from ._io._fd_watching import FdWatchingMixin, fileobj_to_fd
from ._io._pipes import PipesMixin
from ._io._signals import SignalsMixin
from ._io._sockets import SocketOpsMixin
from ._io._subprocess import SubprocessMixin
from ._io._tls import TLSMixin
from ._trio_tasks import TrioTaskFuture

_set_running_loop = _compat.set_running_loop
_get_running_loop = _compat.get_running_loop_or_none
_sniffio = _compat.sniffio_state
_CoroutineType = types.CoroutineType


class BaseTrioEventLoop(
    ConnectionsMixin,
    TLSMixin,
    DatagramMixin,
    SocketOpsMixin,
    PipesMixin,
    SubprocessMixin,
    SignalsMixin,
    FdWatchingMixin,
    CoreEventLoop,
):
    """An asyncio event loop that cooperates with Trio (base of both drivers)."""

    def __init__(self) -> None:
        CoreEventLoop.__init__(self)
        FdWatchingMixin.__init__(self)
        self._autoclose_fds: set[int] = set()
        # asyncio future -> the Trio task waiting for it; whoever pops the
        # entry (the future's done callback, or close()) wakes the task.
        self._trio_waits: dict[asyncio.Future[Any], trio.lowlevel.Task] = {}

    # ---- asyncio context ----------------------------------------------------

    def _enter_asyncio(self) -> tuple[Any, Any]:
        """Make asyncio (and sniffio) see this loop as running; return what to restore."""
        saved = (_get_running_loop(), _sniffio.name)
        _set_running_loop(self)
        _sniffio.name = "asyncio"
        return saved

    @staticmethod
    def _leave_asyncio(saved: tuple[Any, Any]) -> None:
        _set_running_loop(saved[0])
        _sniffio.name = saved[1]

    def _create_task_from_trio(self, coro: Any) -> asyncio.Future[Any]:
        """Wrap an asyncio coroutine or awaitable in a task of this loop, from Trio code.

        If no task takes it (a closed loop, a foreign thread, a failing task
        factory), a coroutine is closed: it will never run, and must not be
        reported as "never awaited" on top of the error.
        """
        try:
            if self._task_factory is None and type(coro) is _CoroutineType:
                # Fast path: a plain Task only schedules its first step.
                return self.create_task(coro)
            # A task factory may start the task eagerly (3.12+): then its first
            # step runs right here and must see asyncio, not Trio.
            saved = self._enter_asyncio()
            try:
                return asyncio.ensure_future(coro, loop=self)
            finally:
                self._leave_asyncio(saved)
        except BaseException:
            _close_unstarted(coro)
            raise

    # ---- driver hooks -------------------------------------------------------

    def _submit_trio_job(
        self,
        future: TrioTaskFuture,
        proc: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        context: Any,
    ) -> None:
        """Run ``proc(*args)`` in Trio, in *context*, putting the outcome into *future*."""
        raise NotImplementedError

    def _spawn_trio(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        raise NotImplementedError

    def _reschedule_trio(
        self, task: trio.lowlevel.Task, value: outcome.Outcome[Any] | None = None
    ) -> None:
        """Resume a Trio task parked in ``wait_task_rescheduled`` (``None``: with no value)."""
        raise NotImplementedError

    def _complete_from_trio(self, finish: Callable[..., None], *args: Any) -> None:
        """Complete one of our futures from a Trio task: ``finish(*args)``.

        Drivers may also run the callbacks that this makes ready, right here.
        """
        finish(*args)

    def _call_in_trio(self, fn: Callable[..., object], *args: Any) -> None:
        """Call a synchronous Trio API (``scope.cancel``, ``event.set``) from asyncio code."""
        fn(*args)

    def _report_fatal(self, exc: BaseException) -> None:
        """An error that must end the loop's owner (KeyboardInterrupt, say)."""
        raise NotImplementedError

    # ---- Trio waits for asyncio ---------------------------------------------

    async def run_aio_future(self, future: Awaitable[Any]) -> Any:
        """Wait for an asyncio future (or coroutine) and return its result. Trio-flavoured.

        Cancelling the Trio caller cancels the future and waits for it to
        finish; if it then ends cancelled, the caller sees :exc:`trio.Cancelled`.
        A future cancelled from the asyncio side raises
        :exc:`asyncio.CancelledError` unchanged.
        """
        if not isinstance(future, asyncio.Future):
            return await self.run_aio_coroutine(future)
        if future.get_loop() is not self:
            _check_future_loop(self, future)
        return await self._wait_future(future)

    async def run_aio_coroutine(self, coro: Awaitable[Any]) -> Any:
        """Run an asyncio coroutine (or awaitable) as a task; return its result. Trio-flavoured.

        A caller that is already cancelled gets :exc:`trio.Cancelled` without
        the coroutine being started.
        """
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            _close_unstarted(coro)
            raise
        return await self._start_and_wait(coro)

    def _start_and_wait(self, coro: Any, cleanup: bool = False) -> Any:
        """Start *coro* as a task and return the awaitable that waits for it.

        With *cleanup*, a Trio cancellation cannot stop the task before its
        first step (see :meth:`_wait_future`). Drivers may override this to
        run the task's first steps right away.
        """
        return self._wait_future(self._create_task_from_trio(coro), cleanup)

    def _wait_future(self, future: asyncio.Future[Any], cleanup: bool = False) -> Any:
        """The awaitable behind run_aio_future(): park this Trio task until *future* is done.

        A Trio cancellation cancels *future*. With *cleanup* (a task that
        must start, such as ``__aexit__``), the cancel goes through the
        loop's queue instead: it lands after the task's first step, already
        queued, so the clean-up code starts and meets the cancel at its
        first ``await``, as it would in asyncio.
        """
        if self._closed and not future.done():
            raise RuntimeError("Event loop is closed: this future can never complete")
        if future.done():
            return _done_result(future)
        task = trio.lowlevel.current_task()
        waits = self._trio_waits
        raise_cancel: list[Callable[[], Any]] = []

        def done(_: object) -> None:
            if waits.pop(future, None) is not None:
                self._reschedule_trio(task)

        def abort(raise_cancel_: Callable[[], Any]) -> trio.lowlevel.Abort:
            raise_cancel.append(raise_cancel_)
            if self._closed:
                future.remove_done_callback(done)
                return trio.lowlevel.Abort.SUCCEEDED
            if cleanup:
                self.call_soon(future.cancel)
                return trio.lowlevel.Abort.FAILED
            saved = self._enter_asyncio()
            try:
                future.cancel()
            finally:
                self._leave_asyncio(saved)
            return trio.lowlevel.Abort.FAILED

        future.add_done_callback(done)
        waits[future] = task
        return _park_until_done(future, waits, abort, raise_cancel)

    async def run_asyncio(self, proc: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Call ``proc(*args)`` in asyncio context and await the result. Trio-flavoured."""
        saved = self._enter_asyncio()
        try:
            awaitable = proc(*args)
        finally:
            self._leave_asyncio(saved)
        return await self.run_aio_future(self._create_task_from_trio(awaitable))  # type: ignore[arg-type]

    def _abandon_trio_waits(self) -> None:
        """At close: wake every Trio task still waiting for one of our futures."""
        waits, self._trio_waits = self._trio_waits, {}
        for task in waits.values():
            self._reschedule_trio(
                task, outcome.Error(RuntimeError("the trio-asyncio loop was closed"))
            )

    # ---- asyncio starts Trio ------------------------------------------------

    def run_trio(self, proc: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future[Any]:
        """Start ``proc(*args)`` as a Trio task; return an asyncio future of its result.

        Cancelling the future cancels the Trio task, and the future ends
        cancelled once the task has finished. Callable from asyncio code and
        from synchronous code running on this loop.
        """
        self._check_closed()
        if not callable(proc):
            raise _not_an_async_function("run_trio", proc)
        future = TrioTaskFuture(self)
        context = contextvars.copy_context()
        context.run(current_loop.set, self)
        self._submit_trio_job(future, proc, args, context)
        return future

    def trio_as_future(
        self, proc: Callable[..., Awaitable[Any]], *args: Any
    ) -> asyncio.Future[Any]:
        """Alias of :meth:`run_trio` (trio-asyncio 0.16)."""
        return self.run_trio(proc, *args)

    def run_trio_task(self, proc: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``proc(*args)`` as a Trio task whose errors end the loop's owner."""
        self._check_closed()
        if not callable(proc):
            raise _not_an_async_function("run_trio_task", proc)
        self._spawn_trio(_run_reporting_errors, self, proc, args)

    def _run_sync_in_trio_thread(
        self, func: Callable[..., Any], args: tuple[Any, ...], limiter: trio.CapacityLimiter
    ) -> asyncio.Future[Any]:
        async def in_thread() -> Any:
            return await trio.to_thread.run_sync(func, *args, limiter=limiter)

        return self.run_trio(in_thread)

    async def synchronize(self) -> None:
        """Wait until every callback queued before this call has run. Trio-flavoured."""
        future = self.create_future()
        self.call_soon(_set_result_if_pending, future)
        await self.run_aio_future(future)

    # ---- fds closed with the loop -------------------------------------------

    def autoclose(self, fd: Any) -> None:
        """Close *fd* when this loop closes (trio-asyncio 0.16)."""
        self._autoclose_fds.add(fileobj_to_fd(fd))

    def no_autoclose(self, fd: Any) -> None:
        """Undo :meth:`autoclose`."""
        self._autoclose_fds.discard(fileobj_to_fd(fd))

    def _close_autoclose_fds(self) -> None:
        fds, self._autoclose_fds = self._autoclose_fds, set()
        for fd in fds:
            try:
                self._remove_reader(fd)
                self._remove_writer(fd)
            except (ValueError, OSError):
                pass
            try:
                os.close(fd)
            except OSError:
                pass


def _close_unstarted(awaitable: Any) -> None:
    """Close a coroutine we decided not to run (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if asyncio.iscoroutine(awaitable) and close is not None:
        close()


def _not_an_async_function(what: str, proc: object) -> TypeError:
    """The TypeError for a Trio entry point given something other than an async function.

    A coroutine object (``run_trio(fn())`` instead of ``run_trio(fn)``) is
    closed, so that the mistake is reported once, not also as "never awaited".
    """
    if asyncio.iscoroutine(proc):
        _close_unstarted(proc)
        return TypeError(
            f"{what}() expects an async function, got a coroutine object {proc!r}: "
            f"pass the async function and its arguments, {what}(fn, *args), "
            f"not {what}(fn(*args))"
        )
    return TypeError(f"{what}() expects an async function, got {proc!r}")


def _check_future_loop(loop: BaseTrioEventLoop, future: Any) -> None:
    """Refuse to wait, from Trio, for a future that this Trio run can never be woken by.

    A future of a non-trio-asyncio loop (a stdlib loop, say) would complete,
    if ever, in a loop that knows nothing of Trio; one of a trio-asyncio loop
    running in another thread would call us back from that thread.
    """
    if not isinstance(future, asyncio.Future):
        return
    owner = future.get_loop()
    if owner is loop:
        return
    if not isinstance(owner, BaseTrioEventLoop):
        raise ValueError(
            f"The future belongs to {owner!r}, not to a trio-asyncio loop: "
            "Trio code cannot wait for it"
        )
    tid = owner._thread_id
    if tid is not None and tid != threading.get_ident():
        raise RuntimeError(
            "The future belongs to a trio-asyncio loop that runs in another thread: "
            "use asyncio.run_coroutine_threadsafe() or loop.call_soon_threadsafe() to reach it"
        )


async def _done_result(future: asyncio.Future[Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return future.result()


async def _park_until_done(
    future: asyncio.Future[Any],
    waits: dict[Any, Any],
    abort: Callable[[Callable[[], Any]], trio.lowlevel.Abort],
    raise_cancel: list[Callable[[], Any]],
) -> Any:
    try:
        await trio.lowlevel.wait_task_rescheduled(abort)
    finally:
        waits.pop(future, None)
    if raise_cancel and future.cancelled():
        raise_cancel[0]()
    return future.result()


def _set_result_if_pending(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


async def _run_reporting_errors(
    loop: BaseTrioEventLoop, proc: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> None:
    current_loop.set(loop)
    try:
        await proc(*args)
    except trio.Cancelled:
        raise
    except BaseException as exc:
        loop._report_fatal(exc)
