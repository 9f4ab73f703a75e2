"""Pipe transports: ``connect_read_pipe`` and ``connect_write_pipe``.

A pipe transport owns a file object whose fd is a pipe, a FIFO, a socket or
a character device (a terminal, say), switches it to non-blocking mode and
watches it with the loop's selector. The file object is closed once
``connection_lost()`` has been delivered, which happens exactly once.

The write side also watches its fd for *reading* (pipes, FIFOs and sockets
only): the write end of a pipe becomes readable (POLLERR) when its reader goes
away, so the loss is noticed even while nothing is being written.
The subprocess transports (``_subprocess``) build on these.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import selectors
import stat
import sys
import warnings
from typing import Any

from ._transport_base import TransportBase

logger = logging.getLogger("asyncio")

# Writes to a transport that lost its connection are dropped; after this many
# a warning is logged (the stdlib's threshold).
_LOG_THRESHOLD_FOR_LOST_WRITES = 5


def _set_result_unless_cancelled(future: asyncio.Future[Any] | None) -> None:
    if future is not None and not future.cancelled():
        future.set_result(None)


def _pipe_fd(pipe: Any, *, error: str) -> tuple[int, int]:
    """The fd of *pipe* and its ``st_mode``; ValueError(*error*) unless pipe-like."""
    fd = pipe.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        raise ValueError(error)
    return fd, mode


class _PipeLifecycle:
    """What both pipe transports share: the fd, closing it, ``connection_lost`` once.

    Mixed into an :class:`asyncio.BaseTransport` subclass that sets
    ``_loop``, ``_protocol`` and ``_closing``.
    """

    _loop: Any
    _protocol: Any
    _closing: bool
    # Class defaults, so __del__ works on a half-built transport.
    _pipe: Any = None
    _fileno: int = -1
    _lost_scheduled = False
    _lost = False

    def _adopt_pipe(self, loop: Any, pipe: Any, fd: int) -> None:
        os.set_blocking(fd, False)
        self._pipe = pipe
        self._fileno = fd
        loop._transports.add(fd, self)

    def _describe(self, event_name: str, polling: bool) -> list[str]:
        info = [type(self).__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        if self._pipe is None:
            pass
        elif self._loop.is_closed():
            info.append("open")  # no selector to ask any more: say what the stdlib says
        else:
            info.append(("polling" if polling else "idle") + f" ({event_name})")
        return info

    def _watched(self, event: int) -> bool:
        try:
            key = self._loop._selector.get_key(self._fileno)
        except (KeyError, RuntimeError, ValueError, AttributeError):
            return False
        return bool(key.events & event)

    def _schedule_connection_lost(self, exc: BaseException | None) -> None:
        """Deliver ``connection_lost(exc)`` in a later callback, at most once."""
        if self._lost_scheduled:
            return
        self._lost_scheduled = True
        if self._loop.is_closed():
            self._force_close()
            return
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._lost_scheduled = True
        try:
            if self._protocol is not None:
                self._protocol.connection_lost(exc)
        finally:
            self._release_pipe()
            self._protocol = None

    def _unwatch(self) -> None:
        """Stop watching the fd (both directions); tolerant of a closed selector."""
        if self._pipe is None:
            return
        loop = self._loop
        try:
            loop._remove_reader(self._fileno)
            loop._remove_writer(self._fileno)
        except (RuntimeError, ValueError, OSError):
            pass  # the selector is already closed

    def _release_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            self._loop._transports.discard(self._fileno, self)
            pipe.close()

    def _force_close(self) -> None:
        """Close now without calling the protocol (the loop is closing or closed)."""
        self._closing = True
        self._lost_scheduled = self._lost = True
        self._unwatch()
        self._release_pipe()
        self._protocol = None

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()
            self._pipe = None


class ReadPipeTransport(_PipeLifecycle, asyncio.ReadTransport):
    """The transport of :meth:`PipesMixin.connect_read_pipe`."""

    max_size = 256 * 1024  # most bytes read per readiness event

    def __init__(
        self,
        loop: Any,
        pipe: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._protocol = protocol
        self._closing = False
        self._paused = False
        fd, _ = _pipe_fd(pipe, error="Pipe transport is for pipes/sockets only.")
        self._adopt_pipe(loop, pipe, fd)
        # Reading starts only once connection_made() has run; the waiter
        # (connect_read_pipe) is woken after both.
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        return "<{}>".format(" ".join(self._describe("read", self._watched(selectors.EVENT_READ))))

    def _start_reading(self) -> None:
        if self.is_reading():
            self._loop._add_reader(self._fileno, self._read_ready)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fileno, self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data:
            self._protocol.data_received(data)
            return
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._schedule_connection_lost(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # EIO is how a pty reports that its other side closed: not an error.
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._close(exc)

    # ---- ReadTransport ------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._loop._remove_reader(self._fileno)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop._add_reader(self._fileno, self._read_ready)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    # ---- BaseTransport ------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._unwatch()
        self._schedule_connection_lost(exc)


class WritePipeTransport(_PipeLifecycle, TransportBase):
    """The transport of :meth:`PipesMixin.connect_write_pipe`."""

    def __init__(
        self,
        loop: Any,
        pipe: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(loop, protocol, extra)
        self._extra["pipe"] = pipe
        self._buffer = bytearray()
        self._conn_lost = 0  # writes attempted after the connection was lost
        fd, mode = _pipe_fd(
            pipe, error="Pipe transport is only for pipes, sockets and character devices"
        )
        self._adopt_pipe(loop, pipe, fd)
        loop.call_soon(protocol.connection_made, self)
        # Noticing the reader's close: works for sockets everywhere and for
        # FIFOs except on AIX; not for character devices.
        if stat.S_ISSOCK(mode) or (stat.S_ISFIFO(mode) and not sys.platform.startswith("aix")):
            loop.call_soon(self._watch_peer)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        info = self._describe("write", self._watched(selectors.EVENT_WRITE))
        if self._pipe is not None:
            info.append(f"bufsize={len(self._buffer)}")
        return "<{}>".format(" ".join(info))

    def _watch_peer(self) -> None:
        if self._pipe is not None and not self._lost_scheduled:
            self._loop._add_reader(self._fileno, self._peer_closed)

    def _peer_closed(self) -> None:
        # The write end of a pipe only ever "reads" as ready when the other
        # end has gone: lose the connection, as an error if data was pending.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._close(BrokenPipeError() if self._buffer else None)

    # ---- WriteTransport -----------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if not data:
            return
        if not isinstance(data, bytes):
            data = memoryview(data).cast("B")  # lengths below are in bytes
        if self._conn_lost or self._closing:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_LOST_WRITES:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            if n:
                data = memoryview(data)[n:]
            self._loop._add_writer(self._fileno, self._write_ready)
        self._buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        try:
            n = os.write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if n < len(self._buffer):
            del self._buffer[:n]
            self._maybe_resume_protocol()
            return
        self._buffer.clear()
        self._loop._remove_writer(self._fileno)
        self._maybe_resume_protocol()  # may write (and buffer) again
        if self._closing and not self._buffer:
            self._unwatch()
            self._call_connection_lost(None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Close the pipe once the buffer has been written (a pipe's only EOF)."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._unwatch()
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        self._close(None)

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        self._report_fatal_error(exc, message)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._buffer.clear()
        self._unwatch()
        self._schedule_connection_lost(exc)


class PipesMixin:
    """``connect_read_pipe`` and ``connect_write_pipe`` (mixin of the loop)."""

    async def connect_read_pipe(
        self, protocol_factory: Any, pipe: Any
    ) -> tuple[asyncio.ReadTransport, asyncio.BaseProtocol]:
        """Wrap the read end of a pipe (or FIFO, socket, tty) in a transport. Asyncio-flavoured.

        Returns once ``protocol.connection_made()`` has run; the transport
        then delivers ``data_received``, ``eof_received`` and finally
        ``connection_lost``, after which *pipe* is closed.
        """
        # Before the transport adopts the pipe: its first call_soon() would
        # refuse a closed loop (or a foreign thread) only half-way through.
        self._check_closed()  # type: ignore[attr-defined]
        self._check_thread("connect_read_pipe")  # type: ignore[attr-defined]
        protocol = protocol_factory()
        waiter = self.create_future()  # type: ignore[attr-defined]
        transport = ReadPipeTransport(self, pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self.get_debug():  # type: ignore[attr-defined]
            logger.debug("Read pipe %r connected: (%r, %r)", transport._fileno, transport, protocol)
        return transport, protocol

    async def connect_write_pipe(
        self, protocol_factory: Any, pipe: Any
    ) -> tuple[asyncio.WriteTransport, asyncio.BaseProtocol]:
        """Wrap the write end of a pipe (or FIFO, socket, tty) in a transport. Asyncio-flavoured.

        Returns once ``protocol.connection_made()`` has run. Writes are
        buffered with flow control; the reader going away ends the
        connection (``connection_lost(BrokenPipeError())`` if data was still
        buffered, else ``connection_lost(None)``).
        """
        # Before the transport adopts the pipe: its first call_soon() would
        # refuse a closed loop (or a foreign thread) only half-way through.
        self._check_closed()  # type: ignore[attr-defined]
        self._check_thread("connect_write_pipe")  # type: ignore[attr-defined]
        protocol = protocol_factory()
        waiter = self.create_future()  # type: ignore[attr-defined]
        transport = WritePipeTransport(self, pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self.get_debug():  # type: ignore[attr-defined]
            logger.debug(
                "Write pipe %r connected: (%r, %r)", transport._fileno, transport, protocol
            )
        return transport, protocol
