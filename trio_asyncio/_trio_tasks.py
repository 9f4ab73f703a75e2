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
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from . import _compat
from ._core._current import current_loop

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
                scope.cancel()
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
        if not self.done():
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


async def run_into_future(
    loop: Any,
    future: TrioTaskFuture,
    proc: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
) -> None:
    """Trio task body: run ``proc(*args)`` and put its outcome into *future*."""
    current_loop.set(loop)
    scope = trio.CancelScope()
    future._trio_scope = scope
    if future._cancel_requested:
        scope.cancel()
    try:
        with scope:
            value = await proc(*args)
    except trio.Cancelled:
        # An outer cancellation (the loop is closing): end the future, go on.
        future._finish_cancelled()
        raise
    except BaseException as exc:
        future._finish_error(exc)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            loop._report_fatal(exc)
        return
    finally:
        future._trio_scope = None
    if scope.cancelled_caught:
        future._finish_cancelled()
    else:
        future._finish(value)
