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
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from . import _compat

_sniffio = _compat.sniffio_state


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
        scope = self._trio_scope
        if self._cancel_requested and (scope is None or not scope.cancel_called):
            # cancel() returned True, but the job returned before the
            # cancellation reached its scope (the sync loop delivers it
            # through the Trio token, later). As for an asyncio.Task
            # cancelled before its coroutine saw it, the cancellation wins:
            # with a result, the awaiting task would lose it (and never
            # end). A job that saw it and returned anyway (shielded) keeps
            # its result.
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


class TrioJobRunner:
    """Runs Trio jobs for asyncio on a pool of parked worker tasks.

    Spawning a Trio task and entering a new cancel scope for every
    ``run_trio()`` call costs more than the call itself usually does; a parked
    worker is woken with one ``reschedule``. Each job runs in the contextvars
    of the code that submitted it. A worker keeps one cancel scope across jobs
    and replaces it only after a job was cancelled. At most ``MAX_IDLE``
    workers stay parked; the others end.
    """

    MAX_IDLE = 16

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
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
        if self._idle:
            worker = self._idle.pop()
            # Before waking it: a step runs entirely in the context it
            # started in, so the job's first step must start in its own.
            _compat.set_task_context(worker, context)
            trio.lowlevel.reschedule(worker, outcome.Value(job))
        else:
            context.run(self._nursery.start_soon, self._work, job, name="trio-asyncio worker")

    async def _next_job(self) -> Any:
        task = trio.lowlevel.current_task()
        idle = self._idle
        if len(idle) >= self.MAX_IDLE:
            return None
        idle.append(task)
        _compat.set_task_context(task, self._idle_context)

        def abort(_: Any) -> trio.lowlevel.Abort:
            idle.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

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

    async def _run_job(self, scope: trio.CancelScope, job: Any) -> None:
        future, proc, args = job
        del job
        loop = future.get_loop()
        future._trio_scope = scope
        if future._cancel_requested:
            scope.cancel()
        try:
            value = await proc(*args)
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
