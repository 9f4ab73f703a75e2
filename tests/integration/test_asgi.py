"""ASGI apps served on our loop: Starlette under uvicorn, Quart under hypercorn.

Each server runs as an asyncio task on a socket bound beforehand (so clients
can connect at once: the kernel queues them until the server accepts), is
queried with httpx and websockets, and is shut down gracefully, running the
app's shutdown hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import _harness
import pytest

httpx = pytest.importorskip("httpx")
websockets_client = pytest.importorskip("websockets.asyncio.client")


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    sock.setblocking(False)
    return sock


# ------------------------------------------------------------------- Starlette


def make_starlette_app(events: list[str]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def index(request: Any) -> Any:
        return JSONResponse({"framework": "starlette", "q": request.query_params.get("q")})

    async def echo(request: Any) -> Any:
        return PlainTextResponse((await request.body()).decode()[::-1])

    async def numbers(request: Any) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(100):
                yield f"{i}\n".encode()

        return StreamingResponse(gen(), media_type="text/plain")

    async def slow(request: Any) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            yield b"first\n"
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                events.append("slow cancelled")
                raise
            yield b"too late\n"

        return StreamingResponse(gen(), media_type="text/plain")

    async def ws(websocket: Any) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(f"starlette: {text}")

    return Starlette(
        routes=[
            Route("/", index),
            Route("/echo", echo, methods=["POST"]),
            Route("/numbers", numbers),
            Route("/slow", slow),
            WebSocketRoute("/ws", ws),
        ],
        lifespan=lifespan,
    )


@contextlib.asynccontextmanager
async def uvicorn_server(events: list[str], tls: _harness.TLS | None = None) -> AsyncIterator[str]:
    import uvicorn

    sock = listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        make_starlette_app(events),
        lifespan="on",
        log_level="warning",
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
        ssl_certfile=str(tls.cert_file) if tls else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# ----------------------------------------------------------------------- Quart


def make_quart_app(events: list[str]) -> Any:
    from quart import Quart, request, websocket

    app = Quart("trio_asyncio_test")

    @app.before_serving
    async def startup() -> None:
        events.append("startup")

    @app.after_serving
    async def shutdown() -> None:
        events.append("shutdown")

    @app.route("/")
    async def index() -> Any:
        return {"framework": "quart", "q": request.args.get("q")}

    @app.route("/echo", methods=["POST"])
    async def echo() -> Any:
        return (await request.get_data(as_text=True))[::-1]

    @app.route("/numbers")
    async def numbers() -> Any:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(100):
                yield f"{i}\n".encode()

        return gen(), 200, {"Content-Type": "text/plain"}

    @app.route("/slow")
    async def slow() -> Any:
        async def gen() -> AsyncIterator[bytes]:
            yield b"first\n"
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                events.append("slow cancelled")
                raise
            yield b"too late\n"

        return gen(), 200, {"Content-Type": "text/plain"}

    @app.websocket("/ws")
    async def ws() -> None:
        while True:
            text = await websocket.receive()
            await websocket.send(f"quart: {text}")

    return app


@contextlib.asynccontextmanager
async def hypercorn_server(
    events: list[str], tls: _harness.TLS | None = None
) -> AsyncIterator[str]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = listening_socket()
    port = sock.getsockname()[1]
    config = Config()
    # Hypercorn takes the fd over; give it a duplicate of ours.
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 5
    if tls:
        # Hypercorn offers HTTP/2 and HTTP/1.1 through ALPN.
        config.certfile = config.keyfile = str(tls.cert_file)
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(make_quart_app(events), config, shutdown_trigger=stop.wait))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        await task
        sock.close()


SERVERS: dict[str, Callable[[list[str]], Any]] = {
    "starlette-uvicorn": uvicorn_server,
    "quart-hypercorn": hypercorn_server,
}


async def query(address: str, framework: str, tls: _harness.TLS | None = None) -> None:
    scheme = "https" if tls else "http"
    async with httpx.AsyncClient(
        base_url=f"{scheme}://{address}",
        timeout=10,
        verify=tls.client if tls else True,
        http2=tls is not None and framework == "quart",
    ) as client:
        r = await client.get("/", params={"q": "trio"})
        assert r.json() == {"framework": framework, "q": "trio"}
        if tls and framework == "quart":
            assert r.http_version == "HTTP/2"
        r = await client.post("/echo", content="stressed")
        assert r.text == "desserts"
        async with client.stream("GET", "/numbers") as r:
            lines = [line async for line in r.aiter_lines()]
        assert lines == [str(i) for i in range(100)]
        results = await asyncio.gather(*(client.get("/", params={"q": str(i)}) for i in range(20)))
        assert [r.json()["q"] for r in results] == [str(i) for i in range(20)]
    ws_url = f"{'wss' if tls else 'ws'}://{address}/ws"
    async with websockets_client.connect(ws_url, ssl=tls.client if tls else None) as ws:
        for word in ("one", "two"):
            await ws.send(word)
            assert await ws.recv() == f"{framework}: {word}"


async def slow_request(address: str) -> None:
    """Read the first line of ``/slow``, then wait for the rest (which never comes)."""
    async with (
        httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as client,
        client.stream("GET", "/slow") as r,
    ):
        lines = r.aiter_lines()
        assert await anext(lines) == "first"
        await anext(lines)
    raise AssertionError("not reached")


async def scenario_serve(name: str, tls: _harness.TLS | None = None) -> None:
    events: list[str] = []
    async with SERVERS[name](events, tls) as address:
        await query(address, name.split("-")[0], tls)
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


@pytest.fixture(params=sorted(SERVERS))
def server_name(request: pytest.FixtureRequest) -> str:
    pytest.importorskip("uvicorn" if request.param == "starlette-uvicorn" else "hypercorn")
    pytest.importorskip("starlette" if request.param == "starlette-uvicorn" else "quart")
    return request.param


def test_serve(run, server_name: str) -> None:
    run(scenario_serve, server_name)


def test_serve_tls(run, server_name: str, tls: _harness.TLS) -> None:
    if server_name == "quart-hypercorn":
        pytest.importorskip("h2")
    run(scenario_serve, server_name, tls)


def test_served_inside_trio_program(server_name: str) -> None:
    """The server is an asyncio task started from a Trio nursery; Trio queries it."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        events: list[str] = []
        framework = server_name.split("-")[0]
        async with aio_as_trio(SERVERS[server_name](events)) as address:
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(aio_as_trio(query), address, framework)
            # A request cut short by a Trio timeout: the client disconnects,
            # the server cancels the handler and goes on serving.
            with trio.move_on_after(0.5) as timeout:
                await aio_as_trio(slow_request)(address)
            assert timeout.cancelled_caught
            await aio_as_trio(query)(address, framework)
        assert events == ["startup", "slow cancelled", "shutdown"]

    _harness.run_trio(main)


def all_modes() -> None:
    for name in sorted(SERVERS):
        _harness.run_all_modes(scenario_serve, name)


def test_imported_first() -> None:
    for module in ("uvicorn", "starlette", "hypercorn", "quart"):
        pytest.importorskip(module)
    _harness.check_imported_first("uvicorn, starlette, hypercorn, quart", "test_asgi", "all_modes")
