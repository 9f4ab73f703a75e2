"""Ctrl-C in asyncio code: KeyboardInterrupt between callbacks, never inside loop code.

Python's default SIGINT handler raises KeyboardInterrupt in whatever frame
runs when the signal arrives (Trio's does the same in unprotected task
code). Inside the loop's own code or asyncio's, that can lose a wake-up for
good: between a future's completion and the scheduling of its callbacks
(``Future.set_result`` calling ``call_soon``), or between popping a callback
off the ready queue and running it. The task waiting for it then never runs
again, and the clean-up that follows (``asyncio.run`` or ``open_loop``
cancelling the remaining tasks and waiting for them) hangs.

So a handler stands in front of Python's or Trio's, in the main thread:

- :class:`SigintDeferral`, for the length of each run of a sync loop;
- :class:`TrioHostedSigintDeferral`, while Trio-hosted loops are open
  (:func:`hold_for_trio_hosted_loop`), acting during their batches.

SIGINT landing in trio_asyncio's or asyncio's code queues the
KeyboardInterrupt as a callback: it is raised from the loop's batch at the
next callback boundary, promptly (the queueing wakes a waiting loop), and
goes where a KeyboardInterrupt raised by a callback goes. Anywhere else,
in user code or the selector's wait, the handler behind acts at once, as
without it. A second SIGINT while one is queued also acts at once.

One more reason to stand in front of Trio's handler: during an asyncio
batch in a Trio task, that task is hidden from Trio (``_compat``), and
Trio's handler, which reads the task's KI protection, would fail with a
RuntimeError instead of raising KeyboardInterrupt. Asyncio code is never
KI-protected, so KeyboardInterrupt is raised there directly.

A handler somebody else installed (``asyncio.Runner``'s, the user's, an
``add_signal_handler`` one) is left alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._compat import (
    fast_getsignal,
    fast_setsignal,
    get_running_loop_or_none,
    is_trio_signal_handler,
    trio_task_hidden,
)

if TYPE_CHECKING:
    from ._sync_loop import SyncTrioEventLoop

#: Where code runs whose interruption can lose a wake-up: ours and asyncio's.
_LOOP_CODE_DIRS = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep,
)

SigintHandler = Callable[[int, Any], Any]
_SIGINT = int(signal.SIGINT)


def in_loop_code(frame: FrameType | None) -> bool:
    """Whether *frame* (where a signal interrupted) runs trio_asyncio's or asyncio's code."""
    return frame is not None and frame.f_code.co_filename.startswith(_LOOP_CODE_DIRS)


class _Deferral:
    """What both handlers share: defer onto a loop, or pass the signal on.

    ``inner`` is the handler it stands in front of; ``pending`` the queued
    callback that raises KeyboardInterrupt (on ``_pending_loop``), if any;
    ``active``: outside of it, it only passes SIGINT on.
    """

    __slots__ = ("__weakref__", "_pending_loop", "active", "inner", "pending")

    def __init__(self, inner: SigintHandler) -> None:
        self.inner = inner
        self.pending: asyncio.Handle | None = None
        self._pending_loop: Any = None
        self.active = False

    def _target(self) -> Any:
        """The loop to queue the KeyboardInterrupt on now, or None."""
        raise NotImplementedError

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.active and in_loop_code(frame):
            loop = self._target()
            if (
                loop is not None
                and not loop._closed
                and (self.pending is None or self._pending_loop._closed)
            ):
                # call_soon_threadsafe: appends (atomic for a signal handler,
                # which runs between bytecodes) and wakes a waiting loop.
                self.pending = loop.call_soon_threadsafe(self._raise)
                self._pending_loop = loop
                return
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()  # this SIGINT acts for both
        _pass_on(self.inner, signum, frame)

    def _raise(self) -> None:
        self.pending = None
        raise KeyboardInterrupt


class SigintDeferral(_Deferral):
    """The SIGINT handler of one sync loop's runs (see the module docstring).

    Active between :meth:`install` and :meth:`uninstall`: out of a run it
    only passes SIGINT on (if somebody who saved it during a run put it back).
    """

    __slots__ = ("_loop_ref",)

    def __init__(self, loop: SyncTrioEventLoop) -> None:
        super().__init__(signal.default_int_handler)
        # Weak: an unclosed loop must stay collectable even if a handler
        # somebody installed over ours later restores this one.
        self._loop_ref = weakref.ref(loop)

    def _target(self) -> Any:
        return self._loop_ref()

    def install(self) -> bool:
        """Stand in front of the current SIGINT handler if it is Python's or Trio's.

        Main thread only (the caller checks). Returns whether it did.
        """
        current = fast_getsignal(_SIGINT)
        if current is not signal.default_int_handler and not is_trio_signal_handler(current):
            return False
        self.inner = current
        self.active = True
        fast_setsignal(_SIGINT, self)
        return True

    def uninstall(self) -> None:
        """Put the inner handler back (unless somebody replaced ours); raise what is queued.

        A KeyboardInterrupt still queued when the run ends (it stopped in the
        batch where SIGINT arrived) is raised here, by the run it interrupted.
        """
        self.active = False
        if fast_getsignal(_SIGINT) is self:
            fast_setsignal(_SIGINT, self.inner)
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()
            raise KeyboardInterrupt

    def reinstall(self) -> None:
        """Come back in front, if the handler is Python's or Trio's again during the run.

        As after ``remove_signal_handler(SIGINT)``, which restores Python's.
        """
        if self.active and fast_getsignal(_SIGINT) is not self:
            self.install()

    def swap_inner(self, old: object, new: SigintHandler) -> None:
        """Trio installed or removed its handler: *new* is the one to stand in front of."""
        if self.inner is old:
            self.inner = new


def _pass_on(inner: SigintHandler, signum: int, frame: FrameType | None) -> None:
    if trio_task_hidden():
        # Asyncio code in a Trio task: Trio's handler cannot judge (see the
        # module docstring), and asyncio code is not KI-protected.
        raise KeyboardInterrupt
    inner(signum, frame)


class TrioHostedSigintDeferral(_Deferral):
    """In front of Trio's SIGINT handler while Trio-hosted loops are open (main thread).

    It defers a SIGINT landing in loop code during a batch of such a loop
    (the running asyncio loop is one of ours: a loop marked
    ``_defers_sigint_in_batches``) onto that loop; see the module docstring.
    Shared by every Trio-hosted loop open in the thread (``users``).
    """

    __slots__ = ("users",)

    #: Trio's handler stays behind it: removing an asyncio SIGINT handler
    #: that displaced it puts it back (see _io/_signals).
    _trio_asyncio_wraps_trio = True

    def __init__(self, inner: SigintHandler) -> None:
        super().__init__(inner)
        self.users = 0
        self.active = True

    def _target(self) -> Any:
        loop = get_running_loop_or_none()
        if loop is not None and getattr(loop, "_defers_sigint_in_batches", False):
            return loop
        return None


_trio_hosted: TrioHostedSigintDeferral | None = None


def hold_for_trio_hosted_loop() -> bool:
    """A Trio-hosted loop opens in the main thread: make sure one stands in front of Trio's.

    Returns whether this loop holds it (and must release it when it closes).
    """
    global _trio_hosted
    current = fast_getsignal(_SIGINT)
    deferral = _trio_hosted
    if deferral is not None and current is deferral:
        deferral.users += 1
        return True
    if not is_trio_signal_handler(current):
        return False  # somebody else's, or not inside trio.run's handler
    deferral = _trio_hosted = TrioHostedSigintDeferral(current)
    deferral.users = 1
    fast_setsignal(_SIGINT, deferral)
    return True


def release_for_trio_hosted_loop() -> None:
    """A loop that held it closes: the last one puts Trio's handler back."""
    global _trio_hosted
    deferral = _trio_hosted
    if deferral is None:
        return
    deferral.users -= 1
    if deferral.users > 0:
        return
    _trio_hosted = None
    deferral.active = False
    if fast_getsignal(_SIGINT) is deferral:
        fast_setsignal(_SIGINT, deferral.inner)
