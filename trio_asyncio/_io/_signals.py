"""Unix signals: ``add_signal_handler`` and ``remove_signal_handler``.

A handled signal gets a Python-level handler that only queues the dispatch
with ``call_soon_threadsafe`` (which is signal-safe); the user's callback
then runs as an ordinary loop callback. Python runs that handler in the main
thread soon after the signal arrives *if* the main thread is awake, which is
what ``signal.set_wakeup_fd`` guarantees:

* inside ``trio.run`` (the Trio-hosted loop), Trio has set the wake-up fd to
  its own socket, so its I/O wait returns and our handler runs: we leave it;
* the sync driver blocks in ``selector.select()`` itself, so it calls
  :meth:`SignalsMixin._install_signal_wakeup` around ``run_forever`` to point
  the wake-up fd at the loop's self-pipe (unless something else owns it).

Removing a handler restores ``signal.default_int_handler`` for SIGINT and
``SIG_DFL`` otherwise, as the stdlib does -- except that a handler installed
by Trio (its KeyboardInterrupt handler) is put back instead, so Ctrl+C keeps
working the Trio way in the rest of the ``trio.run``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
import threading
import warnings
from asyncio import Handle
from collections.abc import Callable
from types import FrameType
from typing import Any

from .. import _compat

logger = logging.getLogger("asyncio")

# What signal.set_wakeup_fd() says outside the main thread (on every
# supported Python); the stdlib re-raises it as a RuntimeError.
_NOT_MAIN_THREAD = "set_wakeup_fd only works in main thread of the main interpreter"


class SignalsMixin:
    """Signal handling of the loop (mixin of BaseTrioEventLoop)."""

    # Created on first use (the loop's __init__ does not know this mixin).
    _signal_handlers: dict[int, Handle] | None = None
    # Handlers we displaced and must put back (only Trio's, see module doc).
    _displaced_signal_handlers: dict[int, Any] | None = None
    # The fd we made the wake-up fd (sync driver), or None.
    _signal_wakeup_fd: int | None = None

    # ---- public API -----------------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` from the loop whenever signal *sig* arrives.

        Main thread only. Raises TypeError for a coroutine (function),
        ValueError for an invalid signal number and RuntimeError outside the
        main thread or for a signal that cannot be caught (SIGKILL, SIGSTOP).
        """
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()  # type: ignore[attr-defined]
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(_NOT_MAIN_THREAD)
        handlers = self._signal_handlers
        if handlers is None:
            handlers = self._signal_handlers = {}
            self._displaced_signal_handlers = {}
        displaced = self._displaced_signal_handlers
        assert displaced is not None
        first = sig not in handlers
        previous = signal.getsignal(sig) if first else None
        handlers[sig] = Handle(callback, args, self, None)  # type: ignore[arg-type]
        try:
            signal.signal(sig, self._signal_received)
            # Ask for SA_RESTART, so C code is not interrupted with EINTR.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del handlers[sig]
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        if first and _compat.is_trio_signal_handler(previous):
            displaced[sig] = previous

    def remove_signal_handler(self, sig: int) -> bool:
        """Stop handling *sig*; True if it had a handler. Restores the default handler."""
        self._check_signal(sig)
        handlers = self._signal_handlers
        if not handlers or sig not in handlers:
            return False
        del handlers[sig]
        displaced = self._displaced_signal_handlers
        restore = displaced.pop(sig, None) if displaced else None
        if restore is None:
            restore = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, restore)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        return True

    # ---- delivery -------------------------------------------------------------

    def _signal_received(self, signum: int, frame: FrameType | None) -> None:
        # The Python-level handler: runs in the main thread, between two
        # bytecodes of whatever it was doing. Queue, never raise.
        try:
            self.call_soon_threadsafe(self._dispatch_signal, signum)  # type: ignore[attr-defined]
        except RuntimeError:
            pass  # the loop is closed

    def _dispatch_signal(self, signum: int) -> None:
        handlers = self._signal_handlers
        handle = handlers.get(signum) if handlers else None
        if handle is None:
            return  # removed since the signal arrived
        if handle._cancelled:
            self.remove_signal_handler(signum)
            return
        handle._run()

    @staticmethod
    def _check_signal(sig: int) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    # ---- driver hooks ---------------------------------------------------------

    def _remove_all_signal_handlers(self) -> None:
        """Remove every handler of this loop (at close; idempotent).

        At interpreter shutdown the handlers are dropped without touching
        the signal module, with a ResourceWarning, as the stdlib does.
        """
        handlers = self._signal_handlers
        if not handlers:
            return
        if sys.is_finalizing():
            handlers.clear()
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, "
                "skipping signal handlers removal",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            return
        for sig in list(handlers):
            try:
                self.remove_signal_handler(sig)
            except (ValueError, RuntimeError, OSError) as exc:
                # Closing outside the main thread: nothing we can restore.
                handlers.pop(sig, None)
                logger.warning("could not restore the handler of signal %d: %s", sig, exc)

    def _install_signal_wakeup(self) -> None:
        """Sync driver, before blocking in ``select()``: wake on signals.

        Points ``signal.set_wakeup_fd`` at the loop's self-pipe, so a signal
        makes the selector return and its Python handler run promptly. Does
        nothing outside the main thread, when already installed, or when
        something else (Trio, another loop) already set a wake-up fd: that
        one is left in place.
        """
        if self._signal_wakeup_fd is not None:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        if self._self_writer is None:  # type: ignore[attr-defined]
            self._make_self_pipe()  # type: ignore[attr-defined]
        fd = self._self_writer.fileno()  # type: ignore[attr-defined]
        try:
            previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            return
        if previous != -1 and previous != fd:
            # Somebody else's: the only way to learn that was to replace it,
            # so put it straight back.
            signal.set_wakeup_fd(previous)
            return
        self._signal_wakeup_fd = fd

    def _uninstall_signal_wakeup(self) -> None:
        """Undo :meth:`_install_signal_wakeup` (idempotent).

        Restores "no wake-up fd", unless somebody replaced ours meanwhile, in
        which case theirs stays.
        """
        fd, self._signal_wakeup_fd = self._signal_wakeup_fd, None
        if fd is None:
            return
        try:
            current = signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            return
        if current not in (-1, fd):
            signal.set_wakeup_fd(current)

    def _close_selector(self) -> None:
        # Loop close: signal wake-ups point at the self-pipe, which the
        # selector's close is about to close.
        self._remove_all_signal_handlers()
        self._uninstall_signal_wakeup()
        super()._close_selector()  # type: ignore[misc]
