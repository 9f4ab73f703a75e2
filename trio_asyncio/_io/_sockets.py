"""Low-level socket operations (sock_recv, sock_sendall, sock_connect, sock_accept, sock_sendfile, ...) and DNS (getaddrinfo, getnameinfo).

Every ``sock_*`` coroutine first tries its operation at once. Only when the
socket would block does it register a reader or writer on the loop's selector
whose callback retries the operation and completes a future; one done
callback on that future removes the registration, whether the operation
finished, failed or was cancelled. The fast path allocates nothing beyond
what the socket call itself returns.

Name resolution runs in the default executor, as in the stdlib; addresses that
are already numeric skip it.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import io
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ._transport_base import TransportRegistry

logger = logging.getLogger("asyncio")

_SSLSocket: Any = ssl.SSLSocket if ssl is not None else None
_HAS_IPV6 = hasattr(socket, "AF_INET6")
_AF_INET = socket.AF_INET
_AF_INET6 = getattr(socket, "AF_INET6", None)
_SOCK_STREAM = socket.SOCK_STREAM
_SOCK_DGRAM = socket.SOCK_DGRAM

# "Would block": wait for readiness and try again.
_RETRY = (BlockingIOError, InterruptedError)

# Size of the read-and-send buffer of the sendfile fallback (as in the stdlib).
SENDFILE_FALLBACK_BLOCK = 256 * 1024

# Our clean-up done callbacks touch no context variable: they run in a new,
# empty context rather than a copy of the caller's. Not one shared context:
# a Context cannot be entered by two threads at once, and loops in different
# threads run these callbacks concurrently ("cannot enter context: ... is
# already entered"). An empty Context() costs what copy_context() does.
_Context = contextvars.Context

# (family, type, proto, canonname, sockaddr), as socket.getaddrinfo returns.
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


# ---- readiness callbacks (module functions: no bound method per call) -------


def _retry_when_ready(fut: asyncio.Future[Any], call: Callable[..., Any], *args: Any) -> None:
    """Reader/writer callback: try ``call(*args)`` again; complete *fut* unless it blocks."""
    if fut.done():  # cancelled; our clean-up callback has not run yet
        return
    try:
        result = call(*args)
    except _RETRY:
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        del fut  # the traceback holds this frame: no fut -> exc -> frame -> fut cycle
    else:
        fut.set_result(result)


def _retry_method_when_ready(
    fut: asyncio.Future[Any], sock: socket.socket, method: str, *args: Any
) -> None:
    """Like :func:`_retry_when_ready`, with ``sock.<method>`` looked up at each try.

    As in the stdlib: a socket wrapper (or a test's mock) may replace the
    method between tries.
    """
    _retry_when_ready(fut, getattr(sock, method), *args)


def _send_rest(fut: asyncio.Future[Any], sock: socket.socket, rest: list[memoryview]) -> None:
    """Writer callback of sock_sendall: send what is left (``rest[0]``, bytes)."""
    if fut.done():
        return
    view = rest[0]
    try:
        sent = sock.send(view)
    except _RETRY:
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        del fut  # break the fut -> exc -> frame -> fut cycle
        return
    if sent == len(view):
        fut.set_result(None)
    else:
        rest[0] = view[sent:]


def _connect_finished(fut: asyncio.Future[Any], sock: socket.socket, address: Any) -> None:
    """Writer callback of sock_connect: the connection attempt has an outcome."""
    if fut.done():
        return
    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except _RETRY:
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        del fut  # break the fut -> exc -> frame -> fut cycle
        return
    if err:
        # OSError(errno, ...) picks the subclass: ConnectionRefusedError, ...
        fut.set_exception(OSError(err, f"Connect call failed {address}"))
    else:
        fut.set_result(None)


def _accept_nonblocking(sock: socket.socket) -> tuple[socket.socket, Any]:
    conn, address = sock.accept()
    conn.setblocking(False)
    return conn, address


def _forget_reader(loop: SocketOpsMixin, fd: int, handle: asyncio.Handle, _: object) -> None:
    # A cancelled handle was replaced or removed by someone else: leave the fd alone.
    if not handle.cancelled():
        loop._remove_reader(fd)


def _forget_writer(loop: SocketOpsMixin, fd: int, handle: asyncio.Handle, _: object) -> None:
    if not handle.cancelled():
        loop._remove_writer(fd)


# ---- name resolution -----------------------------------------------------------


def numeric_addrinfo(
    host: Any, port: Any, family: int, type: int, proto: int, *extra: Any
) -> AddrInfo | None:
    """The addrinfo of an already numeric *host*, or None when getaddrinfo is needed.

    Only stream and datagram sockets over TCP/UDP qualify, and *port* must be
    a number (a service name such as ``"http"`` needs a lookup). *extra* is
    the IPv6 flowinfo and scope id of a 4-tuple address.
    """
    if host is None:
        return None
    if type == _SOCK_STREAM:
        wanted = socket.IPPROTO_TCP
    elif type == _SOCK_DGRAM:
        wanted = socket.IPPROTO_UDP
    else:
        return None
    if proto and proto != wanted:
        return None
    if port is None or port == "" or port == b"":
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str) or "%" in host:
        # inet_pton rejects an IPv6 zone index ("fe80::1%eth0"): let getaddrinfo parse it.
        return None
    if family == socket.AF_UNSPEC:
        families: tuple[int, ...] = (_AF_INET, _AF_INET6) if _HAS_IPV6 else (_AF_INET,)  # type: ignore[assignment]
    else:
        families = (family,)
    for af in families:
        try:
            socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        if af == _AF_INET6:
            flowinfo = extra[0] if extra else 0
            scope_id = extra[1] if len(extra) > 1 else 0
            return af, type, wanted, "", (host, port, flowinfo, scope_id)
        return af, type, wanted, "", (host, port)
    return None


def _describe_lookup(host: Any, port: Any, family: int, type: int, proto: int, flags: int) -> str:
    parts = [f"{host}:{port!r}"]
    for name, value in (("family", family), ("type", type), ("proto", proto), ("flags", flags)):
        if value:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


# ---- sendfile ---------------------------------------------------------------------


class _NativeSendfile:
    """One ``os.sendfile`` transfer, one chunk per writable event of the socket.

    The file's position ends after the bytes that were sent (as the stdlib
    does when the transfer finishes or fails), also when it is cancelled.
    """

    __slots__ = ("_count", "_fd", "_file_fd", "_fut", "_handle", "_loop", "_offset", "_sent")

    def __init__(
        self,
        loop: SocketOpsMixin,
        fd: int,
        file_fd: int,
        offset: int,
        count: int | None,
    ) -> None:
        self._loop = loop
        self._fut: asyncio.Future[int] = loop.create_future()
        self._fd = fd
        self._file_fd = file_fd
        self._offset = offset
        self._count = count
        self._sent = 0
        self._handle: asyncio.Handle | None = None

    def start(self, blocksize: int) -> asyncio.Future[int]:
        loop = self._loop
        loop._transports.check_free(self._fd)
        self._step(blocksize)
        fut = self._fut
        if not fut.done():
            self._handle = loop._add_writer(self._fd, self._step, blocksize)
            fut.add_done_callback(self._finished)
        return fut

    def _step(self, blocksize: int) -> None:
        fut = self._fut
        if fut.done():
            return
        if self._count:
            blocksize = self._count - self._sent
            if blocksize <= 0:
                self._settle(None)
                return
        try:
            sent = os.sendfile(self._fd, self._file_fd, self._offset, blocksize)
        except _RETRY:
            return
        except OSError as exc:
            if self._sent == 0:
                # Typically a file that sendfile(2) cannot map: the caller
                # falls back on read-and-send if allowed to.
                error: BaseException = asyncio.SendfileNotAvailableError("os.sendfile call failed")
                error.__cause__ = exc
            elif exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                # The peer went away mid-transfer; platforms differ in the
                # errno they report, so report it as a ConnectionError.
                error = ConnectionError(errno.ENOTCONN, "socket is not connected")
                error.__cause__ = exc
            else:
                error = exc
            self._settle(error)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._settle(exc)
        else:
            if sent == 0:  # end of file
                self._settle(None)
            else:
                self._offset += sent
                self._sent += sent

    def _settle(self, error: BaseException | None) -> None:
        try:
            self._update_file_position()
        except OSError as exc:
            if error is None:
                error = exc
        if error is None:
            self._fut.set_result(self._sent)
        else:
            self._fut.set_exception(error)

    def _update_file_position(self) -> None:
        if self._sent > 0:
            os.lseek(self._file_fd, self._offset, os.SEEK_SET)

    def _finished(self, fut: asyncio.Future[int]) -> None:
        handle = self._handle
        if handle is not None and not handle.cancelled():
            self._loop._remove_writer(self._fd)
        if fut.cancelled():
            try:
                self._update_file_position()
            except OSError:
                pass  # the file was closed meanwhile


# ---- the mixin ------------------------------------------------------------------


class SocketOpsMixin:
    """The loop's ``sock_*`` coroutines and DNS helpers (a mixin of BaseTrioEventLoop)."""

    if TYPE_CHECKING:
        _debug: bool
        _transports: TransportRegistry
        slow_callback_duration: float

        def create_future(self) -> asyncio.Future[Any]: ...
        def run_in_executor(
            self, executor: Any, func: Callable[..., Any], *args: Any
        ) -> asyncio.Future[Any]: ...
        def _add_reader(
            self, fd: Any, callback: Callable[..., object], *args: Any
        ) -> asyncio.Handle: ...
        def _add_writer(
            self, fd: Any, callback: Callable[..., object], *args: Any
        ) -> asyncio.Handle: ...
        def _remove_reader(self, fd: Any) -> bool: ...
        def _remove_writer(self, fd: Any) -> bool: ...

    # ---- shared checks and waits ----------------------------------------------

    def _check_sock(self, sock: socket.socket) -> None:
        """Refuse TLS sockets, and (in debug mode, like the stdlib) blocking ones."""
        if _SSLSocket is not None and isinstance(sock, _SSLSocket):
            raise TypeError("Socket cannot be of type SSLSocket")
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _wait_readable(
        self, sock: socket.socket, callback: Callable[..., None], *args: Any
    ) -> asyncio.Future[Any]:
        """A future that ``callback(future, *args)`` completes, called whenever *sock* is readable."""
        fd = sock.fileno()
        self._transports.check_free(fd)
        fut = self.create_future()
        handle = self._add_reader(fd, callback, fut, *args)
        fut.add_done_callback(partial(_forget_reader, self, fd, handle), context=_Context())
        return fut

    def _wait_writable(
        self, sock: socket.socket, callback: Callable[..., None], *args: Any
    ) -> asyncio.Future[Any]:
        """A future that ``callback(future, *args)`` completes, called whenever *sock* is writable."""
        fd = sock.fileno()
        self._transports.check_free(fd)
        fut = self.create_future()
        handle = self._add_writer(fd, callback, fut, *args)
        fut.add_done_callback(partial(_forget_writer, self, fd, handle), context=_Context())
        return fut

    # ---- receiving ---------------------------------------------------------------

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Receive up to *n* bytes from *sock*; asyncio-flavoured.

        Returns ``b""`` at end of stream, like ``socket.recv``.
        """
        self._check_sock(sock)
        try:
            return sock.recv(n)
        except _RETRY:
            pass
        return await self._wait_readable(sock, _retry_method_when_ready, sock, "recv", n)  # type: ignore[no-any-return]

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """Receive into the writable buffer *buf*; return the byte count. asyncio-flavoured."""
        self._check_sock(sock)
        try:
            return sock.recv_into(buf)
        except _RETRY:
            pass
        return await self._wait_readable(sock, _retry_method_when_ready, sock, "recv_into", buf)  # type: ignore[no-any-return]

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to *bufsize* bytes: ``(data, address)``. asyncio-flavoured."""
        self._check_sock(sock)
        try:
            return sock.recvfrom(bufsize)
        except _RETRY:
            pass
        return await self._wait_readable(sock, _retry_method_when_ready, sock, "recvfrom", bufsize)  # type: ignore[no-any-return]

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: Any, nbytes: int = 0
    ) -> tuple[int, Any]:
        """Receive a datagram into *buf*: ``(nbytes, address)``. asyncio-flavoured.

        At most *nbytes* bytes are written (all of *buf* when 0).
        """
        self._check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except _RETRY:
            pass
        return await self._wait_readable(  # type: ignore[no-any-return]
            sock, _retry_method_when_ready, sock, "recvfrom_into", buf, nbytes
        )

    # ---- sending ------------------------------------------------------------------

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """Send all of the bytes-like *data*, waiting for the peer as needed. asyncio-flavoured.

        On error (or cancellation) there is no telling how much was sent.
        """
        self._check_sock(sock)
        try:
            sent = sock.send(data)
        except _RETRY:
            sent = 0
        cls = type(data)
        if cls is bytes or cls is bytearray:
            if sent == len(data):
                return
            view = memoryview(data)
        else:
            # Count in bytes whatever the buffer's item format or shape
            # (send() accepted it, so it is C-contiguous).
            view = memoryview(data)
            if view.itemsize != 1 or view.ndim != 1:
                view = view.cast("B")
            if sent == len(view):
                return
        await self._wait_writable(sock, _send_rest, sock, [view[sent:]])

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        """Send a datagram to *address*; return the number of bytes sent. asyncio-flavoured."""
        self._check_sock(sock)
        try:
            return sock.sendto(data, address)
        except _RETRY:
            pass
        return await self._wait_writable(  # type: ignore[no-any-return]
            sock, _retry_method_when_ready, sock, "sendto", data, address
        )

    # ---- connecting and accepting ----------------------------------------------

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect *sock* to *address*, resolving a host name first. asyncio-flavoured.

        For IPv4/IPv6 sockets a non-numeric host is looked up with
        :meth:`getaddrinfo` (in the socket's family) and the first result is
        used. A failure reported once the attempt has started is an
        :exc:`OSError` (a subclass such as :exc:`ConnectionRefusedError`)
        whose message is ``"Connect call failed <address>"``.
        """
        self._check_sock(sock)
        family = sock.family
        if family == _AF_INET or (_HAS_IPV6 and family == _AF_INET6):
            host, port = address[:2]
            info = numeric_addrinfo(host, port, family, sock.type, sock.proto, *address[2:])
            if info is None:
                infos = await self.getaddrinfo(
                    host, port, family=family, type=sock.type, proto=sock.proto
                )
                info = infos[0]
            address = info[4]
        try:
            sock.connect(address)
        except _RETRY:
            # EINPROGRESS (or EINTR): the attempt goes on in the background
            # and its outcome shows when the socket becomes writable.
            pass
        else:
            return
        await self._wait_writable(sock, _connect_finished, sock, address)

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """Accept a connection on a listening *sock*: ``(conn, address)``. asyncio-flavoured.

        *conn* is a new non-blocking socket.
        """
        self._check_sock(sock)
        try:
            conn, address = sock.accept()
        except _RETRY:
            return await self._wait_readable(sock, _retry_when_ready, _accept_nonblocking, sock)  # type: ignore[no-any-return]
        conn.setblocking(False)
        return conn, address

    # ---- sendfile --------------------------------------------------------------------

    async def sock_sendfile(
        self,
        sock: socket.socket,
        file: Any,
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        """Send *file* (from *offset*, *count* bytes or to EOF) over a stream socket.

        asyncio-flavoured. Uses ``os.sendfile`` when the file is a regular
        file with a descriptor; otherwise raises
        :exc:`asyncio.SendfileNotAvailableError`, or with *fallback* reads the
        file (in the default executor) and sends it with :meth:`sock_sendall`.
        Returns the number of bytes sent; the file's position is left just
        after the last byte sent.
        """
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if _SSLSocket is not None and isinstance(sock, _SSLSocket):
            raise TypeError("Socket cannot be of type SSLSocket")
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    def _check_sendfile_params(
        self, sock: socket.socket, file: Any, offset: int, count: int | None
    ) -> None:
        """Argument checks shared by sock_sendfile and the transport ``sendfile``."""
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if sock.type != _SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if count is not None:
            if not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if not isinstance(offset, int):
            raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
        if offset < 0:
            raise ValueError(f"offset must be a non-negative integer (got {offset!r})")

    async def _sock_sendfile_native(
        self, sock: socket.socket, file: Any, offset: int, count: int | None
    ) -> int:
        if not hasattr(os, "sendfile"):
            raise asyncio.SendfileNotAvailableError("os.sendfile() is not available")
        try:
            file_fd = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise asyncio.SendfileNotAvailableError("not a regular file") from None
        try:
            size = os.fstat(file_fd).st_size
        except OSError:
            raise asyncio.SendfileNotAvailableError("not a regular file") from None
        blocksize = count if count else size
        if not blocksize:
            return 0  # empty file
        # One call may not ask for more than a ssize_t holds (32-bit systems).
        blocksize = min(blocksize, sys.maxsize // 2 + 1)
        job = _NativeSendfile(self, sock.fileno(), file_fd, offset, count)
        return await job.start(blocksize)

    async def _sock_sendfile_fallback(
        self, sock: socket.socket, file: Any, offset: int, count: int | None
    ) -> int:
        if offset:
            file.seek(offset)
        chunk = min(count, SENDFILE_FALLBACK_BLOCK) if count else SENDFILE_FALLBACK_BLOCK
        buffer = memoryview(bytearray(chunk))
        total = 0
        try:
            while True:
                want = chunk
                if count:
                    want = min(count - total, chunk)
                    if want <= 0:
                        break
                got = await self.run_in_executor(None, file.readinto, buffer[:want])
                if not got:
                    break  # end of file
                await self.sock_sendall(sock, buffer[:got])
                total += got
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    # ---- DNS ------------------------------------------------------------------------------

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """``socket.getaddrinfo``, run in the default executor. asyncio-flavoured.

        In debug mode the lookup is logged, at INFO level when it took at
        least ``slow_callback_duration``.
        """
        lookup = self._getaddrinfo_logged if self._debug else socket.getaddrinfo
        return await self.run_in_executor(None, lookup, host, port, family, type, proto, flags)  # type: ignore[no-any-return]

    def _getaddrinfo_logged(
        self, host: Any, port: Any, family: int, type: int, proto: int, flags: int
    ) -> list[AddrInfo]:
        # Runs in a worker thread: time it with the real clock, not loop.time()
        # (which may be Trio's, callable only in Trio's thread).
        what = _describe_lookup(host, port, family, type, proto, flags)
        logger.debug("Get address info %s", what)
        started = time.monotonic()
        infos = socket.getaddrinfo(host, port, family, type, proto, flags)
        took = time.monotonic() - started
        level = logging.INFO if took >= self.slow_callback_duration else logging.DEBUG
        logger.log(level, "Getting address info %s took %.3fms: %r", what, took * 1e3, infos)
        return infos  # type: ignore[return-value]

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        """``socket.getnameinfo``, run in the default executor. asyncio-flavoured."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)  # type: ignore[no-any-return]

    async def _ensure_resolved(
        self,
        address: tuple[Any, ...],
        *,
        family: int = 0,
        type: int = _SOCK_STREAM,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """Addrinfos for *address*: itself when numeric, else a getaddrinfo lookup.

        asyncio-flavoured; for the connection and datagram helpers.
        """
        host, port = address[:2]
        info = numeric_addrinfo(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        return await self.getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )
