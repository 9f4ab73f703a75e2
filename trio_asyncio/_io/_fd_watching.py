"""``add_reader`` / ``add_writer``: the loop's own OS selector.

The loop owns one :mod:`selectors` selector (epoll on Linux). Registering a
callback is one ``epoll_ctl``; the driver waits for the selector's *own* fd
to become readable (through Trio when async, directly when sync), then polls
it without blocking, so one wake-up dispatches every ready fd in one batch.
See ``docs/design.rst``, "Waiting for I/O".
"""

from __future__ import annotations

import selectors
import socket
import threading
from asyncio import Handle
from collections.abc import Callable
from typing import Any

from ._transport_base import TransportRegistry

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_get_ident = threading.get_ident


def fileobj_to_fd(fileobj: Any) -> int:
    """The fd of an int or of an object with ``fileno()``; ValueError when invalid."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _fd_of_for_removal(fileobj: Any) -> int:
    """The fd of *fileobj*, which may be -1: a socket closed since it was
    registered is still removable (it is found by identity), as with the stdlib."""
    if isinstance(fileobj, int):
        return fileobj
    try:
        return int(fileobj.fileno())
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"Invalid file object: {fileobj!r}") from None


class FdWatchingMixin:
    """Selector ownership, reader/writer callbacks and the self-pipe."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        # Number of fds registered by users (the self-pipe is not counted):
        # when 0, drivers skip polling the selector altogether.
        self._fd_count = 0
        self._self_reader: socket.socket | None = None
        self._self_writer: socket.socket | None = None
        self._self_pipe_armed = False
        self._transports = TransportRegistry()

    # ---- self-pipe: wakes a driver that sleeps on the selector ------------

    def _make_self_pipe(self) -> None:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._self_reader, self._self_writer = reader, writer
        fd = reader.fileno()
        try:
            self._selector.register(fd, _READ, None)
        except KeyError:
            # The OS just gave us this fd number, so what the selector holds
            # under it is stale: a file closed without remove_reader() (the
            # kernel dropped it from epoll already). Ours replaces it.
            self._drop_stale_registration(fd)
            self._selector.register(fd, _READ, None)

    def _drop_stale_registration(self, fd: int) -> None:
        key = self._selector.unregister(fd)
        if key.data is not None:
            self._fd_count -= 1
            for handle in key.data:
                if handle is not None:
                    handle.cancel()

    def _write_to_self(self) -> None:
        """Make the selector readable (thread- and signal-safe)."""
        writer = self._self_writer
        if writer is None:
            self._make_self_pipe()
            writer = self._self_writer
        if self._self_pipe_armed:
            return
        self._self_pipe_armed = True
        try:
            writer.send(b"\0")  # type: ignore[union-attr]
        except OSError:
            pass  # full: the selector is readable anyway

    def _drain_self_pipe(self) -> None:
        try:
            while self._self_reader.recv(4096):  # type: ignore[union-attr]
                pass
        except (BlockingIOError, InterruptedError):
            pass
        # Only now: a wake-up racing with the drain must not leave the flag
        # set over an empty pipe (later wake-ups would skip their byte).
        # One landing after the recv loop sees the flag still set and skips
        # its byte, but then we are awake anyway and will see its callback.
        self._self_pipe_armed = False

    def _close_self_pipe(self) -> None:
        if self._self_reader is not None:
            self._selector.unregister(self._self_reader.fileno())
            self._self_reader.close()
            self._self_writer.close()  # type: ignore[union-attr]
            self._self_reader = self._self_writer = None

    # ---- dispatch -----------------------------------------------------------

    def _process_fd_events(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        """Queue the callbacks of every fd the selector reported ready."""
        ready = self._ready  # type: ignore[attr-defined]
        for key, mask in events:
            data = key.data
            if data is None:
                self._drain_self_pipe()
                continue
            reader, writer = data
            if mask & _READ and reader is not None:
                if reader._cancelled:
                    self._remove_reader(key.fd)
                else:
                    ready.append(reader)
            if mask & _WRITE and writer is not None:
                if writer._cancelled:
                    self._remove_writer(key.fd)
                else:
                    ready.append(writer)

    # ---- public API -----------------------------------------------------------

    def add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` whenever *fd* is readable."""
        self._check_closed()  # type: ignore[attr-defined]
        self._check_thread("add_reader")  # type: ignore[attr-defined]
        self._check_callback(callback, "add_reader")  # type: ignore[attr-defined]
        self._transports.check_free(fileobj_to_fd(fd))
        # The object itself is registered (not its fd), so that it can be
        # removed by identity once closed, as on the stdlib loop.
        self._register(fd, _READ, Handle(callback, args, self, None))

    def add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` whenever *fd* is writable."""
        self._check_closed()  # type: ignore[attr-defined]
        self._check_thread("add_writer")  # type: ignore[attr-defined]
        self._check_callback(callback, "add_writer")  # type: ignore[attr-defined]
        self._transports.check_free(fileobj_to_fd(fd))
        # The object itself is registered (not its fd), so that it can be
        # removed by identity once closed, as on the stdlib loop.
        self._register(fd, _WRITE, Handle(callback, args, self, None))

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching *fd* for reading; True if it was watched."""
        if self.is_closed():  # type: ignore[attr-defined]
            return False
        self._check_thread("remove_reader")  # type: ignore[attr-defined]
        self._transports.check_free(_fd_of_for_removal(fd))
        return self._remove_reader(fd)

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching *fd* for writing; True if it was watched."""
        if self.is_closed():  # type: ignore[attr-defined]
            return False
        self._check_thread("remove_writer")  # type: ignore[attr-defined]
        self._transports.check_free(_fd_of_for_removal(fd))
        return self._remove_writer(fd)

    # ---- versions for transports and sock_* ------------------------------------
    #
    # They skip the public checks of the callback and of fd ownership, but
    # not the loop's state: on a closed loop the selector is gone ("Event
    # loop is closed" says why), and from a foreign thread a registration
    # would race with the selector (and, on a Trio-hosted loop, reschedule
    # the scheduler task from outside Trio, which hangs the run).

    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle:
        if self._closed:  # type: ignore[attr-defined]
            self._raise_closed()  # type: ignore[attr-defined]
        tid = self._thread_id  # type: ignore[attr-defined]
        if tid is not None and tid != _get_ident():
            self._raise_wrong_thread("add_reader")  # type: ignore[attr-defined]
        handle = Handle(callback, args, self, None)
        self._register(fileobj_to_fd(fd), _READ, handle)
        return handle

    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle:
        if self._closed:  # type: ignore[attr-defined]
            self._raise_closed()  # type: ignore[attr-defined]
        tid = self._thread_id  # type: ignore[attr-defined]
        if tid is not None and tid != _get_ident():
            self._raise_wrong_thread("add_writer")  # type: ignore[attr-defined]
        handle = Handle(callback, args, self, None)
        self._register(fileobj_to_fd(fd), _WRITE, handle)
        return handle

    def _register(self, fd: Any, event: int, handle: Handle) -> None:
        # *fd*: an int, or a file object already checked by fileobj_to_fd().
        selector = self._selector
        try:
            key = selector.get_key(fd)
        except KeyError:
            data = (handle, None) if event == _READ else (None, handle)
            selector.register(fd, event, data)
            self._fd_count += 1
            self._fd_registered()
            return
        reader, writer = key.data
        if event == _READ:
            old, reader = reader, handle
        else:
            old, writer = writer, handle
        selector.modify(fd, key.events | event, (reader, writer))
        if old is not None:
            old.cancel()

    def _unregister(self, fd: Any, event: int) -> bool:
        selector = self._selector
        try:
            # An fd, or a file object: found by its fd or, once closed, by
            # identity (ValueError when neither).
            key = selector.get_key(fd)
        except KeyError:
            return False
        fd = key.fd
        if key.data is None:  # the self-pipe is not the user's to remove
            return False
        reader, writer = key.data
        if event == _READ:
            old, reader = reader, None
        else:
            old, writer = writer, None
        remaining = key.events & ~event
        if remaining:
            try:
                selector.modify(fd, remaining, (reader, writer))
            except OSError:
                # The fd was closed since it was registered: the selector
                # dropped it (both callbacks), and says so, as on the stdlib.
                self._fd_count -= 1
                for handle in key.data:
                    if handle is not None:
                        handle.cancel()
                raise
        else:
            selector.unregister(fd)
            self._fd_count -= 1
        if old is None:
            return False
        old.cancel()
        return True

    def _remove_reader(self, fd: Any) -> bool:
        return self._unregister(fd, _READ)

    def _remove_writer(self, fd: Any) -> bool:
        return self._unregister(fd, _WRITE)

    def _fd_registered(self) -> None:
        """A first fd was registered; drivers may need to start watching I/O."""

    def _close_selector(self) -> None:
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                for handle in key.data:
                    if handle is not None:
                        handle.cancel()
        self._close_self_pipe()
        self._selector.close()
        self._fd_count = 0
