"""create_connection, create_unix_connection, connect_accepted_socket, streams, sendfile.

Scenarios run on the stdlib selector loop and on ours (``aio_run``) with the
same assertions; ``trio_aio_run`` marks checks of our internals or of
deliberate differences. Synchronisation is by futures, never by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import io
import os
import shutil
import socket
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _drivers import EVERY_DRIVER

import trio_asyncio
from trio_asyncio._io._connections import _interleave_by_family

LOCALHOST = "127.0.0.1"
PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)
HAS_SHUTDOWN_TIMEOUT = sys.version_info >= (3, 11)


# ---- helpers ---------------------------------------------------------------------


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.events: list[str] = []
        self.data = bytearray()
        self.made: asyncio.Future[Any] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.lost_calls = 0
        self._want: tuple[int, asyncio.Future[None]] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self._want is not None and len(self.data) >= self._want[0]:
            self._want[1].set_result(None)
            self._want = None

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost_calls += 1
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)
        if self._want is not None and not self._want[1].done():
            self._want[1].set_exception(ConnectionError("lost"))

    async def wait_for(self, size: int) -> bytes:
        if len(self.data) < size:
            self._want = (size, asyncio.get_running_loop().create_future())
            await self._want[1]
        return bytes(self.data)


class Echo(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)
        self.transport.close()  # a no-op, but 3.10's TLS transport warns without it


def free_port() -> int:
    """A port nobody listens on (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


@contextlib.contextmanager
def stuck_listener() -> Iterator[tuple[str, int]]:
    """An address where connecting hangs: its accept queue is full."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind((LOCALHOST, 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield listener.getsockname()
    finally:
        filler.close()
        listener.close()


def fake_resolver(loop: Any, addresses: list[tuple[str, int]]) -> None:
    """Make ``loop.getaddrinfo`` answer *addresses* (IPv4) for any name."""

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
            for address in addresses
        ]

    loop.getaddrinfo = getaddrinfo


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def echo_server() -> tuple[Any, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, LOCALHOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def close_server(server: Any) -> None:
    server.close()
    await server.wait_closed()


async def round_trip(transport: Any, protocol: Recorder, data: bytes = b"ping") -> bytes:
    transport.write(data)
    return await protocol.wait_for(len(data))


# ---- create_connection ------------------------------------------------------------


def test_create_connection_and_echo(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        transport, protocol = await loop.create_connection(Recorder, LOCALHOST, port)
        echoed = await round_trip(transport, protocol)
        transport.close()
        await protocol.lost
        await close_server(server)
        return echoed, protocol.events

    assert aio_run(main) == (b"ping", ["made", "lost"])


def test_create_connection_by_name(aio_run: Callable[..., Any]) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        fake_resolver(loop, [(LOCALHOST, port)])
        transport, protocol = await loop.create_connection(Recorder, "some.name.test", port)
        echoed = await round_trip(transport, protocol)
        transport.close()
        await protocol.lost
        await close_server(server)
        return echoed

    assert aio_run(main) == b"ping"


def test_connection_refused(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        port = free_port()
        try:
            await loop.create_connection(Recorder, LOCALHOST, port)
        except OSError as exc:
            return (
                type(exc),
                exc.errno,
                str(exc)
                == f"[Errno {errno.ECONNREFUSED}] Connect call failed ('{LOCALHOST}', {port})",
            )
        return ()

    assert aio_run(main) == (ConnectionRefusedError, errno.ECONNREFUSED, True)


def test_all_attempts_fail_with_distinct_messages(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        ports = [free_port(), free_port()]
        fake_resolver(loop, [(LOCALHOST, p) for p in ports])
        with pytest.raises(OSError) as info:
            await loop.create_connection(Recorder, "two.addresses.test", 80)
        expected = "Multiple exceptions: " + ", ".join(
            f"[Errno {errno.ECONNREFUSED}] Connect call failed ('{LOCALHOST}', {p})" for p in ports
        )
        return type(info.value).__name__, str(info.value) == expected

    assert aio_run(main) == ("OSError", True)


def test_all_attempts_fail_with_the_same_message(aio_run: Callable[..., Any]) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        port = free_port()
        fake_resolver(loop, [(LOCALHOST, port), (LOCALHOST, port)])
        with pytest.raises(OSError) as info:
            await loop.create_connection(Recorder, "same.twice.test", 80)
        return type(info.value).__name__

    assert aio_run(main) == "ConnectionRefusedError"


def test_all_errors_raises_a_group(
    aio_run: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["aio_run"] == "stdlib" and not PY312:
        pytest.skip("the stdlib has all_errors from 3.12")

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        ports = [free_port(), free_port()]
        fake_resolver(loop, [(LOCALHOST, p) for p in ports])
        try:
            await loop.create_connection(Recorder, "x.test", 80, all_errors=True)
        except Exception as exc:  # ExceptionGroup (a backport before 3.11)
            return (
                type(exc).__name__,
                str(exc).startswith("create_connection failed"),
                [type(e) for e in exc.exceptions],  # type: ignore[attr-defined]
            )
        return ()

    assert aio_run(main) == (
        "ExceptionGroup",
        True,
        [ConnectionRefusedError, ConnectionRefusedError],
    )


def test_first_address_fails_second_works(aio_run: Callable[..., Any]) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        fake_resolver(loop, [(LOCALHOST, free_port()), (LOCALHOST, port)])
        transport, protocol = await loop.create_connection(Recorder, "x.test", 80)
        echoed = await round_trip(transport, protocol)
        transport.close()
        await protocol.lost
        await close_server(server)
        return echoed

    assert aio_run(main) == b"ping"


@pytest.mark.parametrize("first", ["stuck", "refused"])
def test_happy_eyeballs(aio_run: Callable[..., Any], first: str) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        with stuck_listener() as stuck:
            bad = stuck if first == "stuck" else (LOCALHOST, free_port())
            fake_resolver(loop, [bad, (LOCALHOST, port)])
            transport, protocol = await loop.create_connection(
                Recorder, "x.test", 80, happy_eyeballs_delay=0.02
            )
            peer = transport.get_extra_info("peername")
            echoed = await round_trip(transport, protocol)
            transport.close()
            await protocol.lost
        await close_server(server)
        return peer == (LOCALHOST, port), echoed

    assert aio_run(main) == (True, b"ping")


def test_happy_eyeballs_all_fail(aio_run: Callable[..., Any]) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        fake_resolver(loop, [(LOCALHOST, free_port()), (LOCALHOST, free_port())])
        with pytest.raises(OSError) as info:
            await loop.create_connection(Recorder, "x.test", 80, happy_eyeballs_delay=0.02)
        return str(info.value).split(":")[0]

    assert aio_run(main) == "Multiple exceptions"


def _held_by_more_than_frames(obj: object) -> list[object]:
    """What refers to *obj*, apart from the frames and coroutines of the test."""
    gc.collect()
    frames = (types.FrameType, types.CoroutineType, types.GeneratorType)
    return [ref for ref in gc.get_referrers(obj) if not isinstance(ref, frames)]


@pytest.mark.parametrize("addresses", [1, 2])
@pytest.mark.parametrize("delay", [None, 0.02])
@pytest.mark.parametrize("driver", ["trio_asyncio", "sync"])
def test_connection_errors_are_not_held_in_reference_cycles(
    driver: str, delay: float | None, addresses: int
) -> None:
    # The errors' tracebacks hold the frames that collected them: those must
    # let go (CPython gh-124859), or every failed connection waits for the
    # cyclic GC. The stdlib's older patch releases still leak: ours only.
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        fake_resolver(loop, [(LOCALHOST, free_port()) for _ in range(addresses)])
        try:
            await loop.create_connection(Recorder, "x.test", 80, happy_eyeballs_delay=delay)
        except OSError as exc:
            error = exc.__cause__ or exc
        else:
            return ["connected?"]
        await asyncio.sleep(0)  # out of the callback that delivered the error
        return _held_by_more_than_frames(error)

    assert EVERY_DRIVER[driver](main) == []


def test_cancel_while_connecting_closes_the_sockets(aio_run: Callable[..., Any]) -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        with stuck_listener() as stuck:
            fake_resolver(loop, [stuck, stuck])
            for delay in (None, 0.001):
                task = asyncio.ensure_future(
                    loop.create_connection(Recorder, "x.test", 80, happy_eyeballs_delay=delay)
                )
                for _ in range(5):
                    await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            # Let cancelled attempts finish closing their sockets.
            for _ in range(5):
                await asyncio.sleep(0)
        return True

    assert aio_run(main)


def test_interleave_by_family() -> None:
    v4 = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{i}", 80)) for i in range(3)]
    v6 = [(socket.AF_INET6, 1, 6, "", (f"::{i}", 80, 0, 0)) for i in range(2)]
    infos = [v6[0], v6[1], v4[0], v4[1], v4[2]]
    assert _interleave_by_family(infos, 1) == [v6[0], v4[0], v6[1], v4[1], v4[2]]
    assert _interleave_by_family(infos, 2) == [v6[0], v6[1], v4[0], v4[1], v4[2]]
    assert _interleave_by_family(v4, 1) == v4


def test_local_addr(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        local_port = free_port()
        transport, protocol = await loop.create_connection(
            Recorder, LOCALHOST, port, local_addr=(LOCALHOST, local_port)
        )
        sockname = transport.get_extra_info("sockname")
        transport.close()
        await protocol.lost
        await close_server(server)
        return sockname == (LOCALHOST, local_port)

    assert aio_run(main)


def test_local_addr_errors(aio_run: Callable[..., Any]) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        messages: list[str] = []
        busy = socket.socket()
        busy.bind((LOCALHOST, 0))
        busy.listen()
        try:
            for local in (busy.getsockname(), ("::1", 0)):
                try:
                    await loop.create_connection(Recorder, LOCALHOST, port, local_addr=local)
                except OSError as exc:
                    messages.append(str(exc))
        finally:
            busy.close()
        await close_server(server)
        return messages

    messages = aio_run(main)
    reason = "address already in use"
    if PY313:
        reason = f"[errno {errno.EADDRINUSE}] {reason}"
    assert messages[0].startswith(
        f"[Errno {errno.EADDRINUSE}] error while attempting to bind on address ('{LOCALHOST}', "
    )
    assert messages[0].endswith(f"): {reason}")
    assert messages[1] == "no matching local address with family=<AddressFamily.AF_INET: 2> found"


def test_create_connection_with_sock(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        sock = socket.create_connection((LOCALHOST, port))
        transport, protocol = await loop.create_connection(Recorder, sock=sock)
        echoed = await round_trip(transport, protocol)
        blocking = sock.getblocking()
        transport.close()
        await protocol.lost
        await close_server(server)
        return echoed, blocking, sock.fileno()

    assert aio_run(main) == (b"ping", False, -1)


def test_create_connection_argument_checks(aio_run: Callable[..., Any]) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket()
        calls = [
            dict(host=LOCALHOST, port=1, server_hostname="x"),
            dict(ssl=True, sock=tcp),
            dict(host=LOCALHOST, port=1, ssl_handshake_timeout=1.0),
            dict(host=LOCALHOST, port=1, ssl_shutdown_timeout=1.0),
            dict(host=LOCALHOST, port=1, sock=tcp),
            dict(),
            dict(sock=udp),
        ]
        if not HAS_SHUTDOWN_TIMEOUT:
            del calls[3]  # new in the stdlib's 3.11 (we take it on 3.10 too)
        messages = []
        try:
            for kwargs in calls:
                try:
                    await loop.create_connection(Recorder, **kwargs)
                except (ValueError, TypeError) as exc:
                    messages.append(f"{type(exc).__name__}: {exc}")
        finally:
            udp.close()
            tcp.close()
        return messages

    expected = [
        "ValueError: server_hostname is only meaningful with ssl",
        "ValueError: You must set server_hostname when using ssl without a host",
        "ValueError: ssl_handshake_timeout is only meaningful with ssl",
        "ValueError: ssl_shutdown_timeout is only meaningful with ssl",
        "ValueError: host/port and sock can not be specified at the same time",
        "ValueError: host and port was not specified and no sock specified",
    ]
    if not HAS_SHUTDOWN_TIMEOUT:
        del expected[3]
    messages = aio_run(main)
    assert messages[:-1] == expected
    assert messages[-1].startswith("ValueError: A Stream Socket was expected, got <socket.socket")


def test_protocol_factory_error_closes_the_socket(trio_aio_run: Callable[..., Any]) -> None:
    # The stdlib leaves the connected socket to the garbage collector.
    async def main() -> str:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()

        def factory() -> asyncio.Protocol:
            raise ZeroDivisionError("no protocol")

        with pytest.raises(ZeroDivisionError):
            await loop.create_connection(factory, LOCALHOST, port)
        await close_server(server)
        return "ok"

    assert trio_aio_run(main) == "ok"


# ---- connect_accepted_socket, Unix sockets -------------------------------------------------


def test_connect_accepted_socket(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind((LOCALHOST, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        listener.close()
        server_transport, server_protocol = await loop.connect_accepted_socket(Echo, conn)
        transport, protocol = await loop.create_connection(Recorder, sock=client)
        echoed = await round_trip(transport, protocol, b"accepted")
        peer = server_transport.get_extra_info("peername") == client.getsockname()
        transport.close()
        await protocol.lost
        await server_protocol.lost
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await loop.connect_accepted_socket(Echo, udp)
        except ValueError as exc:
            message = str(exc).split(",")[0]
        finally:
            udp.close()
        return echoed, peer, message

    assert aio_run(main) == (b"accepted", True, "A Stream Socket was expected")


def test_unix_server_and_connection(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    async def main(path: str) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(Echo, path)
        name = server.sockets[0].getsockname()
        transport, protocol = await loop.create_unix_connection(Recorder, path)
        echoed = await round_trip(transport, protocol, b"over unix")
        extra = transport.get_extra_info("peername"), transport.get_extra_info("socket").family
        transport.close()
        await protocol.lost
        await close_server(server)
        return name == path, echoed, extra, os.path.exists(path)

    path = str(tmp_path / "echo.sock")
    # From 3.13 closing the server removes its socket file.
    assert aio_run(main, path) == (True, b"over unix", (path, socket.AF_UNIX), not PY313)


def test_unix_server_socket_file_handling(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    async def main(directory: Path) -> list[Any]:
        loop = asyncio.get_running_loop()
        results: list[Any] = []
        stale = str(directory / "stale.sock")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(stale)  # leaves the file behind
        server = await loop.create_unix_server(Echo, stale)
        results.append(server.sockets[0].getsockname() == stale)
        await close_server(server)
        regular = directory / "regular"
        regular.write_bytes(b"not a socket")
        try:
            await loop.create_unix_server(Echo, str(regular))
        except OSError as exc:
            results.append((exc.errno, str(exc)))
        if PY313:
            kept = str(directory / "kept.sock")
            server = await loop.create_unix_server(Echo, kept, cleanup_socket=False)
            await close_server(server)
            results.append(os.path.exists(kept))
        return results

    expected: list[Any] = [
        True,
        (
            errno.EADDRINUSE,
            f"[Errno {errno.EADDRINUSE}] Address {str(tmp_path / 'regular')!r} is already in use",
        ),
    ]
    if PY313:
        expected.append(True)
    assert aio_run(main, tmp_path) == expected


def test_unix_argument_checks(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    async def main(path: str) -> list[str]:
        loop = asyncio.get_running_loop()
        tcp = socket.socket()
        messages = []
        calls = [
            (loop.create_unix_connection, dict(path=path, ssl=True)),
            (loop.create_unix_connection, dict(path=path, server_hostname="x")),
            (loop.create_unix_connection, dict(path=path, ssl_handshake_timeout=1)),
            (loop.create_unix_connection, dict(path=path, sock=tcp)),
            (loop.create_unix_connection, dict()),
            (loop.create_unix_connection, dict(sock=tcp)),
            (loop.create_unix_server, dict(path=path, ssl=True)),
            (loop.create_unix_server, dict(path=path, ssl_handshake_timeout=1)),
            (loop.create_unix_server, dict(path=path, sock=tcp)),
            (loop.create_unix_server, dict()),
            (loop.create_unix_server, dict(sock=tcp)),
        ]
        try:
            for method, kwargs in calls:
                try:
                    await method(Recorder, **kwargs)
                except (ValueError, TypeError) as exc:
                    messages.append(f"{type(exc).__name__}: {str(exc).split(', got')[0]}")
        finally:
            tcp.close()
        return messages

    assert aio_run(main, str(tmp_path / "x.sock")) == [
        "ValueError: you have to pass server_hostname when using ssl",
        "ValueError: server_hostname is only meaningful with ssl",
        "ValueError: ssl_handshake_timeout is only meaningful with ssl",
        "ValueError: path and sock can not be specified at the same time",
        "ValueError: no path and sock were specified",
        "ValueError: A UNIX Domain Stream Socket was expected",
        "TypeError: ssl argument must be an SSLContext or None",
        "ValueError: ssl_handshake_timeout is only meaningful with ssl",
        "ValueError: path and sock can not be specified at the same time",
        "ValueError: path was not specified, and no sock specified",
        "ValueError: A UNIX Domain Stream Socket was expected",
    ]


def test_unix_connection_refused(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    async def main(path: str) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(Recorder, path)
        except OSError as exc:
            return (type(exc),)
        return ()

    assert aio_run(main, str(tmp_path / "nobody.sock")) == (FileNotFoundError,)


# ---- streams ---------------------------------------------------------------------------------


def test_streams_echo(aio_run: Callable[..., Any]) -> None:
    async def main() -> list[bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        lines = []
        for word in (b"alpha\n", b"beta\n"):
            writer.write(word)
            await writer.drain()
            lines.append(await reader.readline())
        writer.write_eof()
        lines.append(await reader.read())
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return lines

    assert aio_run(main) == [b"ALPHA\n", b"BETA\n", b""]


def test_streams_drain_under_backpressure(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    async def main(path: str) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        start_reading = loop.create_future()
        received = loop.create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await start_reading
            received.set_result(len(await reader.read()))
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        size = 4 * 1024 * 1024
        writer.write(b"d" * size)
        drain = asyncio.ensure_future(writer.drain())
        for _ in range(5):
            await asyncio.sleep(0)
        blocked = not drain.done() and writer.transport.get_write_buffer_size() > 0
        start_reading.set_result(None)
        await drain
        writer.write_eof()
        total = await received
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return blocked, total

    assert aio_run(main, str(tmp_path / "s.sock")) == (True, 4 * 1024 * 1024)


# ---- sendfile ----------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(300_000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


async def sendfile_scenario(
    path: Path,
    offset: int = 0,
    count: int | None = None,
    header: bytes = b"",
    **kwargs: Any,
) -> tuple[int, int, bytes, bool]:
    """sendfile over a connected transport: (sent, file position, received, still reading)."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    peer_transport, peer = await loop.connect_accepted_socket(Recorder, b)
    transport, protocol = await loop.create_connection(Recorder, sock=a)
    try:
        with open(path, "rb") as file:
            if header:
                transport.write(header)
            sent = await loop.sendfile(transport, file, offset, count, **kwargs)
            position = file.tell()
        transport.write(b"!")
        received = await peer.wait_for(len(header) + sent + 1)
        reading = transport.is_reading()
        # The protocol is back in place: it still receives data.
        peer_transport.write(b"back")
        await protocol.wait_for(4)
    finally:
        transport.close()
        await protocol.lost
        await peer.lost
    return sent, position, received, reading


def test_sendfile_native(aio_run: Callable[..., Any], data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    sent, position, received, reading = aio_run(sendfile_scenario, path, 0, None, b"head:")
    assert (sent, position, reading) == (len(data), len(data), True)
    assert received == b"head:" + data + b"!"


def test_sendfile_offset_and_count(
    aio_run: Callable[..., Any], data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    sent, position, received, _ = aio_run(sendfile_scenario, path, 1000, 5000)
    assert (sent, position, received) == (5000, 6000, data[1000:6000] + b"!")


def test_sendfile_fallback_when_os_sendfile_fails(
    aio_run: Callable[..., Any], data_file: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_sendfile(*args: Any) -> int:
        raise OSError(errno.EINVAL, "no sendfile here")

    monkeypatch.setattr(os, "sendfile", failing_sendfile)
    path, data = data_file
    sent, position, received, reading = aio_run(sendfile_scenario, path, 10, None, b"h")
    assert (sent, position, reading) == (len(data) - 10, len(data), True)
    assert received == b"h" + data[10:] + b"!"


def test_sendfile_without_fallback(
    aio_run: Callable[..., Any], data_file: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_sendfile(*args: Any) -> int:
        raise OSError(errno.EINVAL, "no sendfile here")

    monkeypatch.setattr(os, "sendfile", failing_sendfile)
    path, _ = data_file
    with pytest.raises(asyncio.SendfileNotAvailableError):
        aio_run(functools.partial(sendfile_scenario, fallback=False), path)


def test_sendfile_fallback_for_in_memory_file(aio_run: Callable[..., Any]) -> None:
    data = os.urandom(100_000)

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        _, peer = await loop.connect_accepted_socket(Recorder, b)
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        file = io.BytesIO(data)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(transport, file, fallback=False)
        sent = await loop.sendfile(transport, file, 5)
        received = await peer.wait_for(sent)
        position = file.tell()
        transport.close()
        await protocol.lost
        await peer.lost
        return sent, position, received == data[5:]

    assert aio_run(main) == (len(data) - 5, len(data), True)


def test_sendfile_fallback_respects_flow_control(
    aio_run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A large file through the fallback to a peer that reads only later:
    # the fallback must wait on pause/resume rather than buffer it all.
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    def failing_sendfile(*args: Any) -> int:
        raise OSError(errno.EINVAL, "no sendfile here")

    monkeypatch.setattr(os, "sendfile", failing_sendfile)

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        with open(path, "rb") as file:
            sending = asyncio.ensure_future(loop.sendfile(transport, file))
            received = bytearray()
            largest_buffer = 0
            while len(received) < len(data):
                largest_buffer = max(largest_buffer, transport.get_write_buffer_size())
                received += await loop.sock_recv(b, 65536)
            sent = await sending
        transport.close()
        await protocol.lost
        b.close()
        return sent, bytes(received) == data, largest_buffer < 1024 * 1024

    assert aio_run(main) == (len(data), True, True)


def test_sendfile_checks(aio_run: Callable[..., Any], data_file: tuple[Path, bytes]) -> None:
    path, _ = data_file

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        messages = []
        with open(path, "rb") as file, open(path) as text:
            for args in ((text,), (file, -1), (file, 0, 0), (file, "1"), (file, 0, 1.5)):
                try:
                    await loop.sendfile(transport, *args)
                except (ValueError, TypeError) as exc:
                    messages.append(f"{type(exc).__name__}: {exc}")
            transport.close()
            try:
                await loop.sendfile(transport, file)
            except RuntimeError as exc:
                messages.append(str(exc))
        await protocol.lost
        b.close()
        return messages

    assert aio_run(main) == [
        "ValueError: file should be opened in binary mode",
        "ValueError: offset must be a non-negative integer (got -1)",
        "ValueError: count must be a positive integer (got 0)",
        "TypeError: offset must be a non-negative integer (got '1')",
        "TypeError: count must be a positive integer (got 1.5)",
        "Transport is closing",
    ]


def test_write_during_sendfile_is_refused(aio_run: Callable[..., Any], tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        with open(path, "rb") as file:
            sending = asyncio.ensure_future(loop.sendfile(transport, file))
            for _ in range(3):
                await asyncio.sleep(0)
            try:
                transport.write(b"x")
            except RuntimeError as exc:
                refused = str(exc)
            received = 0
            while received < len(data):
                received += len(await loop.sock_recv(b, 1 << 20))
            sent = await sending
        transport.write(b"after")
        assert await loop.sock_recv(b, 100) == b"after"
        transport.close()
        await protocol.lost
        b.close()
        return refused, sent

    assert aio_run(main) == ("unable to write; sendfile is in progress", len(data))


def test_sendfile_cancelled(trio_aio_run: Callable[..., Any], tmp_path: Path) -> None:
    # The stdlib leaves the file position where it was when sendfile() is
    # cancelled; we leave it after the last byte sent, as on success.
    data = os.urandom(8 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        with open(path, "rb") as file:
            sending = asyncio.ensure_future(loop.sendfile(transport, file))
            for _ in range(3):
                await asyncio.sleep(0)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            position = file.tell()
        # The transport is usable again, and what was sent is what the file
        # position says.
        transport.write(b"tail")
        transport.close()
        received = bytearray()
        while chunk := await loop.sock_recv(b, 1 << 20):
            received += chunk
        await protocol.lost
        b.close()
        return 0 < position < len(data), bytes(received) == data[:position] + b"tail"

    assert trio_aio_run(main) == (True, True)


def test_sendfile_peer_goes_away(trio_aio_run: Callable[..., Any], tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        fd = a.fileno()
        with open(path, "rb") as file:
            sending = asyncio.ensure_future(loop.sendfile(transport, file))
            for _ in range(3):
                await asyncio.sleep(0)
            transport.abort()
            with pytest.raises(ConnectionError):
                await sending
        await protocol.lost
        b.close()
        return protocol.events, fd in loop._selector.get_map()

    assert trio_aio_run(main) == (["made", "lost"], False)


def test_sendfile_unsupported_transport(aio_run: Callable[..., Any]) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb"))
        try:
            with open(__file__, "rb") as file:
                await loop.sendfile(transport, file)
        except RuntimeError as exc:
            message = str(exc).split(" for transport")[0]
        finally:
            transport.close()
            os.close(r)
            await asyncio.sleep(0)
        return message

    assert aio_run(main) == "sendfile is not supported"


def test_sendfile_refuses_datagram_transport(aio_run: Callable[..., Any]) -> None:
    # A UDP transport has write() too, but no stream to send a file down.
    async def main() -> str:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        try:
            with open(__file__, "rb") as file:
                await loop.sendfile(transport, file)
        except RuntimeError as exc:
            message = str(exc).split(" for transport")[0]
        finally:
            transport.close()
            await asyncio.sleep(0)
        return message

    assert aio_run(main) == "sendfile is not supported"


# ---- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(server context, client context) for a self-signed 'localhost' certificate."""
    ssl = pytest.importorskip("ssl")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("stream-tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", "key.pem", "-out", "cert.pem",
        ],
        cwd=directory,
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(directory / "cert.pem")
    return server, client


def test_tls_sendfile_falls_back_to_writes(
    aio_run: Callable[..., Any], tls_contexts: tuple[Any, Any], data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server_ctx, client_ctx = tls_contexts
        peers: list[Recorder] = []

        def factory() -> Recorder:
            peers.append(Recorder())
            return peers[-1]

        server = await loop.create_server(factory, LOCALHOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(
            Recorder, LOCALHOST, port, ssl=client_ctx, server_hostname="localhost"
        )
        with open(path, "rb") as file:
            sent = await loop.sendfile(transport, file, 7)
        received = await peers[0].wait_for(sent)
        # The application protocol is back: it can still receive.
        peers[0].transport.write(b"reply")
        await protocol.wait_for(5)
        transport.close()
        await protocol.lost
        await peers[0].lost
        peers[0].transport.close()  # a no-op, but 3.10's TLS transport warns without it
        server.close()
        await server.wait_closed()
        return sent, received == data[7:], transport.get_extra_info("sslcontext") is client_ctx

    assert aio_run(main) == (len(data) - 7, True, True)


def test_tls_unix_and_accepted_socket(
    aio_run: Callable[..., Any], tls_contexts: tuple[Any, Any], tmp_path: Path
) -> None:
    async def main(path: str) -> list[bytes]:
        loop = asyncio.get_running_loop()
        server_ctx, client_ctx = tls_contexts
        echoed = []
        server = await loop.create_unix_server(Echo, path, ssl=server_ctx)
        transport, protocol = await loop.create_unix_connection(
            Recorder, path, ssl=client_ctx, server_hostname="localhost"
        )
        echoed.append(await round_trip(transport, protocol, b"unix tls"))
        transport.close()
        await protocol.lost
        server.close()
        await server.wait_closed()

        a, b = socket.socketpair()
        accepting = asyncio.ensure_future(
            loop.connect_accepted_socket(Echo, b, ssl=server_ctx, ssl_handshake_timeout=30)
        )
        transport, protocol = await loop.create_connection(
            Recorder, sock=a, ssl=client_ctx, server_hostname="localhost"
        )
        _, server_protocol = await accepting
        echoed.append(await round_trip(transport, protocol, b"accepted tls"))
        transport.close()
        await protocol.lost
        await server_protocol.lost
        return echoed

    assert aio_run(main, str(tmp_path / "tls.sock")) == [b"unix tls", b"accepted tls"]


def test_ours(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> bool:
        return isinstance(asyncio.get_running_loop(), trio_asyncio.BaseTrioEventLoop)

    assert trio_aio_run(main)
