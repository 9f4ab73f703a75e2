"""UDP and Unix datagram endpoints: ``create_datagram_endpoint`` and its transport.

``create_datagram_endpoint`` validates its arguments and reports errors as the
stdlib of the running Python does (including the version-specific fate of
``reuse_address``), resolves the local and remote addresses, and tries one
socket per (family, protocol) both addresses resolved to, keeping the first
that binds and connects.

:class:`DatagramSocketTransport` sends at once when nothing is queued, buffers
on ``EWOULDBLOCK`` (with write flow control) and drains the buffer when the
socket becomes writable. Receiving is the hot path: each readiness reads as
many datagrams as recent readinesses found (up to ``MAX_READS_PER_READY``),
each into one preallocated per-loop buffer and then copied out, which is
much cheaper than ``recvfrom(256 KiB)``: that mallocs (often mmaps) 256 KiB
per datagram before shrinking it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import sys
import warnings
from asyncio.trsock import TransportSocket
from collections import deque
from collections.abc import Callable
from typing import Any

from ._transport_base import TransportBase

logger = logging.getLogger("asyncio")

# Longest datagram one receive accepts (longer ones are truncated, as with
# the stdlib): every UDP datagram fits, and so do large Unix ones.
MAX_DATAGRAM_SIZE = 256 * 1024
# Most receives tried per readiness before going back to the selector. In
# bursts, reading several datagrams per readiness saves a selector round
# each; when they trickle in one at a time, every extra try is a failed
# recvfrom(). So the number adapts, between 1 and this: see _read_ready().
MAX_READS_PER_READY = 16
# Readinesses that found exactly the one datagram they read before the next
# tries two: a ping-pong rarely pays for a failed recvfrom().
_SINGLE_READS_BEFORE_GROWING = 3
# Counted per buffered datagram in get_write_buffer_size() on top of its
# payload (the UDP header), as the stdlib does from Python 3.13, so that even
# queued empty datagrams add up to a pause.
_DATAGRAM_OVERHEAD = 8 if sys.version_info >= (3, 13) else 0
# sendto() after the transport lost its socket is dropped; past this many
# attempts each one logs a warning, as stream transports do.
_LOST_SENDS_BEFORE_WARNING = 5

_UNSET: Any = object()  # reuse_address not passed (Python 3.10 only)
_HAS_AF_UNIX = hasattr(socket, "AF_UNIX")
_DGRAM = socket.SOCK_DGRAM


class DatagramMixin:
    """``create_datagram_endpoint`` for BaseTrioEventLoop."""

    _dgram_rbuf: bytearray | None = None
    _dgram_rview: memoryview | None = None

    def _datagram_receive_buffer(self) -> tuple[bytearray, memoryview]:
        """The loop's receive buffer, shared by its datagram transports.

        Sharing is safe: a loop runs in one thread, and a transport copies
        each datagram out before calling its protocol.
        """
        if self._dgram_rbuf is None:
            self._dgram_rbuf = bytearray(MAX_DATAGRAM_SIZE)
            self._dgram_rview = memoryview(self._dgram_rbuf)
        return self._dgram_rbuf, self._dgram_rview  # type: ignore[return-value]

    if sys.version_info < (3, 11):

        async def create_datagram_endpoint(
            self,
            protocol_factory: Callable[[], asyncio.BaseProtocol],
            local_addr: Any = None,
            remote_addr: Any = None,
            *,
            family: int = 0,
            proto: int = 0,
            flags: int = 0,
            reuse_address: Any = _UNSET,
            reuse_port: bool | None = None,
            allow_broadcast: bool | None = None,
            sock: socket.socket | None = None,
        ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
            """Create a datagram endpoint; return ``(transport, protocol)``.

            On Python 3.10 *reuse_address* is still accepted: ``True`` is an
            error (SO_REUSEADDR on UDP lets other processes steal datagrams)
            and ``False`` is deprecated, as in the stdlib.
            """
            return await self._create_datagram_endpoint(
                protocol_factory,
                local_addr,
                remote_addr,
                family,
                proto,
                flags,
                reuse_address,
                reuse_port,
                allow_broadcast,
                sock,
            )

    else:

        async def create_datagram_endpoint(
            self,
            protocol_factory: Callable[[], asyncio.BaseProtocol],
            local_addr: Any = None,
            remote_addr: Any = None,
            *,
            family: int = 0,
            proto: int = 0,
            flags: int = 0,
            reuse_port: bool | None = None,
            allow_broadcast: bool | None = None,
            sock: socket.socket | None = None,
        ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
            """Create a datagram endpoint; return ``(transport, protocol)``.

            Either give *sock*, an existing datagram socket, or let the loop
            make one: bound to *local_addr* and/or connected to *remote_addr*
            (``(host, port)`` tuples, or paths with ``family=AF_UNIX``), or
            neither with an explicit *family*.
            """
            return await self._create_datagram_endpoint(
                protocol_factory,
                local_addr,
                remote_addr,
                family,
                proto,
                flags,
                _UNSET,
                reuse_port,
                allow_broadcast,
                sock,
            )

    async def _create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        local_addr: Any,
        remote_addr: Any,
        family: int,
        proto: int,
        flags: int,
        reuse_address: Any,
        reuse_port: bool | None,
        allow_broadcast: bool | None,
        sock: socket.socket | None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
        # Before any socket or transport exists: the transport's first
        # call_soon() would refuse a closed loop (or a foreign thread) only
        # once the socket is bound, and leave both behind.
        self._check_closed()  # type: ignore[attr-defined]
        self._check_thread("create_datagram_endpoint")  # type: ignore[attr-defined]
        remote: Any = None  # default destination of sendto()
        own_sock = sock is None
        if sock is not None:
            _check_given_socket(
                sock,
                local_addr=local_addr,
                remote_addr=remote_addr,
                family=family,
                proto=proto,
                flags=flags,
                reuse_address=reuse_address,
                reuse_port=reuse_port,
                allow_broadcast=allow_broadcast,
            )
            sock.setblocking(False)
        else:
            candidates = await self._datagram_candidates(
                local_addr, remote_addr, family, proto, flags
            )
            if reuse_address is not _UNSET:  # Python 3.10 only
                if reuse_address:
                    raise ValueError(
                        "Passing `reuse_address=True` is no longer supported, as the "
                        "usage of SO_REUSEPORT in UDP poses a significant security concern."
                    )
                warnings.warn(
                    "The *reuse_address* parameter has been deprecated as of 3.5.10 "
                    "and is scheduled for removal in 3.11.",
                    DeprecationWarning,
                    stacklevel=3,  # this frame, create_datagram_endpoint, its caller
                )
            sock, remote = _open_first_socket(
                candidates, local_addr, remote_addr, reuse_port, allow_broadcast
            )

        try:
            protocol = protocol_factory()
            waiter = self.create_future()  # type: ignore[attr-defined]
            transport = DatagramSocketTransport(self, sock, protocol, remote, waiter)
        except BaseException:
            if own_sock:
                sock.close()
            raise
        if self._debug:  # type: ignore[attr-defined]
            logger.debug(
                "Datagram endpoint created (local_addr=%r, remote_addr=%r): %r, %r",
                local_addr,
                remote_addr,
                transport,
                protocol,
            )
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def _datagram_candidates(
        self, local_addr: Any, remote_addr: Any, family: int, proto: int, flags: int
    ) -> list[tuple[tuple[int, int], tuple[Any, Any]]]:
        """``((family, proto), (local, remote))`` pairs to try, best first."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            return [((family, proto), (None, None))]

        if _HAS_AF_UNIX and family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            if local_addr and local_addr[0] != "\0":  # not the abstract namespace
                _remove_stale_unix_socket(local_addr)
            return [((family, proto), (local_addr, remote_addr))]

        # Both addresses must resolve for the same (family, proto); the
        # dict keeps the order getaddrinfo() gave.
        by_key: dict[tuple[int, int], list[Any]] = {}
        for index, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                if sys.version_info < (3, 11):  # an assert in 3.10's stdlib
                    raise AssertionError("2-tuple is expected")
                raise TypeError("2-tuple is expected")
            # Numeric hosts skip the lookup (see SocketOpsMixin).
            infos = await self._ensure_resolved(  # type: ignore[attr-defined]
                addr, family=family, type=_DGRAM, proto=proto, flags=flags
            )
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            for fam, _type, pro, _canon, sockaddr in infos:
                by_key.setdefault((fam, pro), [None, None])[index] = sockaddr
        candidates = [
            (key, (pair[0], pair[1]))
            for key, pair in by_key.items()
            if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))
        ]
        if not candidates:
            raise ValueError("can not get address information")
        return candidates


def _check_given_socket(sock: socket.socket, **options: Any) -> None:
    """Refuse a stream socket, and socket options given along with ``sock=``."""
    if sys.version_info >= (3, 13):
        if sock.type == socket.SOCK_STREAM:
            raise ValueError(f"A datagram socket was expected, got {sock!r}")
    elif sock.type != _DGRAM:
        raise ValueError(f"A UDP Socket was expected, got {sock!r}")
    if options["reuse_address"] is _UNSET:
        del options["reuse_address"]
    # reuse_address alone does not trigger the error (as in the stdlib),
    # but is listed when something else does.
    checked = [value for name, value in options.items() if name != "reuse_address"]
    if any(checked):
        problems = ", ".join(f"{name}={value}" for name, value in options.items() if value)
        raise ValueError(
            "socket modifier keyword arguments can not be used when sock is "
            f"specified. ({problems})"
        )


def _remove_stale_unix_socket(path: str) -> None:
    """Unlink a socket file left at *path* by an earlier endpoint, so bind() works."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        # We may only be allowed to create the socket: let bind() decide.
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, exc)


def _open_first_socket(
    candidates: list[tuple[tuple[int, int], tuple[Any, Any]]],
    local_addr: Any,
    remote_addr: Any,
    reuse_port: bool | None,
    allow_broadcast: bool | None,
) -> tuple[socket.socket, Any]:
    """Make, bind and connect a socket for the first candidate that works.

    Returns the socket and the default destination of ``sendto()``. When
    every candidate fails, the first OSError is raised. A broadcast socket is
    not connected (it could then only talk to one address), but its remote
    address still becomes the default destination.
    """
    errors: list[OSError] = []
    for (family, proto), (local, remote) in candidates:
        sock = None
        try:
            sock = socket.socket(family=family, type=_DGRAM, proto=proto)
            if reuse_port:
                _set_reuse_port(sock)
            if allow_broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setblocking(False)
            if local_addr:
                sock.bind(local)
            if remote_addr and not allow_broadcast:
                # Never EINPROGRESS for datagrams: it only records the peer.
                sock.connect(remote)
        except OSError as exc:
            if sock is not None:
                sock.close()
            errors.append(exc)
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        else:
            return sock, (remote if remote_addr else None)
    try:
        raise errors[0]
    finally:
        errors.clear()  # no reference cycle through the traceback


def _set_reuse_port(sock: socket.socket) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        ) from None


def _set_result_unless_cancelled(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _same_address(addr: Any, expected: Any) -> bool:
    """Whether *addr* names *expected*, the remote address given at creation.

    An IPv6 address may leave out a zero flowinfo and scope id: the resolved
    remote address is a 4-tuple, but users naturally pass ``(host, port)``.
    """
    if addr == expected:
        return True
    if not (isinstance(addr, tuple) and isinstance(expected, tuple)):
        return False
    n = len(addr)
    return 2 <= n < len(expected) and addr == expected[:n] and not any(expected[n:])


class DatagramSocketTransport(TransportBase, asyncio.DatagramTransport):
    """A datagram transport over a non-blocking socket watched by the loop's selector.

    *address* is the default destination of :meth:`sendto` (the
    ``remote_addr`` given at creation); when the socket is connected, sends
    go through ``send()``. OSErrors of sends and receives (including ICMP
    errors reported on connected sockets, like ConnectionRefusedError) go to
    ``protocol.error_received()`` and leave the transport open; other errors
    are fatal: reported to the exception handler, and the transport aborted.
    """

    _sock: socket.socket | None = None  # read by __del__ even if __init__ failed

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        address: Any = None,
        waiter: asyncio.Future[Any] | None = None,
    ) -> None:
        fd = sock.fileno()
        loop._transports.check_free(fd)
        try:
            sockname = sock.getsockname()
        except OSError:
            sockname = None
        try:
            peername = sock.getpeername()
        except OSError:
            peername = None
        extra = {"socket": TransportSocket(sock), "sockname": sockname, "peername": peername}
        super().__init__(loop, protocol, extra)
        self._sock = sock
        self._sock_fd = fd
        self._address = address
        self._connected = peername is not None
        self._buffer: deque[tuple[bytes, Any]] = deque()
        self._buffer_size = 0
        self._conn_lost = 0  # > 0 once connection_lost() is scheduled (or called)
        self._reading_paused = False
        self._read_budget = 1  # receives to try at the next readiness
        self._single_reads = 0  # readinesses in a row that used a budget of 1
        self._rbuf, self._rview = loop._datagram_receive_buffer()
        loop._transports.add(fd, self)
        # The protocol learns about us before any datagram or the caller does.
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._sock is not None:
            info.append("read=" + ("polling" if self.is_reading() else "idle"))
            info.append(
                f"write=<{'polling' if self._buffer else 'idle'}, bufsize={self._buffer_size}>"
            )
        return f"<{' '.join(info)}>"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        sock = self._sock
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()

    # ---- receiving ------------------------------------------------------------

    def _start_reading(self) -> None:
        if self.is_reading():
            self._loop._add_reader(self._sock_fd, self._read_ready)

    def _read_ready(self) -> None:
        """Deliver the datagrams waiting on the socket (up to a budget)."""
        recvfrom_into = self._sock.recvfrom_into  # type: ignore[union-attr]
        buf = self._rbuf
        view = self._rview
        budget = self._read_budget
        done = 0
        while done < budget:
            try:
                nbytes, addr = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                # Drained: next time, expect as many as we found now.
                self._read_budget = done or 1
                self._single_reads = 0
                return
            except OSError as exc:
                self._protocol.error_received(exc)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            else:
                self._protocol.datagram_received(bytes(view[:nbytes]), addr)
            done += 1
            # The protocol may have closed or paused us meanwhile.
            if self._closing or self._reading_paused:
                return
        # The whole budget was used: more may be waiting, so try more next time.
        if budget > 1:
            if budget < MAX_READS_PER_READY:
                self._read_budget = min(2 * budget, MAX_READS_PER_READY)
        elif self._single_reads >= _SINGLE_READS_BEFORE_GROWING:
            self._read_budget = 2
        else:
            self._single_reads += 1

    def is_reading(self) -> bool:
        return not (self._closing or self._reading_paused)

    def pause_reading(self) -> None:
        """Stop calling ``datagram_received()`` until :meth:`resume_reading`."""
        if self.is_reading():
            self._reading_paused = True
            self._loop._remove_reader(self._sock_fd)

    def resume_reading(self) -> None:
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        self._start_reading()

    # ---- sending --------------------------------------------------------------

    def sendto(self, data: Any, addr: Any = None) -> None:
        """Send one datagram to *addr* (default: the remote address); never blocks.

        Sent at once when nothing is queued, else (or when the socket buffer
        is full) queued until the socket is writable. Empty datagrams are
        sent too: they are valid and some protocols use them.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        address = self._address
        if address is not None:
            if addr is not None and not _same_address(addr, address):
                raise ValueError(f"Invalid address: must be None or {address}")
            addr = None if self._connected else address
        if self._conn_lost:
            if self._conn_lost >= _LOST_SENDS_BEFORE_WARNING:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            sock = self._sock
            try:
                if addr is None:
                    sock.send(data)  # type: ignore[union-attr]
                else:
                    sock.sendto(data, addr)  # type: ignore[union-attr]
                return
            except (BlockingIOError, InterruptedError):
                self._loop._add_writer(self._sock_fd, self._write_ready)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        data = bytes(data)  # the caller may reuse a mutable buffer
        self._buffer.append((data, addr))
        self._buffer_size += len(data) + _DATAGRAM_OVERHEAD
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        """The socket is writable: send what is queued, in order, until it is full again."""
        buffer = self._buffer
        sock = self._sock
        while buffer:
            data, addr = buffer[0]
            try:
                if addr is None:
                    sock.send(data)  # type: ignore[union-attr]
                else:
                    sock.sendto(data, addr)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # This datagram is lost, the next ones may still go out.
                buffer.popleft()
                self._buffer_size -= len(data) + _DATAGRAM_OVERHEAD
                self._protocol.error_received(exc)
                if self._conn_lost:  # aborted by the protocol
                    return
                continue
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
            buffer.popleft()
            self._buffer_size -= len(data) + _DATAGRAM_OVERHEAD
        self._maybe_resume_protocol()  # the protocol may send more from here
        if not buffer and not self._conn_lost:
            self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._conn_lost += 1
                self._call_connection_lost(None)

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    # ---- closing --------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving; once the queued datagrams are sent, close the socket."""
        if self._closing:
            return
        self._closing = True
        self._loop._remove_reader(self._sock_fd)
        if not self._buffer:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close now: queued datagrams are dropped."""
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        self._report_fatal_error(exc, message)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        loop = self._loop
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            loop._remove_writer(self._sock_fd)
        if not self._closing:
            self._closing = True
            loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            sock = self._sock
            self._loop._transports.discard(self._sock_fd, self)
            self._sock = None
            self._protocol = None  # break the transport <-> protocol cycle
            if sock is not None:
                sock.close()
