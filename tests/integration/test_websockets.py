"""websockets: server and client echo, large messages, close codes."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import _harness
import pytest

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

MAX_SIZE = 16 * 1024 * 1024


def make_handler(closed_codes: asyncio.Queue[int | None]):
    async def handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                if message == "close please":
                    await ws.close(4002, "server says bye")
                    return
                if message == "silence":
                    continue
                await ws.send(message)
        finally:
            closed_codes.put_nowait(ws.close_code)

    return handler


async def scenario_echo() -> None:
    closed: asyncio.Queue[int | None] = asyncio.Queue()
    async with serve(make_handler(closed), "127.0.0.1", 0, max_size=MAX_SIZE) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}"

        async with connect(url, max_size=MAX_SIZE) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            # Large messages both ways, text and binary.
            text = "é" * (1024 * 1024)
            blob = bytes(range(256)) * (4 * 4096)  # 4 MiB
            await ws.send(text)
            await ws.send(blob)
            assert await ws.recv() == text
            assert await ws.recv() == blob
            # Fragmented message from an async iterator.
            parts = [b"a" * 100_000, b"b" * 100_000, b"c"]

            async def fragments():
                for part in parts:
                    yield part

            await ws.send(fragments())
            assert await ws.recv() == b"".join(parts)
            # Ping and pong.
            latency = await ws.ping()
            await asyncio.wait_for(latency, 10)
            # Many small messages keep their order.
            for i in range(200):
                await ws.send(str(i))
            assert [await ws.recv() for _ in range(200)] == [str(i) for i in range(200)]

        # Server-initiated close with an application code.
        async with connect(url) as ws:
            await ws.send("close please")
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 4002
            assert info.value.rcvd.reason == "server says bye"

        # Client-initiated close with an application code.
        async with connect(url) as ws:
            await ws.close(4003, "client says bye")
        # The handler saw each close code (it reports them on exit).
        codes = [await asyncio.wait_for(closed.get(), 10) for _ in range(3)]
    assert codes == [1000, 4002, 4003]


async def scenario_tls(tls: _harness.TLS) -> None:
    closed: asyncio.Queue[int | None] = asyncio.Queue()
    async with serve(
        make_handler(closed), "127.0.0.1", 0, ssl=tls.server, max_size=MAX_SIZE
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"wss://127.0.0.1:{port}", ssl=tls.client, max_size=MAX_SIZE) as ws:
            blob = bytes(range(256)) * (4 * 4096)  # 4 MiB
            await ws.send(blob)
            assert await ws.recv() == blob
            for i in range(100):
                await ws.send(str(i))
            assert [await ws.recv() for _ in range(100)] == [str(i) for i in range(100)]
            await ws.close(4005, "done")
        assert await asyncio.wait_for(closed.get(), 10) == 4005


def test_echo(run) -> None:
    run(scenario_echo)


def test_tls(run, tls: _harness.TLS) -> None:
    run(scenario_tls, tls)


def test_trio_cancels_recv() -> None:
    """A Trio timeout around ``recv()``; the connection is usable afterwards."""
    import trio

    import trio_asyncio

    @asynccontextmanager
    async def connected():
        closed: asyncio.Queue[int | None] = asyncio.Queue()
        async with serve(make_handler(closed), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                yield ws

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        async with trio_asyncio.aio_as_trio(connected()) as ws:
            await trio_asyncio.aio_as_trio(ws.send)("silence")
            with trio.move_on_after(0.2) as timeout:
                await trio_asyncio.aio_as_trio(ws.recv)()
            assert timeout.cancelled_caught
            await trio_asyncio.aio_as_trio(ws.send)("still there?")
            assert await trio_asyncio.aio_as_trio(ws.recv)() == "still there?"

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_echo)


def test_imported_first() -> None:
    _harness.check_imported_first("websockets", "test_websockets", "all_modes")
