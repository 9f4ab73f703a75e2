"""Trio tasks started from asyncio, seen from asyncio as futures.

:class:`TrioTaskFuture` is an :class:`asyncio.Future` driven by a Trio task.
Like an :class:`asyncio.Task` (and unlike a plain future), ``cancel()`` only
*requests* cancellation: the Trio task is cancelled, and the future is
marked cancelled once the task has really finished. An asyncio task awaiting
it therefore resumes after the Trio side has cleaned up, and asyncio's
``uncancel()`` bookkeeping (``asyncio.timeout``, ``TaskGroup``) sees a normal
cancellation.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from . import _compat

_sniffio = _compat.sniffio_state
_monotonic = time.monotonic


class TrioTaskFuture(asyncio.Future):  # type: ignore[type-arg]
    """The asyncio future of a Trio task started by ``loop.run_trio()``."""

    # Not slots: asyncio.Future (C) subclasses need a __dict__ for these.
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._trio_scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self._cancel_message: object = None

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the Trio task; the future completes when the task has ended."""
        if self.done():
            return False
        if not self._cancel_requested:
            self._cancel_requested = True
            self._cancel_message = msg
            scope = self._trio_scope
            if scope is not None:
                self.get_loop()._call_in_trio(scope.cancel)  # type: ignore[attr-defined]
        return True

    def __await__(self) -> Any:
        # Awaitable from both sides: asyncio awaits it as a future; a Trio
        # task (sniffio says "trio") waits for it through the loop.
        if _sniffio.name == "trio":
            return self.get_loop().run_aio_future(self).__await__()  # type: ignore[attr-defined]
        return super().__await__()

    __iter__ = __await__

    def _finish_cancelled(self) -> None:
        if not self.done():
            asyncio.Future.cancel(self, self._cancel_message)

    def _finish(self, value: object) -> None:
        if self.done():
            return
        if self._cancel_requested:
            # cancel() returned True, so the future ends cancelled even if
            # the job returned a value: it may have finished its last wait
            # just before the cancellation reached its scope, or shielded
            # itself. Trio's cancellation is level-triggered (the caller of
            # a cancelled scope still meets Cancelled at its next
            # checkpoint); asyncio's is one edge, and a result here would
            # swallow it: the awaiting task would carry on, never cancelled.
            asyncio.Future.cancel(self, self._cancel_message)
        else:
            self.set_result(value)

    def _finish_error(self, exc: BaseException) -> None:
        if self.done():
            return
        if isinstance(exc, (KeyboardInterrupt, SystemExit, StopIteration)):
            # asyncio futures cannot carry these; wrap so the awaiter learns.
            wrapped = RuntimeError(f"Trio task raised {type(exc).__name__}")
            wrapped.__cause__ = exc
            self.set_exception(wrapped)
        else:
            self.set_exception(exc)


class Warmth:
    """When a Trio guest run should stay awake, handing work to and from asyncio.

    A guest run with nothing to do waits for I/O in Trio's own thread, and
    waking it from asyncio costs a trip through that thread (tens of
    microseconds, more when the GIL is busy). Right after a job for asyncio
    ends, another one often follows (a loop of ``await trio_as_aio(f)()``),
    and right after a Trio task starts waiting for asyncio, the result often
    comes (``await aio_as_trio(f)()``). So for a moment the guest run keeps
    ticking in the host's thread instead: some Trio task stays runnable.

    That task is the *spinner*, an idle worker of :class:`TrioJobRunner`
    that takes the next job directly, or else the host's *keeper* task
    (woken by :meth:`warm_up`, parked while a spinner keeps the run awake).
    """

    __slots__ = ("keeper", "spinner", "until")

    #: Seconds the guest run stays awake after a job ended or a wait began.
    GRACE = 0.001

    def __init__(self) -> None:
        self.until = 0.0
        self.keeper: trio.lowlevel.Task | None = None
        self.spinner: trio.lowlevel.Task | None = None

    def extend(self) -> None:
        """A job for asyncio ended: stay awake a while (its worker sees to it)."""
        self.until = _monotonic() + self.GRACE

    def warm_up(self) -> None:
        """A Trio task began to wait for asyncio: stay awake a while (the keeper sees to it)."""
        self.until = _monotonic() + self.GRACE
        task = self.keeper
        if task is not None and self.spinner is None:
            self.keeper = None
            trio.lowlevel.reschedule(task)


class TrioJobRunner:
    """Runs Trio jobs for asyncio on a pool of parked worker tasks.

    Spawning a Trio task and entering a new cancel scope for every
    ``run_trio()`` call costs more than the call itself usually does; a parked
    worker is woken with one ``reschedule``. Each job runs in the contextvars
    of the code that submitted it. A worker keeps one cancel scope across jobs
    and replaces it only after a job was cancelled. At most ``MAX_IDLE``
    workers stay parked; the others end.

    With a :class:`Warmth` (a guest run's), a worker that finishes a job
    while the run is warm stays runnable instead of parking (it
    *spins*, checkpointing), and the next job is handed to it without a
    reschedule: back-to-back calls then cost one Trio tick with one task
    step each.
    """

    MAX_IDLE = 16

    def __init__(self, nursery: trio.Nursery, warmth: Warmth | None = None) -> None:
        self._nursery = nursery
        self._warmth = warmth
        # A job handed to the spinning worker, which takes it at its next step.
        self._handoff: tuple[Any, ...] | None = None
        self._idle: list[trio.lowlevel.Task] = []
        # A parked worker holds no job's contextvars (they may hold the loop,
        # which Trio must not keep alive: see SyncTrioEventLoop.__del__).
        self._idle_context = contextvars.Context()

    def submit(
        self,
        future: TrioTaskFuture,
        proc: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        context: contextvars.Context,
    ) -> None:
        """Start ``proc(*args)`` for *future*; call in the Trio thread, inside the run."""
        job = (future, proc, args)
        warmth = self._warmth
        if warmth is not None:
            spinner = warmth.spinner
            if spinner is not None and self._handoff is None:
                # It is runnable already: it takes the job at its next step,
                # which must run in the job's context.
                self._handoff = job
                _compat.set_task_context(spinner, context)
                return
        if self._idle:
            worker = self._idle.pop()
            # Before waking it: a step runs entirely in the context it
            # started in, so the job's first step must start in its own.
            _compat.set_task_context(worker, context)
            trio.lowlevel.reschedule(worker, outcome.Value(job))
        else:
            context.run(self._nursery.start_soon, self._work, job, name="trio-asyncio worker")

    # The runner's own code is KI-protected (as Trio's system tasks are): a
    # Ctrl-C landing in it goes to the main task of the run, whose owner
    # raises it in the loop's caller. Unprotected, it would kill the worker,
    # and with it the run: every Trio job for asyncio would hang. The job's
    # own code is not protected (see _call_unprotected).

    @trio.lowlevel.enable_ki_protection
    async def _next_job(self) -> Any:
        task = trio.lowlevel.current_task()
        warmth = self._warmth
        if warmth is not None and warmth.spinner is None and _monotonic() < warmth.until:
            job = await self._spin(task, warmth)
            if job is not None:
                return job
        idle = self._idle
        if len(idle) >= self.MAX_IDLE:
            return None
        idle.append(task)
        _compat.set_task_context(task, self._idle_context)

        def abort(_: Any) -> trio.lowlevel.Abort:
            idle.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    @trio.lowlevel.enable_ki_protection
    async def _spin(self, task: trio.lowlevel.Task, warmth: Warmth) -> Any:
        """Keep the guest run awake while *warmth* lasts; the job handed over, or None."""
        warmth.spinner = task
        _compat.set_task_context(task, self._idle_context)
        try:
            while True:
                try:
                    await trio.lowlevel.checkpoint()
                except trio.Cancelled:
                    # The run is closing: a job handed over meanwhile ends
                    # cancelled, as one submitted now would.
                    job, self._handoff = self._handoff, None
                    if job is not None:
                        future = job[0]
                        future.get_loop()._complete_from_trio(future._finish_cancelled)
                    raise
                job = self._handoff
                if job is not None:
                    self._handoff = None
                    return job
                if _monotonic() >= warmth.until:
                    return None
        finally:
            warmth.spinner = None

    @trio.lowlevel.enable_ki_protection
    async def _work(self, job: Any) -> None:
        while job is not None:
            with trio.CancelScope() as scope:
                while job is not None:
                    await self._run_job(scope, job)
                    # Nothing of the finished job may stay alive while this
                    # worker is parked (its frame is gone already).
                    job = None
                    job = await self._next_job()
            if scope.cancelled_caught:
                job = await self._next_job()

    @trio.lowlevel.enable_ki_protection
    async def _run_job(self, scope: trio.CancelScope, job: Any) -> None:
        future, proc, args = job
        del job
        loop = future.get_loop()
        future._trio_scope = scope
        if future._cancel_requested:
            scope.cancel()
        try:
            value = await _call_unprotected(proc, args)
        except trio.Cancelled:
            # Ours (the future was cancelled) or the loop's closing: either
            # way this scope is done for.
            loop._complete_from_trio(future._finish_cancelled)
            raise
        except BaseException as exc:
            loop._complete_from_trio(future._finish_error, exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                loop._report_fatal(exc)
        else:
            loop._complete_from_trio(future._finish, value)
        finally:
            future._trio_scope = None


@trio.lowlevel.disable_ki_protection
async def _call_unprotected(proc: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
    """Run a job's own code as ordinary Trio code: Ctrl-C may interrupt it there.

    ``_run_job`` then reports the KeyboardInterrupt to the loop's owner.
    """
    return await proc(*args)
