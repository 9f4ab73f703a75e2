"""Ctrl-C during a sync run: KeyboardInterrupt between callbacks, never inside loop code.

Python's default SIGINT handler raises KeyboardInterrupt in whatever frame
runs when the signal arrives. Inside the loop's own code or asyncio's, that
can lose a wake-up for good: between a future's completion and the
scheduling of its callbacks (``Future.set_result`` calling ``call_soon``),
or between popping a callback off the ready queue and running it. The task
waiting for it then never runs again, and the clean-up that follows
(``asyncio.run`` cancelling the remaining tasks and waiting for them) hangs.

For the length of a run, in the main thread, the sync loop puts a
:class:`SigintDeferral` in front of Python's default handler (or Trio's,
when its guest run is alive). SIGINT landing in trio_asyncio's or asyncio's
code queues the KeyboardInterrupt as a callback: it is raised from the
loop's batch at the next callback boundary, promptly (the queueing wakes a
waiting selector). Anywhere else, in user code or the selector's wait, the
handler in front of which it stands acts at once, as without it. A second
SIGINT while one is queued also acts at once.

A handler somebody else installed (``asyncio.Runner``'s, the user's, an
``add_signal_handler`` one) is left alone: it is only put in front of
Python's and Trio's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._compat import fast_getsignal, fast_setsignal

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


class SigintDeferral:
    """The SIGINT handler of one sync loop's runs (see the module docstring).

    ``inner`` is the handler it stands in front of; ``pending`` the queued
    callback that raises KeyboardInterrupt, if any.
    """

    __slots__ = ("__weakref__", "_loop_ref", "active", "inner", "pending")

    def __init__(self, loop: SyncTrioEventLoop) -> None:
        # Weak: an unclosed loop must stay collectable even if a handler
        # somebody installed over ours later restores this one.
        self._loop_ref = weakref.ref(loop)
        self.inner: SigintHandler = signal.default_int_handler
        self.pending: asyncio.Handle | None = None
        # Between install() and uninstall(). Out of a run it only passes
        # SIGINT on (if somebody who saved it during a run put it back).
        self.active = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop_ref()
        if (
            self.active
            and self.pending is None
            and loop is not None
            and not loop._closed
            and in_loop_code(frame)
        ):
            # call_soon_threadsafe: appends (atomic for a signal handler,
            # which runs between bytecodes) and wakes a waiting selector.
            self.pending = loop.call_soon_threadsafe(self._raise)
            return
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()  # this SIGINT acts for both
        self.inner(signum, frame)

    def _raise(self) -> None:
        self.pending = None
        raise KeyboardInterrupt

    def install(self) -> bool:
        """Stand in front of the current SIGINT handler if it is Python's or Trio's.

        Main thread only (the caller checks). Returns whether it did.
        """
        current = fast_getsignal(_SIGINT)
        if current is not signal.default_int_handler and not _is_trio_handler(current):
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


def _is_trio_handler(handler: object) -> bool:
    # Trio's own, or the sync loop's wrapper of it (see
    # SyncTrioEventLoop._wrap_trio_sigint_handler), marked as such.
    return getattr(handler, "_trio_asyncio_wraps_trio", False) is True
