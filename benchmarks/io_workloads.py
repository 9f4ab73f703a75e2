"""I/O workloads: TCP over loopback (protocols and streams), fd watching, aiohttp.

Servers and connections are set up before the clock starts and torn down
after it stops. A loop that lacks an API raises NotImplementedError, which
the runner reports as "not implemented yet" instead of a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from ._registry import workload
from ._timing import start, stop
from .workloads import _split

_HOST = "127.0.0.1"
_MESSAGE = b"x" * 100
_CHUNK = b"\0" * 65536


# ---- helpers ----------------------------------------------------------------------


async def _close_server(server: asyncio.AbstractServer) -> None:
    """Close *server* and wait for it, but never hang the benchmark on it."""
    server.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 5)


def _port(server: asyncio.AbstractServer) -> int:
    sockets = server.sockets  # type: ignore[attr-defined]
    return int(sockets[0].getsockname()[1])


def _socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


# ---- TCP echo with protocols --------------------------------------------------------


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _EchoClient(asyncio.Protocol):
    """Sends a 100-byte request, waits for the whole reply, repeats *rounds* times."""

    def __init__(self, done: asyncio.Future[None], rounds: int) -> None:
        self.done = done
        self.rounds = rounds
        self.received = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def go(self) -> None:
        self.transport.write(_MESSAGE)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received < len(_MESSAGE):
            return
        self.received -= len(_MESSAGE)
        self.rounds -= 1
        if self.rounds:
            self.transport.write(_MESSAGE)
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("echo connection lost early"))


async def _tcp_echo_protocol(n: int, connections: int) -> float:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoServer, _HOST, 0)
    clients: list[_EchoClient] = []
    try:
        port = _port(server)
        for rounds in _split(n, connections):
            done: asyncio.Future[None] = loop.create_future()
            _, client = await loop.create_connection(
                lambda done=done, rounds=rounds: _EchoClient(done, rounds), _HOST, port
            )
            clients.append(client)
        started = start()
        for client in clients:
            client.go()
        await asyncio.gather(*[client.done for client in clients])
        return stop(started)
    finally:
        for client in clients:
            client.transport.close()
        await _close_server(server)


@workload(group="io", size=20_000, quick_size=2_000, unit="round trip")
async def tcp_echo_protocol(n: int) -> float:
    """TCP echo, asyncio.Protocol, one connection, 100-byte request and reply."""
    return await _tcp_echo_protocol(n, 1)


@workload(group="io", size=50_000, quick_size=5_000, unit="round trip")
async def tcp_echo_protocol_10(n: int) -> float:
    """TCP echo, asyncio.Protocol, ten concurrent connections (N round trips in all)."""
    return await _tcp_echo_protocol(n, 10)


# ---- TCP echo with streams --------------------------------------------------------


async def _stream_echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.readexactly(len(_MESSAGE))
            writer.write(data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _stream_echo_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rounds: int
) -> None:
    for _ in range(rounds):
        writer.write(_MESSAGE)
        await writer.drain()
        await reader.readexactly(len(_MESSAGE))


async def _tcp_echo_streams(n: int, connections: int) -> float:
    server = await asyncio.start_server(_stream_echo_handler, _HOST, 0)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        port = _port(server)
        for _ in range(min(connections, n)):
            streams.append(await asyncio.open_connection(_HOST, port))
        shares = _split(n, connections)
        started = start()
        await asyncio.gather(
            *[_stream_echo_client(r, w, rounds) for (r, w), rounds in zip(streams, shares)]
        )
        return stop(started)
    finally:
        for _, writer in streams:
            writer.close()
        for _, writer in streams:
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await _close_server(server)


@workload(group="io", size=20_000, quick_size=2_000, unit="round trip")
async def tcp_echo_streams(n: int) -> float:
    """TCP echo, streams (open_connection/start_server), one connection."""
    return await _tcp_echo_streams(n, 1)


@workload(group="io", size=50_000, quick_size=5_000, unit="round trip")
async def tcp_echo_streams_10(n: int) -> float:
    """TCP echo, streams, ten concurrent connections (N round trips in all)."""
    return await _tcp_echo_streams(n, 10)


# ---- bulk transfer ----------------------------------------------------------------


class _Sink(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None], total: int) -> None:
        self.done = done
        self.total = total
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.total and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("bulk connection lost early"))


class _Source(asyncio.Protocol):
    """Writes as fast as flow control allows."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.resumed: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def pause_writing(self) -> None:
        self.resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        resumed, self.resumed = self.resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()


@workload(
    group="io",
    size=256 * 2**20,
    quick_size=16 * 2**20,
    unit="byte",
    display="throughput",
)
async def tcp_bulk(n: int) -> float:
    """One-way bulk transfer of N bytes over TCP in 64 KiB writes (Protocol, flow control)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    server = await loop.create_server(lambda: _Sink(done, n), _HOST, 0)
    transport = None
    try:
        transport, source = await loop.create_connection(_Source, _HOST, _port(server))
        write = transport.write
        sent = 0
        started = start()
        while sent < n:
            if source.resumed is not None:
                await source.resumed
            write(_CHUNK)
            sent += len(_CHUNK)
        await done
        return stop(started)
    finally:
        if transport is not None:
            transport.close()
        await _close_server(server)


# ---- fd watching ------------------------------------------------------------------


@workload(group="io", size=50_000, quick_size=5_000, unit="round trip")
async def add_reader_pingpong(n: int) -> float:
    """add_reader callbacks bounce one byte over a socketpair."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    a, b = _socketpair()
    count = 0

    def on_b() -> None:
        try:
            b.recv(64)
        except BlockingIOError:
            return
        b.send(b"x")

    def on_a() -> None:
        nonlocal count
        try:
            a.recv(64)
        except BlockingIOError:
            return
        count += 1
        if count < n:
            a.send(b"x")
        elif not done.done():
            done.set_result(None)

    try:
        loop.add_reader(b, on_b)
        loop.add_reader(a, on_a)
        started = start()
        a.send(b"x")
        await done
        return stop(started)
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(a)
            loop.remove_reader(b)
        a.close()
        b.close()


@workload(group="io", size=50_000, quick_size=5_000, unit="message")
async def add_writer_per_message(n: int) -> float:
    """add_writer, send 100 bytes when writable, remove_writer: once per message."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    a, b = _socketpair()
    expected = n * len(_MESSAGE)
    received = 0
    sent = 0
    pending = memoryview(_MESSAGE)

    def on_writable() -> None:
        nonlocal sent, pending
        try:
            count = a.send(pending)
        except BlockingIOError:
            return
        if count < len(pending):
            pending = pending[count:]  # partial send: stay registered
            return
        pending = memoryview(_MESSAGE)
        loop.remove_writer(a)
        sent += 1
        if sent < n:
            loop.add_writer(a, on_writable)

    def on_readable() -> None:
        nonlocal received
        try:
            data = b.recv(65536)
        except BlockingIOError:
            return
        received += len(data)
        if received >= expected and not done.done():
            done.set_result(None)

    try:
        loop.add_reader(b, on_readable)
        started = start()
        loop.add_writer(a, on_writable)
        await done
        return stop(started)
    finally:
        with contextlib.suppress(Exception):
            loop.remove_writer(a)
            loop.remove_reader(b)
        a.close()
        b.close()


# ---- aiohttp ----------------------------------------------------------------------


@workload(
    group="io",
    size=5_000,
    quick_size=500,
    unit="request",
    display="rate",
    requires=("aiohttp",),
)
async def aiohttp_requests(n: int) -> float:
    """aiohttp server and client in one loop: GET over keep-alive, ten at a time."""
    from aiohttp import ClientSession, web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, world")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, _HOST, 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/"
        async with ClientSession() as session:

            async def fetch(count: int) -> None:
                for _ in range(count):
                    async with session.get(url) as response:
                        await response.read()

            await asyncio.gather(*[fetch(1) for _ in range(10)])  # open the connections
            started = start()
            await asyncio.gather(*[fetch(count) for count in _split(n, 10)])
            return stop(started)
    finally:
        await runner.cleanup()
