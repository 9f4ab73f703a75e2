"""``Server``: what create_server() and create_unix_server() return.

Accepting: when a listening socket is readable, up to *backlog* connections
are accepted in one go (as the stdlib does), each becoming a
:class:`SocketTransport` at once (TLS connections: a task that waits for the
handshake). When ``accept()`` fails for lack of resources (EMFILE, ENFILE,
ENOBUFS, ENOMEM) the error is reported, that socket stops accepting, and it
tries again :data:`ACCEPT_RETRY_DELAY` seconds later.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import os
import socket
import sys
import weakref
from asyncio import trsock
from typing import Any

from ._stream import SocketTransport
from ._tls import TLSProtocol

logger = logging.getLogger("asyncio")

# Seconds before accepting again after accept() ran out of resources (the
# stdlib's value).
ACCEPT_RETRY_DELAY = 1.0

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# 3.12 changed wait_closed() to wait for the connections to end, even when
# called after close().
_WAIT_CLOSED_WAITS_FOR_CLIENTS = sys.version_info >= (3, 12)


class Server(asyncio.AbstractServer):
    """A listening server: one or more sockets sharing a protocol factory."""

    def __init__(
        self,
        loop: Any,
        sockets: list[socket.socket],
        protocol_factory: Any,
        ssl_context: Any,
        backlog: int,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None = None,
        unix_cleanup: dict[socket.socket, tuple[Any, int]] | None = None,
    ) -> None:
        self._loop = loop
        self._sockets: list[socket.socket] | None = sockets
        self._protocol_factory = protocol_factory
        self._ssl_context = ssl_context
        self._backlog = backlog
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        # Unix sockets whose file to remove at close: sock -> (path, inode).
        self._unix_cleanup = unix_cleanup or {}
        # Weak, so an abandoned transport can still be collected (and warn).
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        # wait_closed() futures; None once closed and every client is gone.
        self._waiters: list[asyncio.Future[None]] | None = []
        self._serving = False
        self._serving_forever_fut: asyncio.Future[None] | None = None
        self._retry_timers: dict[socket.socket, asyncio.TimerHandle] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # ---- connections ------------------------------------------------------------

    def _attach(self, transport: Any) -> None:
        self._clients.add(transport)

    def _detach(self, transport: Any) -> None:
        self._clients.discard(transport)
        if not self._clients and self._sockets is None:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # ---- accepting ------------------------------------------------------------

    def _start_serving(self) -> None:
        if self._serving or self._sockets is None:
            return
        self._serving = True
        for sock in self._sockets:
            sock.listen(self._backlog)
            self._loop._add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        # One readiness event: accept a batch, so a burst of connections
        # costs one wake-up.
        for _ in range(self._backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise  # reported by the loop, like any callback error
                self._out_of_resources(sock, exc)
                return
            self._new_connection(conn, addr)

    def _out_of_resources(self, sock: socket.socket, exc: OSError) -> None:
        loop = self._loop
        context = {
            "message": "socket.accept() out of system resource",
            "exception": exc,
            "socket": trsock.TransportSocket(sock),
        }
        # A transient condition the server recovers from: without a custom
        # handler it is logged, as by the stdlib, rather than treated as an
        # unhandled error (which ends an open_loop() block).
        if loop.get_exception_handler() is None:
            loop.default_exception_handler(context)
        else:
            loop.call_exception_handler(context)
        # The socket stays readable (level-triggered): stop watching it.
        loop._remove_reader(sock.fileno())
        self._retry_timers[sock] = loop.call_later(ACCEPT_RETRY_DELAY, self._retry_accepting, sock)

    def _retry_accepting(self, sock: socket.socket) -> None:
        self._retry_timers.pop(sock, None)
        if self._serving and self._sockets is not None and sock in self._sockets:
            self._loop._add_reader(sock.fileno(), self._accept, sock)

    def _new_connection(self, conn: socket.socket, addr: Any) -> None:
        extra = {"peername": addr}
        if self._ssl_context:
            self._loop.create_task(self._accept_tls(conn, extra))
        else:
            # Each connection gets its own context, as a task would give it.
            contextvars.copy_context().run(self._accept_plain, conn, extra)

    def _accept_plain(self, conn: socket.socket, extra: dict[str, Any]) -> None:
        protocol = None
        try:
            protocol = self._protocol_factory()
            SocketTransport(self._loop, conn, protocol, extra=extra, server=self)
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            self._report_accept_error(exc, protocol, None)

    async def _accept_tls(self, conn: socket.socket, extra: dict[str, Any]) -> None:
        loop = self._loop
        protocol = transport = None
        try:
            protocol = self._protocol_factory()
            waiter = loop.create_future()
            tls = TLSProtocol(
                loop,
                protocol,
                self._ssl_context,
                waiter,
                server_side=True,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
                ssl_shutdown_timeout=self._ssl_shutdown_timeout,
            )
            transport = SocketTransport(loop, conn, tls, extra=extra, server=self)
            try:
                await waiter
            except BaseException:
                transport.close()
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            self._report_accept_error(exc, protocol, transport)

    def _report_accept_error(self, exc: BaseException, protocol: Any, transport: Any) -> None:
        # Nobody is waiting for an incoming connection: as in the stdlib, a
        # failure to set one up is reported in debug mode only.
        if not self._loop.get_debug():
            return
        context: dict[str, Any] = {
            "message": "Error on transport creation for incoming connection",
            "exception": exc,
        }
        if protocol is not None:
            context["protocol"] = protocol
        if transport is not None:
            context["transport"] = transport
        self._loop.call_exception_handler(context)

    # ---- public API -------------------------------------------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop  # type: ignore[no-any-return]

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets, as read-only ``TransportSocket`` wrappers."""
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(sock) for sock in self._sockets)

    def close(self) -> None:
        """Stop listening and close the sockets; connections stay open."""
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        loop = self._loop
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        for sock in sockets:
            if not loop.is_closed():
                loop._remove_reader(sock.fileno())
            cleanup = self._unix_cleanup.pop(sock, None)
            sock.close()
            if cleanup is not None:
                _remove_socket_file(*cleanup)
        self._serving = False
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if not self._clients:
            self._wakeup()

    async def start_serving(self) -> None:
        """Start accepting connections (no-op if already serving). Asyncio-flavoured."""
        self._start_serving()
        # One loop iteration, as in the stdlib, so callers observe the same
        # scheduling.
        await asyncio.sleep(0)

    async def serve_forever(self) -> None:
        """Accept connections until cancelled; then close the server. Asyncio-flavoured."""
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self) -> None:
        """Wait until the server is closed (3.12+: and every connection is gone).

        Asyncio-flavoured. Follows the running Python: before 3.12 it
        returns at once when the server is already closed.
        """
        if self._waiters is None:
            return
        if not _WAIT_CLOSED_WAITS_FOR_CLIENTS and self._sockets is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    if sys.version_info >= (3, 13):

        def close_clients(self) -> None:
            """Close every connection accepted by this server (3.13+)."""
            for transport in list(self._clients):
                transport.close()

        def abort_clients(self) -> None:
            """Abort every connection accepted by this server (3.13+)."""
            for transport in list(self._clients):
                transport.abort()


def _remove_socket_file(path: Any, inode: int) -> None:
    """Remove a Unix server's socket file, unless something replaced it."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)
