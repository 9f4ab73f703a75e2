"""Stream connections and servers: create_connection, create_server, create_unix_connection, create_unix_server, connect_accepted_socket, sendfile.

Name resolution and connecting go through the loop's own ``getaddrinfo`` /
``sock_connect`` (``_sockets``); numeric addresses skip the resolver.
Connected sockets become :class:`SocketTransport` objects; with ``ssl=`` a
:class:`TLSProtocol` sits between that raw transport and the application's
protocol, and the caller gets the TLS layer's transport.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import socket
import ssl as _ssl
import stat
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ._server import Server
from ._stream import SocketTransport
from ._tls import TLSProtocol

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

logger = logging.getLogger("asyncio")

_HAS_IPV6 = hasattr(socket, "AF_INET6")
# Read size of the sendfile fallback (the stdlib's transport-level value).
_SENDFILE_FALLBACK_BLOCK = 16 * 1024
# 3.13 words bind errors with str(exc) and skips addresses that are not
# available (such as IPv6 when it is disabled) instead of failing.
_PY313 = sys.version_info >= (3, 13)
# create_unix_server() removes its socket file at close by default from 3.13.
_CLEANUP_SOCKET_DEFAULT = _PY313

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def _check_ssl_socket(sock: Any) -> None:
    if isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _bind_reason(exc: OSError) -> str:
    if _PY313 or not exc.strerror:
        return str(exc).lower()
    return exc.strerror.lower()


def _interleave_by_family(infos: list[Any], first_family_count: int) -> list[Any]:
    """Reorder addrinfos so families alternate, *first_family_count* of the first family leading."""
    groups: dict[int, collections.deque[Any]] = {}
    for info in infos:
        groups.setdefault(info[0], collections.deque()).append(info)
    queues = list(groups.values())
    ordered = []
    first = queues[0]
    for _ in range(min(first_family_count - 1, len(first))):
        ordered.append(first.popleft())
    while queues:
        for queue in queues:
            ordered.append(queue.popleft())
        queues = [queue for queue in queues if queue]
    return ordered


def _set_reuseport(sock: socket.socket) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        ) from None


def _is_abstract_unix_path(path: Any) -> bool:
    return not path or path[0] in (0, "\x00")


def _can_fall_back(transport: Any) -> bool:
    """Whether the sendfile fallback can drive *transport*: a two-way transport
    that implements reading control (so its protocol can be swapped while
    reading is paused), such as a TLS transport."""
    if not isinstance(transport, asyncio.Transport) or isinstance(
        transport, asyncio.DatagramTransport
    ):
        return False
    cls = type(transport)
    return all(
        getattr(cls, name) is not getattr(asyncio.ReadTransport, name)
        for name in ("is_reading", "pause_reading", "resume_reading", "set_protocol")
    )


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _SendfileFlow(asyncio.Protocol):
    """Stands in for a transport's protocol while the sendfile fallback writes.

    Reading is paused; write flow control is turned into an awaitable
    :meth:`drain`. :meth:`restore` puts the application's protocol back and
    tells it about any change of the pause state it missed meanwhile.
    """

    def __init__(self, loop: Any, transport: asyncio.Transport) -> None:
        self._loop = loop
        self._transport = transport
        self._app = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        self._app_paused = bool(getattr(transport, "_protocol_paused", False))
        self._lost = False
        self._ready: asyncio.Future[None] | None = None
        if self._app_paused:
            self._ready = loop.create_future()
        transport.pause_reading()
        transport.set_protocol(self)

    async def drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._ready is not None:
            await asyncio.shield(self._ready)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_exception(exc or ConnectionError("Connection is closed by peer"))
            _mark_retrieved(ready)
        self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._ready is None:
            self._ready = self._loop.create_future()

    def resume_writing(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> bool | None:
        raise RuntimeError("Invalid state: reading should be paused")

    def restore(self) -> None:
        transport = self._transport
        transport.set_protocol(self._app)
        if self._resume_reading:
            transport.resume_reading()
        paused_now = self._ready is not None
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        self._ready = None
        if self._lost:
            return
        # The application saw no pause/resume calls while we stood in: bring
        # it in line with the transport's state now.
        if self._app_paused and not paused_now:
            self._app.resume_writing()
        elif paused_now and not self._app_paused:
            self._app.pause_writing()


class ConnectionsMixin:
    """Stream connections, servers and transport-level sendfile (mixin of the loop)."""

    # ---- shared helpers -------------------------------------------------------------

    async def _open_stream(
        self,
        sock: socket.socket,
        protocol_factory: ProtocolFactory,
        ssl: Any,
        server_hostname: str | None,
        *,
        server_side: bool = False,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """Wrap a connected socket in a transport; return when the protocol is connected."""
        loop: Any = self
        try:
            sock.setblocking(False)
            protocol = protocol_factory()
            waiter = loop.create_future()
            if ssl:
                tls = TLSProtocol(
                    loop,
                    protocol,
                    None if isinstance(ssl, bool) else ssl,
                    waiter,
                    server_side=server_side,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout,
                )
                raw = SocketTransport(loop, sock, tls)
                transport = tls.app_transport
            else:
                raw = transport = SocketTransport(loop, sock, protocol, waiter)
        except BaseException:
            sock.close()
            raise
        try:
            await waiter
        except BaseException:
            if ssl:
                raw.abort()  # an unfinished handshake: nothing to flush
            else:
                raw.close()
            raise
        return transport, protocol

    async def _connect_one(
        self,
        exceptions: list[list[OSError]],
        addr_info: Any,
        local_infos: list[Any] | None,
    ) -> socket.socket:
        """Create, bind (to a local address of the same family) and connect one socket."""
        errors: list[OSError] = []
        exceptions.append(errors)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_infos is not None:
                bind_errors: list[OSError] = []
                for local_family, _, _, _, local_address in local_infos:
                    if local_family != family:
                        continue
                    try:
                        sock.bind(local_address)
                    except OSError as exc:
                        message = (
                            f"error while attempting to bind on address "
                            f"{local_address!r}: {_bind_reason(exc)}"
                        )
                        bind_errors.append(OSError(exc.errno, message))
                    else:
                        break
                else:
                    if not bind_errors:
                        raise OSError(f"no matching local address with family={family!r} found")
                    errors.extend(bind_errors[:-1])
                    raise bind_errors[-1]
            await self.sock_connect(sock, address)  # type: ignore[attr-defined]
            return sock
        except OSError as exc:
            errors.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            # The error's traceback holds this frame: without this, the
            # frame's lists would hold the error in a reference cycle.
            errors = exceptions = bind_errors = None  # type: ignore[assignment]

    async def _connect_staggered(
        self,
        infos: list[Any],
        local_infos: list[Any] | None,
        delay: float,
        exceptions: list[list[OSError]],
    ) -> socket.socket | None:
        """Happy eyeballs (RFC 8305): start the next attempt when the latest one
        fails or after *delay* seconds, whichever comes first; the first
        connected socket wins and the other attempts are cancelled."""
        loop: Any = self
        todo = collections.deque(infos)
        running: set[asyncio.Task[socket.socket]] = set()
        latest: asyncio.Task[socket.socket] | None = None
        next_start = 0.0
        winner: socket.socket | None = None
        try:
            while True:
                now = loop.time()
                if todo and (latest is None or latest.done() or now >= next_start):
                    latest = loop.create_task(
                        self._connect_one(exceptions, todo.popleft(), local_infos)
                    )
                    running.add(latest)
                    next_start = now + delay
                if not running:
                    return None
                timeout = max(0.0, next_start - loop.time()) if todo else None
                done, running = await asyncio.wait(
                    running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                failure: BaseException | None = None
                for task in done:
                    if task.cancelled():
                        continue
                    exc = task.exception()
                    if exc is None:
                        if winner is None:
                            winner = task.result()
                        else:
                            task.result().close()
                    elif not isinstance(exc, OSError) and failure is None:
                        failure = exc
                if winner is not None:
                    if failure is not None:
                        winner.close()
                        raise failure
                    return winner
                if failure is not None:
                    raise failure
        finally:
            for task in running:
                task.cancel()  # each closes its own socket when cancelled

    def _raise_connect_errors(self, exceptions: list[list[OSError]], all_errors: bool) -> None:
        errors = [exc for attempt in exceptions for exc in attempt]
        try:
            if all_errors:
                raise ExceptionGroup("create_connection failed", errors)
            if len(errors) == 1:
                raise errors[0]
            first = str(errors[0])
            if all(str(exc) == first for exc in errors):
                raise errors[0]
            raise OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in errors)))
        finally:
            # The error's traceback holds this frame: break the cycle.
            errors = exceptions = None  # type: ignore[assignment]

    # ---- TCP ------------------------------------------------------------------------

    async def create_connection(
        self,
        protocol_factory: ProtocolFactory,
        host: str | None = None,
        port: int | str | None = None,
        *,
        ssl: Any = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: socket.socket | None = None,
        local_addr: tuple[Any, ...] | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: float | None = None,
        interleave: int | None = None,
        all_errors: bool = False,
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """Open a TCP connection (or use *sock*); return ``(transport, protocol)``.

        Asyncio-flavoured. Addresses are tried in turn, or staggered by
        *happy_eyeballs_delay* seconds (families interleaved by
        *interleave*). When every attempt fails, the error is the one
        error, or an :exc:`OSError` combining distinct messages, or with
        *all_errors* an :exc:`ExceptionGroup` of them all.
        """
        loop: Any = self
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            # Verify the host we connect to. Pass server_hostname='' to skip
            # the check (needed when there is no host, e.g. with sock=).
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            _check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1  # with happy eyeballs, alternate families by default

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await loop._ensure_resolved(
                (host, port), family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
            )
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            local_infos = None
            if local_addr is not None:
                local_infos = await loop._ensure_resolved(
                    local_addr,
                    family=family,
                    type=socket.SOCK_STREAM,
                    proto=proto,
                    flags=flags,
                )
                if not local_infos:
                    raise OSError("getaddrinfo() returned empty list")
            if interleave:
                infos = _interleave_by_family(list(infos), interleave)

            exceptions: list[list[OSError]] = []
            if happy_eyeballs_delay is None:
                for info in infos:
                    try:
                        sock = await self._connect_one(exceptions, info, local_infos)
                        break
                    except OSError:
                        continue
            else:
                sock = await self._connect_staggered(
                    infos, local_infos, happy_eyeballs_delay, exceptions
                )
            if sock is None:
                try:
                    self._raise_connect_errors(exceptions, all_errors)
                finally:
                    exceptions = None  # type: ignore[assignment]
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                # AF_UNIX stream sockets are accepted too, as by the stdlib.
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")

        transport, protocol = await self._open_stream(
            sock,  # type: ignore[arg-type]
            protocol_factory,
            ssl,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        if loop._debug:
            logger.debug(
                "%r connected to %s:%r: (%r, %r)",
                transport.get_extra_info("socket"),
                host,
                port,
                transport,
                protocol,
            )
        return transport, protocol

    async def _resolve_for_server(self, host: Any, port: Any, family: int, flags: int) -> list[Any]:
        infos = await self._ensure_resolved(  # type: ignore[attr-defined]
            (host, port), family=family, type=socket.SOCK_STREAM, flags=flags
        )
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos  # type: ignore[no-any-return]

    async def create_server(
        self,
        protocol_factory: ProtocolFactory,
        host: str | Iterable[str] | None = None,
        port: int | str | None = None,
        *,
        family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        keep_alive: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> Server:
        """Listen on *host* (a name, a sequence of them, or all interfaces) and *port*.

        Asyncio-flavoured. Binds one socket per distinct address (IPv6
        sockets are V6ONLY, so IPv4 and IPv6 do not clash); returns the
        :class:`Server`, already accepting unless *start_serving* is false.
        """
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            _check_ssl_socket(sock)

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            if host == "":
                hosts: list[Any] = [None]
            elif isinstance(host, str) or not isinstance(host, Iterable):
                hosts = [host]
            else:
                hosts = list(host)
            resolved = await asyncio.gather(
                *[self._resolve_for_server(h, port, family, flags) for h in hosts]
            )
            infos = set()
            for per_host in resolved:
                infos.update(per_host)
            sockets = self._bind_server_sockets(infos, reuse_address, reuse_port, keep_alive)
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]

        return await self._new_server(
            sockets,
            protocol_factory,
            ssl,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            start_serving,
        )

    def _bind_server_sockets(
        self,
        infos: set[Any],
        reuse_address: bool,
        reuse_port: bool | None,
        keep_alive: bool | None,
    ) -> list[socket.socket]:
        sockets: list[socket.socket] = []
        completed = False
        try:
            for af, socktype, proto, _, address in infos:
                try:
                    sock = socket.socket(af, socktype, proto)
                except OSError:
                    # Probably a family/type/protocol this host does not have.
                    if self._debug:  # type: ignore[attr-defined]
                        logger.warning(
                            "create_server() failed to create socket.socket(%r, %r, %r)",
                            af,
                            socktype,
                            proto,
                            exc_info=True,
                        )
                    continue
                sockets.append(sock)
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                if reuse_port:
                    _set_reuseport(sock)
                if keep_alive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    # Linux listens on both families with one IPv6 socket by
                    # default; we bind IPv4 separately.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                try:
                    sock.bind(address)
                except OSError as err:
                    message = (
                        f"error while attempting to bind on address {address!r}: "
                        f"{_bind_reason(err)}"
                    )
                    if _PY313 and err.errno == errno.EADDRNOTAVAIL:
                        # Assume this family is disabled on the host.
                        sockets.pop()
                        sock.close()
                        if self._debug:  # type: ignore[attr-defined]
                            logger.warning(message)
                        continue
                    raise OSError(err.errno, message) from None
            if _PY313 and not sockets:
                raise OSError(f"could not bind on any address out of {[i[4] for i in infos]!r}")
            completed = True
        finally:
            if not completed:
                for sock in sockets:
                    sock.close()
        return sockets

    async def _new_server(
        self,
        sockets: list[socket.socket],
        protocol_factory: ProtocolFactory,
        ssl: Any,
        backlog: int,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None,
        start_serving: bool,
        unix_cleanup: dict[socket.socket, tuple[Any, int]] | None = None,
    ) -> Server:
        for sock in sockets:
            sock.setblocking(False)
        server = Server(
            self,
            sockets,
            protocol_factory,
            ssl,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            unix_cleanup,
        )
        if start_serving:
            try:
                server._start_serving()
                # One loop iteration, as in the stdlib.
                await asyncio.sleep(0)
            except BaseException:
                # listen() refused (a bad backlog, say), or we were cancelled:
                # nobody will ever see this server, so its sockets are ours to
                # close (the stdlib leaks them).
                server.close()
                raise
        if self._debug:  # type: ignore[attr-defined]
            logger.info("%r is serving", server)
        return server

    async def connect_accepted_socket(
        self,
        protocol_factory: ProtocolFactory,
        sock: socket.socket,
        *,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """Wrap a socket accepted outside the loop (server side). Asyncio-flavoured."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        _check_ssl_socket(sock)
        transport, protocol = await self._open_stream(
            sock,
            protocol_factory,
            ssl,
            None,
            server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        if self._debug:  # type: ignore[attr-defined]
            logger.debug(
                "%r handled: (%r, %r)", transport.get_extra_info("socket"), transport, protocol
            )
        return transport, protocol

    # ---- Unix sockets -------------------------------------------------------------------

    async def create_unix_connection(
        self,
        protocol_factory: ProtocolFactory,
        path: str | bytes | os.PathLike[Any] | None = None,
        *,
        ssl: Any = None,
        sock: socket.socket | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """Connect to the Unix socket at *path* (or use *sock*). Asyncio-flavoured."""
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError(f"server_hostname must be a str or None, not {server_hostname!r}")
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")

        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)  # type: ignore[attr-defined]
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)

        return await self._open_stream(
            sock,
            protocol_factory,
            ssl,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    async def create_unix_server(
        self,
        protocol_factory: ProtocolFactory,
        path: str | bytes | os.PathLike[Any] | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
        cleanup_socket: bool = _CLEANUP_SOCKET_DEFAULT,
    ) -> Server:
        """Listen on the Unix socket *path* (or on *sock*). Asyncio-flavoured.

        A stale socket file at *path* is replaced. With *cleanup_socket*
        (the default from Python 3.13) closing the server removes the
        socket file, unless it was replaced meanwhile.
        """
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")

        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if not _is_abstract_unix_path(path):
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)  # left over by a previous server
                except FileNotFoundError:
                    pass
                except OSError as err:
                    # The directory may allow creating the socket but not this.
                    logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")

        cleanup: dict[socket.socket, tuple[Any, int]] = {}
        if cleanup_socket:
            bound = sock.getsockname()
            if not _is_abstract_unix_path(bound):
                try:
                    cleanup[sock] = (bound, os.stat(bound).st_ino)
                except FileNotFoundError:
                    pass

        return await self._new_server(
            [sock],
            protocol_factory,
            ssl,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            start_serving,
            cleanup,
        )

    # ---- sendfile ----------------------------------------------------------------------

    async def sendfile(
        self,
        transport: asyncio.WriteTransport,
        file: Any,
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        """Send *file* over *transport*; return the number of bytes sent. Asyncio-flavoured.

        Our socket transports use ``os.sendfile`` (after flushing what was
        written before; reading is paused meanwhile). Otherwise, or when the
        file does not allow it, *fallback* reads the file and writes it
        through the transport, honouring its flow control. The file's
        position ends just after the last byte sent.
        """
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        native = isinstance(transport, SocketTransport)
        if not native and not _can_fall_back(transport):
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if native:
            self._check_sendfile_params(  # type: ignore[attr-defined]
                transport._sock, file, offset, count
            )
            try:
                return await transport._sendfile_native(file, offset, count)  # type: ignore[union-attr]
            except asyncio.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not "
                f"supported for transport {transport!r}"
            )
        return await self._sendfile_fallback(transport, file, offset, count)  # type: ignore[arg-type]

    async def _sendfile_fallback(
        self, transport: asyncio.Transport, file: Any, offset: int, count: int | None
    ) -> int:
        loop: Any = self
        if offset:
            file.seek(offset)
        blocksize = min(count, _SENDFILE_FALLBACK_BLOCK) if count else _SENDFILE_FALLBACK_BLOCK
        buffer = memoryview(bytearray(blocksize))
        total = 0
        flow = _SendfileFlow(loop, transport)
        try:
            while True:
                want = blocksize
                if count:
                    want = min(count - total, blocksize)
                    if want <= 0:
                        return total
                got = await loop.run_in_executor(None, file.readinto, buffer[:want])
                if not got:
                    return total  # end of file
                await flow.drain()
                # A copy: the transport may keep what it cannot send yet.
                transport.write(bytes(buffer[:got]))
                total += got
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
            flow.restore()
