"""The loop's low-level socket API (sock_*), sock_sendfile and DNS helpers.

Most scenarios run on both the stdlib selector loop and ours (``aio_run``),
with the same assertions: the stdlib is the reference. Tests that look at
our loop's internals, or at places where we deliberately differ, use
``trio_aio_run``. Synchronisation is by futures and queues, never by time.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import io
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _drivers import EVERY_DRIVER

import trio_asyncio
from trio_asyncio._io._sockets import numeric_addrinfo

LOCALHOST = "127.0.0.1"
BIG = 8 * 1024 * 1024  # more than any socket buffer: sendall must wait for the reader


# ---- helpers ---------------------------------------------------------------------


def nb_socketpair(family: int = socket.AF_UNIX) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(family)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@contextlib.contextmanager
def listener(family: int = socket.AF_INET) -> Iterator[socket.socket]:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind((LOCALHOST, 0) if family == socket.AF_INET else ("::1", 0))
        sock.listen(8)
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def closing_all(*socks: socket.socket) -> Iterator[None]:
    try:
        yield
    finally:
        for sock in socks:
            sock.close()


def nb_socket(family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(family, type)
    sock.setblocking(False)
    return sock


async def connected_tcp_pair(
    loop: asyncio.AbstractEventLoop, server: socket.socket
) -> tuple[socket.socket, socket.socket]:
    client = nb_socket()
    try:
        accepting = asyncio.ensure_future(loop.sock_accept(server))
        await loop.sock_connect(client, server.getsockname())
        conn, _ = await accepting
    except BaseException:
        client.close()
        raise
    return client, conn


async def recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = await loop.sock_recv_into(sock, view[got:])
        assert k, "unexpected EOF"
        got += k
    return bytes(buf)


def is_ours(loop: asyncio.AbstractEventLoop) -> bool:
    return isinstance(loop, trio_asyncio.BaseTrioEventLoop)


def registered(loop: Any, sock: socket.socket) -> bool:
    """Whether the fd is in our loop's selector (our internals)."""
    return sock.fileno() in loop._selector.get_map()


@pytest.fixture
def aio_run_311(aio_run: Callable[..., Any], request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``aio_run`` for APIs the stdlib only has from 3.11 (we provide them on 3.10 too)."""
    if request.node.callspec.params["aio_run"] == "stdlib" and sys.version_info < (3, 11):
        pytest.skip("the stdlib loop has no sock_recvfrom/sock_sendto before 3.11")
    return aio_run


# ---- receiving ---------------------------------------------------------------------


def test_recv_data_in_pieces_then_eof(aio_run: Callable[..., Any]) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            pieces = [b"abc", b"defgh", b"i"]
            received = asyncio.Queue()

            async def reader() -> None:
                while True:
                    chunk = await loop.sock_recv(a, 100)
                    received.put_nowait(chunk)
                    if not chunk:
                        return

            task = asyncio.ensure_future(reader())
            await asyncio.sleep(0)  # the reader now waits for data
            got = []
            for piece in pieces:
                b.send(piece)
                got.append(await received.get())
            b.shutdown(socket.SHUT_WR)
            got.append(await received.get())
            await task
            return got

    assert aio_run(main) == [b"abc", b"defgh", b"i", b""]


def test_recv_immediate_when_data_is_there(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            b.send(b"ready")
            assert await loop.sock_recv(a, 100) == b"ready"
            assert not registered(loop, a)

    trio_aio_run(main)


def test_recv_into_waits_and_fills_buffer(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            buf = bytearray(10)
            task = asyncio.ensure_future(loop.sock_recv_into(a, memoryview(buf)[2:]))
            await asyncio.sleep(0)
            assert not task.done()
            b.send(b"hello")
            return await task, bytes(buf)

    assert aio_run(main) == (5, b"\0\0hello\0\0\0")


def test_recv_error_is_raised(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        a.close()
        with closing_all(b), pytest.raises(OSError) as info:
            await loop.sock_recv(a, 10)
        assert info.value.errno == errno.EBADF

    aio_run(main)


# ---- sending ----------------------------------------------------------------------------


def test_sendall_waits_for_the_peer(aio_run: Callable[..., Any]) -> None:
    payload = os.urandom(BIG)

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            sending = asyncio.ensure_future(loop.sock_sendall(a, payload))
            for _ in range(3):
                await asyncio.sleep(0)
            assert not sending.done()  # the socket buffer is full: waiting for us
            received = await recv_exactly(loop, b, len(payload))
            assert await sending is None
            return received == payload

    assert aio_run(main)


def test_sendall_over_tcp(aio_run: Callable[..., Any]) -> None:
    payload = os.urandom(BIG // 2)

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        with listener() as server:
            client, conn = await connected_tcp_pair(loop, server)
            with closing_all(client, conn):
                sending = asyncio.ensure_future(loop.sock_sendall(client, payload))
                received = await recv_exactly(loop, conn, len(payload))
                await sending
                client.shutdown(socket.SHUT_WR)
                assert await loop.sock_recv(conn, 10) == b""
                return received == payload

    assert aio_run(main)


def test_sendall_empty_and_small(aio_run: Callable[..., Any]) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            await loop.sock_sendall(a, b"")
            await loop.sock_sendall(a, bytearray(b"12"))
            await loop.sock_sendall(a, memoryview(b"345"))
            return await recv_exactly(loop, b, 5)

    assert aio_run(main) == b"12345"


def test_sendall_counts_bytes_of_wide_buffers(trio_aio_run: Callable[..., Any]) -> None:
    # The stdlib compares bytes sent with len() of the buffer, which counts
    # items: with an array of ints it never finishes. We count bytes.
    data = array.array("i", range(1_000_000))  # ~4 MB: must wait for the reader

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            await loop.sock_sendall(a, array.array("i", [1, 2]))
            assert await recv_exactly(loop, b, 8) == array.array("i", [1, 2]).tobytes()
            sending = asyncio.ensure_future(loop.sock_sendall(a, data))
            received = await recv_exactly(loop, b, len(data) * data.itemsize)
            await sending
            assert received == data.tobytes()

    trio_aio_run(main)


def test_sendall_error_after_peer_closed(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a):
            sending = asyncio.ensure_future(loop.sock_sendall(a, b"x" * BIG))
            await asyncio.sleep(0)
            assert not sending.done()
            b.close()
            with pytest.raises(BrokenPipeError):
                await sending

    aio_run(main)


# ---- UDP ------------------------------------------------------------------------------------


def test_udp_sendto_recvfrom(aio_run_311: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = nb_socket(type=socket.SOCK_DGRAM)
        tx = nb_socket(type=socket.SOCK_DGRAM)
        with closing_all(rx, tx):
            rx.bind((LOCALHOST, 0))
            tx.bind((LOCALHOST, 0))
            receiving = asyncio.ensure_future(loop.sock_recvfrom(rx, 100))
            await asyncio.sleep(0)
            assert not receiving.done()
            assert await loop.sock_sendto(tx, b"datagram", rx.getsockname()) == 8
            assert await receiving == (b"datagram", tx.getsockname())

            buf = bytearray(8)
            receiving = asyncio.ensure_future(loop.sock_recvfrom_into(rx, buf, 4))
            await asyncio.sleep(0)
            assert not receiving.done()
            await loop.sock_sendto(tx, b"0123456789", rx.getsockname())
            assert await receiving == (4, tx.getsockname())
            assert buf == b"0123\0\0\0\0"

            await loop.sock_sendto(tx, b"abc", rx.getsockname())
            buf = bytearray(8)
            assert await loop.sock_recvfrom_into(rx, buf) == (3, tx.getsockname())
            assert buf[:3] == b"abc"

    aio_run_311(main)


class _RebindsSendto:
    """A socket wrapper whose first ``sendto`` blocks and rebinds ``sendto`` to the real one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sendto = self._blocked

    def _blocked(self, *args: Any) -> int:
        self.sendto = self._sock.sendto
        raise BlockingIOError

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_sendto_retry_looks_the_method_up_again(aio_run_311: Callable[..., Any]) -> None:
    """Each try calls ``sock.sendto`` afresh, as the stdlib does (it used to hang)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = nb_socket(type=socket.SOCK_DGRAM)
        tx = nb_socket(type=socket.SOCK_DGRAM)
        with closing_all(rx, tx):
            rx.bind((LOCALHOST, 0))
            wrapper: Any = _RebindsSendto(tx)
            sent = await asyncio.wait_for(loop.sock_sendto(wrapper, b"hi", rx.getsockname()), 5)
            assert sent == 2
            assert (await loop.sock_recvfrom(rx, 10))[0] == b"hi"

    aio_run_311(main)


# ---- connect and accept -------------------------------------------------------------------


def test_accept_and_connect(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with listener() as server:
            client = nb_socket()
            with closing_all(client):
                accepting = asyncio.ensure_future(loop.sock_accept(server))
                await asyncio.sleep(0)
                assert not accepting.done()
                await loop.sock_connect(client, server.getsockname())
                conn, address = await accepting
                with closing_all(conn):
                    assert conn.gettimeout() == 0
                    assert address == client.getsockname()
                    await loop.sock_sendall(client, b"ping")
                    assert await recv_exactly(loop, conn, 4) == b"ping"

    aio_run(main)


def test_accept_immediate_when_a_connection_is_pending(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with listener() as server:
            client = socket.create_connection(server.getsockname())
            with closing_all(client):
                conn, address = await loop.sock_accept(server)
                with closing_all(conn):
                    assert conn.gettimeout() == 0
                    assert address == client.getsockname()

    aio_run(main)


def test_connect_refused(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # Bound but not listening: connections to it are refused.
        taken = socket.socket()
        client = nb_socket()
        with closing_all(taken, client):
            taken.bind((LOCALHOST, 0))
            address = taken.getsockname()
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.sock_connect(client, address)
            assert info.value.errno == errno.ECONNREFUSED
            assert info.value.strerror == f"Connect call failed {address}"
            assert str(info.value) == f"[Errno {errno.ECONNREFUSED}] Connect call failed {address}"

    aio_run(main)


def test_connect_resolves_names_only_when_needed(aio_run: Callable[..., Any]) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        lookups = []
        real_getaddrinfo = loop.getaddrinfo

        async def counting_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
            lookups.append((args, kwargs))
            return await real_getaddrinfo(*args, **kwargs)

        loop.getaddrinfo = counting_getaddrinfo  # type: ignore[method-assign]
        try:
            with listener() as server:
                port = server.getsockname()[1]
                for host in ("localhost", LOCALHOST):
                    client = nb_socket()
                    with closing_all(client):
                        accepting = asyncio.ensure_future(loop.sock_accept(server))
                        await loop.sock_connect(client, (host, port))
                        conn, _ = await accepting
                        conn.close()
                        assert client.getpeername() == (LOCALHOST, port)
        finally:
            del loop.getaddrinfo
        return lookups

    lookups = aio_run(main)
    assert len(lookups) == 1
    args, kwargs = lookups[0]
    assert args[0] == "localhost"
    assert kwargs["family"] == socket.AF_INET
    assert kwargs["type"] == socket.SOCK_STREAM


def test_connect_ipv6_loopback(aio_run: Callable[..., Any]) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with listener(socket.AF_INET6) as server:
            client = nb_socket(socket.AF_INET6)
            with closing_all(client):
                accepting = asyncio.ensure_future(loop.sock_accept(server))
                await loop.sock_connect(client, server.getsockname()[:2])
                conn, address = await accepting
                conn.close()
                assert address == client.getsockname()

    aio_run(main)


def test_connect_unix_socket(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    if len(path) > 100:
        pytest.skip("temporary path too long for AF_UNIX")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = nb_socket(socket.AF_UNIX)
        client = nb_socket(socket.AF_UNIX)
        with closing_all(server, client):
            server.bind(path)
            server.listen(1)
            accepting = asyncio.ensure_future(loop.sock_accept(server))
            await loop.sock_connect(client, path)
            conn, _ = await accepting
            with closing_all(conn):
                await loop.sock_sendall(conn, b"unix")
                assert await loop.sock_recv(client, 10) == b"unix"
        os.unlink(path)

    aio_run(main)


# ---- cancellation ------------------------------------------------------------------------


def test_cancel_recv_then_add_reader_works(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            readable = loop.create_future()
            loop.add_reader(a.fileno(), readable.set_result, "readable")
            b.send(b"x")
            assert await readable == "readable"
            assert loop.remove_reader(a.fileno())
            assert await loop.sock_recv(a, 10) == b"x"  # the cancelled recv took nothing

    aio_run(main)


# ---- add_reader / add_writer with socket objects ---------------------------------------


@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_closed_socket_is_still_removable(
    aio_run_every_driver: Callable[..., Any], kind: str
) -> None:
    # anyio closes a socket, then removes its callback with the socket
    # object, whose fileno() is now -1: it is found by identity.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        add, remove = getattr(loop, f"add_{kind}"), getattr(loop, f"remove_{kind}")
        a, b = nb_socketpair()
        with closing_all(a, b):
            add(a, lambda: None)
            a.close()
            assert remove(a) is True
        with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
            remove(a)  # no longer registered: nothing to find it by

    aio_run_every_driver(main)


def test_socket_object_and_its_fd_are_one_registration(
    aio_run_every_driver: Callable[..., Any],
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            readable = loop.create_future()
            loop.add_reader(a, readable.set_result, "by object")
            loop.add_writer(a.fileno(), lambda: None)
            b.send(b"x")
            assert await readable == "by object"
            assert loop.remove_reader(a.fileno()) is True
            assert loop.remove_writer(a) is True
            assert loop.remove_reader(a) is False

    aio_run_every_driver(main)


@pytest.mark.parametrize("operation", ["recv", "recv_into", "sendall", "accept", "connect"])
def test_cancel_leaves_no_registration(trio_aio_run: Callable[..., Any], operation: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with listener() as server, closing_all(a, b):
            refused = socket.socket()
            client = nb_socket()
            with closing_all(refused, client):
                refused.bind((LOCALHOST, 0))
                watched, coro = {
                    "recv": (a, lambda: loop.sock_recv(a, 10)),
                    "recv_into": (a, lambda: loop.sock_recv_into(a, bytearray(10))),
                    "sendall": (a, lambda: loop.sock_sendall(a, b"x" * BIG)),
                    "accept": (server, lambda: loop.sock_accept(server)),
                    "connect": (client, lambda: loop.sock_connect(client, refused.getsockname())),
                }[operation]
                task = asyncio.ensure_future(coro())
                await asyncio.sleep(0)
                assert registered(loop, watched)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert not registered(loop, watched)
                assert loop._fd_count == 0

    trio_aio_run(main)


def test_completed_operation_leaves_no_registration(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            assert registered(loop, a)
            b.send(b"x")
            assert await task == b"x"
            assert not registered(loop, a)
            sending = asyncio.ensure_future(loop.sock_sendall(a, b"y" * BIG))
            await recv_exactly(loop, b, BIG)
            await sending
            assert loop._fd_count == 0

    trio_aio_run(main)


def _first_step_in_a_thread(coro: Any) -> BaseException | None:
    """Run *coro*'s first step in this (foreign) thread; the error it raised, if any."""
    try:
        coro.send(None)
    except StopIteration:
        return None
    except BaseException as exc:
        return exc
    finally:
        coro.close()
    return None


@pytest.mark.parametrize("driver", ["trio_asyncio", "sync"])
@pytest.mark.parametrize("operation", ["recv", "sendall"])
def test_waiting_from_a_foreign_thread_is_refused(driver: str, operation: str) -> None:
    """A sock_* call that has to wait, made from another thread, fails before registering.

    Ours only (the stdlib does not check). On the Trio-hosted loop the
    registration used to reschedule the scheduler task from that thread,
    which hung the Trio run.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            call = {
                "recv": lambda: loop.sock_recv(a, 10),
                "sendall": lambda: loop.sock_sendall(a, b"x" * BIG),
            }[operation]
            error = await loop.run_in_executor(None, _first_step_in_a_thread, call())
            assert isinstance(error, RuntimeError)
            assert "Non-thread-safe operation" in str(error)
            assert not registered(loop, a)
            assert loop._fd_count == 0
            # The loop is unharmed: the same wait works from its own thread.
            if operation == "recv":
                b.send(b"y")
                assert await loop.sock_recv(a, 10) == b"y"
            else:
                with contextlib.suppress(BlockingIOError):
                    while b.recv(BIG):  # what the refused call sent before waiting
                        pass
                sending = asyncio.ensure_future(loop.sock_sendall(a, b"y" * BIG))
                await recv_exactly(loop, b, BIG)
                await sending

    EVERY_DRIVER[driver](main)


def test_waiting_on_a_closed_loop_says_it_is_closed() -> None:
    loop = trio_asyncio.new_event_loop()
    loop.close()
    a, b = nb_socketpair()
    with closing_all(a, b):
        coro = loop.sock_recv(a, 10)
        with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
            coro.send(None)  # "Selector is closed", before
        coro.close()


def test_fd_of_a_transport_is_refused(trio_aio_run: Callable[..., Any]) -> None:
    class FakeTransport:
        def is_closing(self) -> bool:
            return False

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            transport = FakeTransport()
            loop._transports.add(a.fileno(), transport)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv(a, 10)
            assert not registered(loop, a)
            loop._transports.discard(a.fileno(), transport)

    trio_aio_run(main)


# ---- argument checks ---------------------------------------------------------------------


def _all_operations(loop: Any, sock: socket.socket, tmp: io.BytesIO) -> dict[str, Any]:
    ops = {
        "recv": lambda: loop.sock_recv(sock, 1),
        "recv_into": lambda: loop.sock_recv_into(sock, bytearray(1)),
        "sendall": lambda: loop.sock_sendall(sock, b"x"),
        "connect": lambda: loop.sock_connect(sock, (LOCALHOST, 1)),
        "accept": lambda: loop.sock_accept(sock),
        "sendfile": lambda: loop.sock_sendfile(sock, tmp),
    }
    if is_ours(loop) or sys.version_info >= (3, 11):
        ops.update(
            recvfrom=lambda: loop.sock_recvfrom(sock, 1),
            recvfrom_into=lambda: loop.sock_recvfrom_into(sock, bytearray(1)),
            sendto=lambda: loop.sock_sendto(sock, b"x", (LOCALHOST, 1)),
        )
    return ops


def test_blocking_socket_refused_in_debug_mode(aio_run: Callable[..., Any]) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        sock = socket.socket()  # blocking
        with closing_all(sock):
            ops = _all_operations(loop, sock, io.BytesIO(b"data"))
            for op in ops.values():
                with pytest.raises(ValueError, match=r"^the socket must be non-blocking$"):
                    await op()
        loop.set_debug(False)
        return len(ops)

    assert aio_run(main) >= 6


def test_ssl_socket_refused(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        raw = nb_socket()
        with closing_all(raw):
            sock = context.wrap_socket(
                raw, server_hostname="example.invalid", do_handshake_on_connect=False
            )
            with closing_all(sock):
                for op in _all_operations(loop, sock, io.BytesIO(b"data")).values():
                    with pytest.raises(TypeError, match=r"^Socket cannot be of type SSLSocket$"):
                        await op()

    aio_run(main)


# ---- sendfile -------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    return path, content


async def _sendfile_and_read(
    loop: Any, file: Any, size: int, **kwargs: Any
) -> tuple[int, bytes, int]:
    a, b = nb_socketpair()
    with closing_all(a, b):
        sending = asyncio.ensure_future(loop.sock_sendfile(a, file, **kwargs))
        received = await recv_exactly(loop, b, size)
        sent = await sending
        return sent, received, file.tell()


@pytest.mark.parametrize("fallback", [True, False])
def test_sendfile_regular_file(
    aio_run: Callable[..., Any], data_file: tuple[Path, bytes], fallback: bool
) -> None:
    path, content = data_file

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with open(path, "rb") as f:
            sent, received, position = await _sendfile_and_read(
                loop, f, len(content), fallback=fallback
            )
            assert (sent, position) == (len(content), len(content))
            assert received == content

            sent, received, position = await _sendfile_and_read(
                loop, f, 500_000, offset=1000, count=500_000, fallback=fallback
            )
            assert (sent, position) == (500_000, 501_000)
            assert received == content[1000:501_000]

            # A count past the end stops at the end of the file.
            sent, received, position = await _sendfile_and_read(
                loop, f, 10, offset=len(content) - 10, count=1000, fallback=fallback
            )
            assert (sent, position, received) == (10, len(content), content[-10:])

    aio_run(main)


def test_sendfile_empty_file(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b), open(path, "rb") as f:
            return await loop.sock_sendfile(a, f, fallback=False)

    assert aio_run(main) == 0


def test_sendfile_fallback_for_file_without_fd(aio_run: Callable[..., Any]) -> None:
    content = os.urandom(600_000)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b):
            with pytest.raises(asyncio.SendfileNotAvailableError, match="not a regular file"):
                await loop.sock_sendfile(a, io.BytesIO(content), fallback=False)
        f = io.BytesIO(content)
        sent, received, position = await _sendfile_and_read(loop, f, len(content))
        assert (sent, position, received) == (len(content), len(content), content)
        sent, received, position = await _sendfile_and_read(
            loop, f, 300_000, offset=7, count=300_000
        )
        assert (sent, position, received) == (300_000, 300_007, content[7:300_007])

    aio_run(main)


class _PipeReader:
    """A binary file-like object with a real fd that os.sendfile refuses (a pipe), no seek."""

    mode = "rb"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buf: Any) -> int:
        return os.readv(self._fd, [buf])


def test_sendfile_falls_back_when_os_sendfile_fails(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        try:
            os.write(w, b"through a pipe")
            os.close(w)
            w = -1
            reader = _PipeReader(r)
            a, b = nb_socketpair()
            with closing_all(a, b):
                with pytest.raises(asyncio.SendfileNotAvailableError, match="sendfile call"):
                    await loop.sock_sendfile(a, reader, count=100, fallback=False)
                assert await loop.sock_sendfile(a, reader, count=100) == 14
                assert await recv_exactly(loop, b, 14) == b"through a pipe"
        finally:
            os.close(r)
            if w != -1:
                os.close(w)

    aio_run(main)


def test_sendfile_argument_checks(
    aio_run: Callable[..., Any], data_file: tuple[Path, bytes]
) -> None:
    path, _ = data_file

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        udp = nb_socket(type=socket.SOCK_DGRAM)
        with closing_all(a, b, udp), open(path, "rb") as f:
            with open(path) as text, pytest.raises(ValueError, match="binary mode"):
                await loop.sock_sendfile(a, text)
            with pytest.raises(ValueError, match="only SOCK_STREAM type sockets are supported"):
                await loop.sock_sendfile(udp, f)
            for count, exc in ((0, ValueError), (-1, ValueError), (1.5, TypeError)):
                message = rf"^count must be a positive integer \(got {count!r}\)$"
                with pytest.raises(exc, match=message):
                    await loop.sock_sendfile(a, f, count=count)
            for offset, exc in ((-1, ValueError), ("1", TypeError)):
                message = rf"^offset must be a non-negative integer \(got {offset!r}\)$"
                with pytest.raises(exc, match=message):
                    await loop.sock_sendfile(a, f, offset=offset)
            assert f.tell() == 0

    aio_run(main)


def test_sendfile_error_mid_transfer(
    aio_run: Callable[..., Any], data_file: tuple[Path, bytes]
) -> None:
    path, content = data_file

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a), open(path, "rb") as f:
            sending = asyncio.ensure_future(loop.sock_sendfile(a, f, fallback=False))
            await asyncio.sleep(0)
            assert not sending.done()
            sent_so_far = f.tell()
            b.close()
            with pytest.raises(BrokenPipeError):
                await sending
            # The position follows what was sent before the error.
            assert sent_so_far <= f.tell() < len(content)

    aio_run(main)


def test_sendfile_cancelled_updates_file_position(
    trio_aio_run: Callable[..., Any], data_file: tuple[Path, bytes]
) -> None:
    # Unlike the stdlib, a cancelled native transfer leaves the file position
    # after what was sent, as the fallback path and a failed transfer do.
    path, content = data_file

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = nb_socketpair()
        with closing_all(a, b), open(path, "rb") as f:
            sending = asyncio.ensure_future(loop.sock_sendfile(a, f, fallback=False))
            await asyncio.sleep(0)
            assert registered(loop, a)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            assert not registered(loop, a)
            sent = f.tell()
            assert 0 < sent < len(content)
            assert await recv_exactly(loop, b, sent) == content[:sent]

    trio_aio_run(main)


# ---- DNS ---------------------------------------------------------------------------------------


def test_getaddrinfo_and_getnameinfo(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for host in (LOCALHOST, "localhost"):
            got = await loop.getaddrinfo(host, 80, family=socket.AF_INET, type=socket.SOCK_STREAM)
            assert got == socket.getaddrinfo(host, 80, socket.AF_INET, socket.SOCK_STREAM)
            assert got[0][4] == (LOCALHOST, 80)
        got = await loop.getaddrinfo(LOCALHOST, "80", flags=socket.AI_NUMERICHOST)
        assert got == socket.getaddrinfo(LOCALHOST, "80", 0, 0, 0, socket.AI_NUMERICHOST)
        numeric = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        assert await loop.getnameinfo((LOCALHOST, 80), numeric) == (LOCALHOST, "80")
        assert await loop.getnameinfo((LOCALHOST, 80)) == socket.getnameinfo((LOCALHOST, 80), 0)
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("not a host name", 80, flags=socket.AI_NUMERICHOST)

    aio_run(main)


def test_getaddrinfo_is_logged_in_debug_mode(
    trio_aio_run: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        await loop.getaddrinfo(LOCALHOST, 80, type=socket.SOCK_STREAM)
        loop.set_debug(False)

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        trio_aio_run(main)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert f"Get address info {LOCALHOST}:80, type={socket.SOCK_STREAM!r}" in messages
    assert any(m.startswith(f"Getting address info {LOCALHOST}:80, type=") for m in messages)


def test_ensure_resolved(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await loop._ensure_resolved((LOCALHOST, 5)) == [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (LOCALHOST, 5))
        ]
        infos = await loop._ensure_resolved(("localhost", 5), family=socket.AF_INET)
        assert infos[0][4] == (LOCALHOST, 5)

    trio_aio_run(main)


def test_numeric_addrinfo() -> None:
    stream, dgram = socket.SOCK_STREAM, socket.SOCK_DGRAM
    tcp, udp = socket.IPPROTO_TCP, socket.IPPROTO_UDP
    inet, inet6 = socket.AF_INET, socket.AF_INET6
    assert numeric_addrinfo("1.2.3.4", 80, 0, stream, 0) == (inet, stream, tcp, "", ("1.2.3.4", 80))
    assert numeric_addrinfo(b"1.2.3.4", "80", inet, dgram, udp) == (
        inet,
        dgram,
        udp,
        "",
        ("1.2.3.4", 80),
    )
    assert numeric_addrinfo("::1", None, 0, stream, 0) == (inet6, stream, tcp, "", ("::1", 0, 0, 0))
    assert numeric_addrinfo("::1", 5, inet6, stream, 0, 7, 3) == (
        inet6,
        stream,
        tcp,
        "",
        ("::1", 5, 7, 3),
    )
    # Lookups still needed: names, services, zone ids, other types and families.
    assert numeric_addrinfo("localhost", 80, 0, stream, 0) is None
    assert numeric_addrinfo("1.2.3.4", "http", 0, stream, 0) is None
    assert numeric_addrinfo("fe80::1%lo", 80, 0, stream, 0) is None
    assert numeric_addrinfo("1.2.3.4", 80, 0, 0, 0) is None
    assert numeric_addrinfo("1.2.3.4", 80, 0, stream, udp) is None
    assert numeric_addrinfo("1.2.3.4", 80, inet6, stream, 0) is None
    assert numeric_addrinfo(None, 80, 0, stream, 0) is None
