"""The socket stream transport (TCP and Unix) behind create_connection and servers.

Hot paths, written for speed (see the notes on each):

* reading: one ``recv`` (or ``recv_into`` for a :class:`asyncio.BufferedProtocol`)
  per readiness event, straight into the protocol. The selector calls the
  variant for the current protocol kind directly; :meth:`set_protocol`
  re-registers when the kind changes, so there is no per-read dispatch.
* writing: ``write`` sends at once and buffers only what the kernel did not
  take. The buffer is a deque of chunks: large ``bytes`` are kept by reference
  (zero copy), small or mutable data is copied and coalesced into bytearray
  chunks, so a backlog of small writes leaves in few ``sendmsg`` calls.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import io
import logging
import os
import socket
import sys
import warnings
from asyncio import trsock
from itertools import islice
from typing import Any

from ._transport_base import TransportBase

logger = logging.getLogger("asyncio")

try:
    _IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16
if _IOV_MAX <= 0:
    _IOV_MAX = 16

# ``bytes`` of at least this size are buffered by reference, not copied.
_ZERO_COPY_MIN = 4096
# Small writes are appended to the last bytearray chunk while it is smaller.
_COALESCE_MAX = 64 * 1024
# After the connection is lost, warn once this many writes have been dropped
# (the stdlib's threshold).
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

_BufferedProtocol = asyncio.BufferedProtocol
# Before 3.12 the stdlib's writelines() was write(b"".join(...)), and its
# errors named write().
_WRITELINES = "writelines" if sys.version_info >= (3, 12) else "write"


def _as_bytes_like(data: Any) -> Any:
    """Check *data* for ``write()``; give memoryviews a byte-sized format."""
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, memoryview):
        if data.itemsize != 1 or data.ndim != 1:
            data = data.cast("B")
        return data
    raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle on TCP sockets, as the stdlib loop does for its transports."""
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto == socket.IPPROTO_TCP
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SocketTransport(TransportBase):
    """A stream transport over a connected non-blocking socket (TCP or Unix).

    ``get_extra_info('socket')`` is an :class:`asyncio.trsock.TransportSocket`,
    the same read-only wrapper the stdlib hands out, so code that inspects or
    tunes the socket works unchanged while ``close()`` and I/O on it are not
    offered.
    """

    max_size = 256 * 1024  # bytes asked of one recv()
    # loop.start_tls() may run TLS over this transport.
    _start_tls_compatible = True

    _sock: socket.socket | None = None  # read by __del__ even if __init__ failed

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> None:
        super().__init__(loop, None, extra)
        extra = self._extra
        extra["socket"] = trsock.TransportSocket(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        self._sock = sock
        self._fd = sock.fileno()
        self._buffer: collections.deque[Any] = collections.deque()
        self._buffer_size = 0
        self._conn_lost = 0  # > 0 once connection_lost is scheduled
        self._paused = False  # pause_reading() in effect
        self._started = False  # connection_made() has been called
        self._reader_on = False  # our read callback is registered
        self._read_eof = False  # EOF seen and eof_received() kept us open
        self._eof = False  # write_eof() called
        self._sendfile_active = False
        # A future waited for by sendfile (buffer drained, or fd writable);
        # failed if the connection is lost first.
        self._write_waiter: asyncio.Future[Any] | None = None
        self._read_cb: Any = None
        self.set_protocol(protocol)
        try:
            set_nodelay(sock)
        except OSError:
            pass  # e.g. already reset by the peer: reading will tell
        self._server = server
        if server is not None:
            server._attach(self)
        loop._transports.add(self._fd, self)
        try:
            loop.call_soon(self._start, waiter)
        except BaseException:
            # A closed loop or a foreign thread: this transport never
            # existed. The socket stays the caller's to close, without an
            # "unclosed transport" warning from a half-made transport.
            loop._transports.discard(self._fd, self)
            if server is not None:
                server._detach(self)
            self._sock = None
            raise

    def _start(self, waiter: asyncio.Future[Any] | None) -> None:
        # connection_made() first, then reading, then the waiter: the same
        # order as the stdlib's three callbacks, in one.
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.connection_made() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._started = True
        self._start_reading()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fd}")
        if self._sock is not None:
            info.append("read=polling" if self._reader_on else "read=idle")
            state = "polling" if self._buffer_size else "idle"
            info.append(f"write=<{state}, bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # ---- protocol -------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch protocols; reading follows the new one's kind (buffered or not)."""
        self._protocol = protocol
        if isinstance(protocol, _BufferedProtocol):
            callback = self._read_ready_buffered
        else:
            callback = self._read_ready_data
        if callback != self._read_cb:
            self._read_cb = callback
            if self._reader_on:
                self._loop._add_reader(self._fd, callback)  # replaces the old handle

    # ---- reading --------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._stop_reading()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _start_reading(self) -> None:
        if self._reader_on or not self._started or self._closing or self._paused or self._read_eof:
            return
        self._reader_on = True
        self._loop._add_reader(self._fd, self._read_cb)

    def _stop_reading(self) -> None:
        if self._reader_on:
            self._reader_on = False
            self._loop._remove_reader(self._fd)

    def _read_ready_data(self) -> None:
        # Hot path: called by the selector for each readiness event.
        try:
            data = self._sock.recv(self.max_size)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if data:
            try:
                self._protocol.data_received(data)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        else:
            self._eof_received()

    def _read_ready_buffered(self) -> None:
        # Hot path for BufferedProtocol: read straight into the protocol's buffer.
        protocol = self._protocol
        try:
            buf = protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            nbytes = self._sock.recv_into(buf)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if nbytes:
            try:
                protocol.buffer_updated(nbytes)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
        else:
            self._eof_received()

    def _eof_received(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # Half-open: the protocol may still write, but there is nothing
            # more to read.
            self._read_eof = True
            self._stop_reading()
        else:
            self.close()

    # ---- writing --------------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send *data* now if the kernel takes it; buffer the rest."""
        if data.__class__ is not bytes:
            data = _as_bytes_like(data)
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._sendfile_active:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            self._count_lost_write()
            return
        if self._buffer_size:
            # Data is waiting already: queue behind it. Small writes are
            # coalesced into the last chunk (inlined: the common case).
            last = self._buffer[-1]
            size = len(data)
            if size < _ZERO_COPY_MIN and last.__class__ is bytearray and len(last) < _COALESCE_MAX:
                last += data
                self._buffer_size += size
            else:
                self._buffer_data(data, 0)
            if self._buffer_size > self._high_water:
                self._maybe_pause_protocol()
            return
        try:
            sent = self._sock.send(data)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            sent = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on socket transport")
            return
        if sent == len(data):
            return
        self._buffer_data(data, sent)
        self._loop._add_writer(self._fd, self._write_ready)
        if self._buffer_size > self._high_water:
            self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        """Write several buffers, in one ``sendmsg`` when that saves copying."""
        if self._eof:
            raise RuntimeError(f"Cannot call {_WRITELINES}() after write_eof()")
        if self._sendfile_active:
            raise RuntimeError(f"unable to {_WRITELINES}; sendfile is in progress")
        chunks = [_as_bytes_like(data) for data in list_of_data]
        chunks = [chunk for chunk in chunks if len(chunk)]
        if not chunks:
            return
        if len(chunks) == 1:
            self.write(chunks[0])
            return
        total = sum(map(len, chunks))
        if total <= _ZERO_COPY_MIN:
            self.write(b"".join(chunks))
            return
        if self._conn_lost:
            self._count_lost_write()
            return
        if self._buffer_size:
            for chunk in chunks:
                self._buffer_data(chunk, 0)
            if self._buffer_size > self._high_water:
                self._maybe_pause_protocol()
            return
        try:
            sent = self._sock.sendmsg(chunks[:_IOV_MAX])  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            sent = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on socket transport")
            return
        if sent == total:
            return
        for chunk in chunks:
            size = len(chunk)
            if sent >= size:
                sent -= size
                continue
            self._buffer_data(chunk, sent)
            sent = 0
        self._loop._add_writer(self._fd, self._write_ready)
        if self._buffer_size > self._high_water:
            self._maybe_pause_protocol()

    def _count_lost_write(self) -> None:
        if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            logger.warning("socket.send() raised exception.")
        self._conn_lost += 1

    def _buffer_data(self, data: Any, start: int) -> None:
        """Append ``data[start:]`` to the buffer; copy unless it is large immutable bytes."""
        size = len(data) - start
        self._buffer_size += size
        buffer = self._buffer
        if size >= _ZERO_COPY_MIN and isinstance(data, bytes):
            buffer.append(memoryview(data)[start:] if start else data)
            return
        if start:
            data = memoryview(data)[start:]
        if buffer:
            last = buffer[-1]
            if last.__class__ is bytearray and len(last) < _COALESCE_MAX:
                last += data
                return
        buffer.append(bytearray(data))

    def _write_ready(self) -> None:
        # Called by the selector when the socket is writable and we hold data.
        buffer = self._buffer
        try:
            if len(buffer) == 1:
                sent = self._sock.send(buffer[0])  # type: ignore[union-attr]
            else:
                sent = self._sock.sendmsg(islice(buffer, _IOV_MAX))  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop._remove_writer(self._fd)
            buffer.clear()
            self._buffer_size = 0
            self._fatal_error(exc, "Fatal write error on socket transport")
            return
        self._buffer_size -= sent
        while sent:
            head = buffer[0]
            size = len(head)
            if size <= sent:
                buffer.popleft()
                sent -= size
            else:
                if head.__class__ is bytearray:
                    del head[:sent]
                else:
                    buffer[0] = memoryview(head)[sent:]
                break
        if self._protocol_paused:
            self._maybe_resume_protocol()  # may write more
        if not self._buffer_size:
            self._loop._remove_writer(self._fd)
            self._buffer_drained()

    def _buffer_drained(self) -> None:
        waiter = self._write_waiter
        if waiter is not None and not self._sendfile_active:
            self._write_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._closing:
            if not self._conn_lost:
                self._conn_lost += 1
                self._loop.call_soon(self._call_connection_lost, None)
        elif self._eof:
            try:
                self._sock.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]
            except OSError as exc:
                self._fatal_error(exc, "Fatal error on socket transport: shutdown() failed")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Close the write side once the buffer has drained (``shutdown(SHUT_WR)``)."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer_size:
            self._sock.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]

    # ---- closing --------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; close the socket once the write buffer is flushed."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer_size:
            self._conn_lost += 1
            self._loop._remove_writer(self._fd)  # a sendfile may be waiting
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close at once, dropping buffered data; connection_lost(None) follows."""
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        self._report_fatal_error(exc, message)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer_size or self._write_waiter is not None:
            self._buffer.clear()
            self._buffer_size = 0
            self._loop._remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        loop = self._loop
        try:
            self._protocol.connection_lost(exc)
        finally:
            waiter = self._write_waiter
            if waiter is not None:
                # A sendfile is waiting: wake it, and unwatch the fd first.
                self._write_waiter = None
                loop._remove_writer(self._fd)
                if not waiter.done():
                    waiter.set_exception(ConnectionError("Connection is closed by peer"))
            loop._transports.discard(self._fd, self)
            self._sock.close()  # type: ignore[union-attr]
            self._sock = None
            self._protocol = None
            self._read_cb = None
            server = self._server
            if server is not None:
                self._server = None
                server._detach(self)

    # ---- sendfile -------------------------------------------------------------

    def _new_write_waiter(self) -> asyncio.Future[Any]:
        waiter = self._loop.create_future()
        if self._conn_lost:
            waiter.set_exception(ConnectionError("Connection is closed by peer"))
        else:
            self._write_waiter = waiter
        return waiter

    async def _flush(self) -> None:
        """Wait until the write buffer is empty."""
        if self._buffer_size:
            waiter = self._new_write_waiter()
            try:
                await waiter
            finally:
                if self._write_waiter is waiter:
                    self._write_waiter = None

    async def _wait_writable(self) -> None:
        waiter = self._new_write_waiter()
        if waiter.done():
            waiter.result()
        self._loop._add_writer(self._fd, _set_result_if_pending, waiter)
        try:
            await waiter
        finally:
            if self._write_waiter is waiter:
                self._write_waiter = None
                self._loop._remove_writer(self._fd)

    async def _sendfile_native(self, file: Any, offset: int, count: int | None) -> int:
        """``os.sendfile()`` the file into the socket (asyncio-flavoured).

        Raises :exc:`asyncio.SendfileNotAvailableError` (before sending
        anything) when the file or platform does not allow it. Reading is
        paused and the write buffer flushed first, so the file's bytes follow
        everything written before, and nothing can be written meanwhile.
        """
        if not hasattr(os, "sendfile"):
            raise asyncio.SendfileNotAvailableError("os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise asyncio.SendfileNotAvailableError("not a regular file") from None
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise asyncio.SendfileNotAvailableError("not a regular file") from None
        blocksize = count if count else fsize
        if not blocksize:
            return 0
        resume_reading = self.is_reading()
        self.pause_reading()
        try:
            await self._flush()
            self._sendfile_active = True
            total = 0
            try:
                while True:
                    if count:
                        blocksize = count - total
                        if blocksize <= 0:
                            break
                    if self._sock is None:
                        raise ConnectionError("Connection is closed by peer")
                    try:
                        sent = os.sendfile(self._fd, fileno, offset + total, blocksize)
                    except (BlockingIOError, InterruptedError):
                        await self._wait_writable()
                        continue
                    except OSError as exc:
                        if total:
                            if exc.errno == errno.ENOTCONN:
                                raise ConnectionError(
                                    "socket is not connected", errno.ENOTCONN
                                ) from exc
                            raise
                        # Typically a file sendfile() cannot map: let the
                        # caller fall back to plain writes.
                        raise asyncio.SendfileNotAvailableError("os.sendfile call failed") from exc
                    if not sent:
                        break  # end of file
                    total += sent
            finally:
                if total:
                    file.seek(offset + total)
            return total
        finally:
            self._sendfile_active = False
            if resume_reading:
                self.resume_reading()


def _set_result_if_pending(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)
