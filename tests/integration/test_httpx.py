"""httpx's AsyncClient (on anyio's asyncio backend) against a local aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import _harness
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

CHUNK = b"z" * 10_000


def make_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path, "query": dict(request.query)})

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body[::-1], headers={"X-Length": str(len(body))})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(int(request.query["n"])):
            await response.write(CHUNK)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/slow", slow)
    return app


@asynccontextmanager
async def served() -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    # handler_cancellation: the abandoned /slow handler ends with its connection
    # (otherwise cleanup() waits for it).
    runner = web.AppRunner(make_app(), handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            yield f"http://{host}:{port}", client
    finally:
        await runner.cleanup()


async def scenario_client() -> None:
    async with served() as (_, client):
        r = await client.get("/hello", params={"a": "1"})
        assert r.status_code == 200
        assert r.json() == {"path": "/hello", "query": {"a": "1"}}

        r = await client.post("/echo", content=b"abcdef")
        assert (r.content, r.headers["x-length"]) == (b"fedcba", "6")

        # A streamed request body and a streamed response.
        async def body() -> AsyncIterator[bytes]:
            for _ in range(50):
                yield CHUNK

        r = await client.post("/echo", content=body())
        assert r.headers["x-length"] == str(50 * len(CHUNK))
        total = 0
        async with client.stream("GET", "/stream", params={"n": "100"}) as r:
            async for piece in r.aiter_bytes():
                total += len(piece)
        assert total == 100 * len(CHUNK)

        # Concurrency over the connection pool.
        responses = await asyncio.gather(
            *(client.get("/hello", params={"i": str(i)}) for i in range(30))
        )
        assert [r.json()["query"]["i"] for r in responses] == [str(i) for i in range(30)]

        # httpx's own timeout (an anyio cancel scope on our loop).
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow", timeout=0.2)
        assert (await client.get("/hello")).status_code == 200


def test_client(run) -> None:
    run(scenario_client)


def test_trio_cancels_request() -> None:
    """A slow request cancelled by a Trio timeout; the client still works."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        async with aio_as_trio(served()) as (_, client):
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(client.get)("/slow")
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                r = await aio_as_trio(client.get)("/hello")
            assert r.status_code == 200

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_client)


def test_imported_first() -> None:
    _harness.check_imported_first("httpx", "test_httpx", "all_modes")
