"""Reaping child processes, without asyncio's child watchers (gone in 3.14).

Each loop has one :class:`ChildReaper`. For every child it either

* opens a pidfd (Linux 5.3+) and watches it with the loop's own selector: it
  becomes readable when the child exits; or
* starts a daemon thread that waits for the exit with
  ``waitid(..., WEXITED | WNOWAIT)``, which does *not* reap, and then wakes
  the loop with ``call_soon_threadsafe``.

Either way the child is reaped with ``waitpid(pid, WNOHANG)`` in the loop's
thread, and the exit callback runs right after. So while the loop still
believes a child runs, its pid cannot have been reused, and signalling it is
safe. Only one waitpid() per child ever happens (a lock-protected flag).

When the loop closes, :meth:`ChildReaper.close` reaps what is left (the
callers killed those children first) with a bounded wait; a child that
outlives it is left to a daemon thread that reaps it whenever it dies, so no
zombie and no fd outlives the loop.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("asyncio")

ExitCallback = Callable[[int], None]
#: Where to find an exit code that someone else read (``Popen.returncode``).
LostStatus = Callable[[], "int | None"]

# How long loop close may block reaping children it has just killed.
CLOSE_TIMEOUT = 2.0

_HAVE_WAITID = hasattr(os, "waitid") and hasattr(os, "WNOWAIT") and hasattr(os, "P_PID")
_pidfd_send_signal = getattr(signal, "pidfd_send_signal", None)


def _exit_code(status: int) -> int:
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        return status  # not an exit status we understand: report it raw


def _wait(pid: int, flags: int, lost_status: LostStatus | None = None) -> int | None:
    """``waitpid``: the child's exit code, or None while it still runs (WNOHANG)."""
    try:
        wpid, status = os.waitpid(pid, flags)
    except ChildProcessError:
        # Somebody else reaped it: its Popen (poll() in Popen.kill(), say),
        # whose returncode then has the code, or a stranger (SIGCHLD set to
        # SIG_IGN, a stray waitpid), who took it with them.
        code = lost_status() if lost_status is not None else None
        if code is not None:
            return code
        logger.warning(
            "child process pid %d exit status already read: will report returncode 255", pid
        )
        return 255
    if wpid == 0:
        return None
    return _exit_code(status)


class _Watch:
    """One child: reaps it exactly once and reports the exit code."""

    def __init__(
        self,
        reaper: ChildReaper,
        pid: int,
        callback: ExitCallback,
        lost_status: LostStatus | None = None,
    ) -> None:
        self.reaper = reaper
        self.pid = pid
        self.callback = callback
        self.lost_status = lost_status
        self.lock = threading.Lock()
        self.reaped = False

    def try_reap(self, flags: int = os.WNOHANG) -> bool:
        """Reap the child if it has exited (or wait for it: *flags* 0); True once reaped."""
        with self.lock:
            if self.reaped:
                return True
            code = _wait(self.pid, flags, self.lost_status)
            if code is None:
                return False
            self.reaped = True
        self.release()
        self.reaper._forget(self)
        try:
            self.callback(code)
        except Exception:
            logger.exception("Exception in the exit callback of child process %d", self.pid)
        return True

    def reap_blocking(self) -> None:
        """Target of the thread that reaps a child the closed loop left behind."""
        try:
            self.try_reap(0)
        except BaseException:
            logger.exception("Error reaping child process %d", self.pid)

    def orphan(self) -> None:
        """The loop closed before the child died: reap it from a daemon thread."""
        self.release()
        threading.Thread(
            target=self.reap_blocking, name=f"trio-asyncio reaper {self.pid}", daemon=True
        ).start()

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def release(self) -> None:
        """Free what watching needed (idempotent)."""


class _PidfdWatch(_Watch):
    """Watches a pidfd with the loop's selector."""

    def __init__(
        self,
        reaper: ChildReaper,
        pid: int,
        callback: ExitCallback,
        lost_status: LostStatus | None = None,
    ) -> None:
        super().__init__(reaper, pid, callback, lost_status)
        self.pidfd: int | None = os.pidfd_open(pid)
        try:
            reaper.loop._add_reader(self.pidfd, self.try_reap)
        except BaseException:
            os.close(self.pidfd)
            raise

    def send_signal(self, sig: int) -> None:
        pidfd = self.pidfd
        if pidfd is not None and _pidfd_send_signal is not None:
            _pidfd_send_signal(pidfd, sig)
        else:
            os.kill(self.pid, sig)

    def release(self) -> None:
        pidfd, self.pidfd = self.pidfd, None
        if pidfd is None:
            return
        try:
            self.reaper.loop._remove_reader(pidfd)
        except (RuntimeError, ValueError, OSError):
            pass  # the selector is closed already
        os.close(pidfd)


class _ThreadWatch(_Watch):
    """Waits for the child's exit in a daemon thread (no pidfd available)."""

    def __init__(
        self,
        reaper: ChildReaper,
        pid: int,
        callback: ExitCallback,
        lost_status: LostStatus | None = None,
    ) -> None:
        super().__init__(reaper, pid, callback, lost_status)
        self.exited = False  # the thread saw the exit (under self.lock)
        self.orphaned = False  # the loop closed: the thread must reap (under self.lock)
        self.thread = threading.Thread(
            target=self._run, name=f"trio-asyncio waitpid {pid}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        try:
            if _HAVE_WAITID:
                while True:
                    try:
                        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                        break
                    except ChildProcessError:
                        break  # reaped elsewhere: try_reap reports 255
            else:
                # No way to wait without reaping: reap here and now.
                self.try_reap(0)
                return
            with self.lock:
                self.exited = True
                orphaned = self.orphaned
            if not orphaned:
                try:
                    self.reaper.loop.call_soon_threadsafe(self.try_reap)
                    return
                except RuntimeError:
                    pass  # the loop closed meanwhile
            self.try_reap(0)
        except BaseException:
            logger.exception("Error waiting for child process %d", self.pid)

    def orphan(self) -> None:
        with self.lock:
            exited = self.exited
            if not exited:
                self.orphaned = True
        if exited:
            self.try_reap(0)  # a zombie: returns at once


class ChildReaper:
    """Watches and reaps the children of one loop (see the module docstring)."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self._watches: dict[int, _Watch] = {}

    def watch(
        self, pid: int, callback: ExitCallback, lost_status: LostStatus | None = None
    ) -> _Watch:
        """Call ``callback(exit_code)`` in the loop's thread once child *pid* is reaped.

        If someone else reaped it first, ``lost_status()`` (if given) says
        the exit code they read; otherwise it is reported as 255.
        """
        watch: _Watch
        try:
            watch = _PidfdWatch(self, pid, callback, lost_status)
        except (AttributeError, OSError):
            # No os.pidfd_open (not Linux), an old kernel, or out of fds.
            watch = _ThreadWatch(self, pid, callback, lost_status)
        self._watches[pid] = watch
        return watch

    def _forget(self, watch: _Watch) -> None:
        if self._watches.get(watch.pid) is watch:
            del self._watches[watch.pid]

    def __len__(self) -> int:
        return len(self._watches)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Reap every watched child, waiting at most *timeout* seconds in all.

        For loop close; the children should have been killed already. The
        exit callbacks run here (the loop is closed by now: they must not
        schedule anything). Children still alive after *timeout* are left
        to daemon threads that reap them when they die.
        """
        deadline = time.monotonic() + timeout
        watches = list(self._watches.values())
        pidfds = {w.pidfd: w for w in watches if isinstance(w, _PidfdWatch) and w.pidfd is not None}
        if pidfds:
            poller = select.poll()
            for fd in pidfds:
                poller.register(fd, select.POLLIN)
            while pidfds:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for fd, _ in poller.poll(remaining * 1000):
                    watch = pidfds.pop(fd)
                    poller.unregister(fd)
                    if not watch.try_reap():  # pragma: no cover - pidfd readable means exited
                        watch.orphan()
        for watch in watches:
            if watch.reaped:
                continue
            if isinstance(watch, _ThreadWatch):
                watch.thread.join(max(0.0, deadline - time.monotonic()))
            if not watch.try_reap():
                watch.orphan()
        self._watches.clear()
