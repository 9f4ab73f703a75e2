"""aiohttp: server and client on one loop (HTTP, streaming, websockets, disconnects)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import _harness
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

CHUNK = b"0123456789abcdef" * 1024  # 16 KiB
N_CHUNKS = 64


@asynccontextmanager
async def serve(
    app: web.Application, ssl_context: ssl.SSLContext | None = None, **runner_kw: object
) -> AsyncIterator[str]:
    runner = web.AppRunner(app, **runner_kw)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}"
    finally:
        await runner.cleanup()


def make_app(file_path: Path | None = None) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.query.get('name', 'world')}")

    async def echo_json(request: web.Request) -> web.Response:
        data = await request.json()
        return web.json_response({"got": data, "method": request.method})

    async def download(request: web.Request) -> web.StreamResponse:
        n = int(request.query["n"])
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(n):
            await response.write(CHUNK)
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(4096):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=8 * 1024 * 1024)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close(code=4001, message=b"asked to")
                    break
                await ws.send_str(msg.data.upper())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    async def file(request: web.Request) -> web.FileResponse:
        assert file_path is not None
        return web.FileResponse(file_path)  # loop.sendfile() where it can

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/file", file)
    app.router.add_get("/hello", hello)
    app.router.add_post("/json", echo_json)
    app.router.add_put("/json", echo_json)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/ws", ws_echo)
    return app


def write_file(directory: Path) -> bytes:
    content = os.urandom(3 * 1024 * 1024 + 17)
    (directory / "served.bin").write_bytes(content)
    return content


async def exercise_http(base: str, session: aiohttp.ClientSession, content: bytes) -> None:
    async with session.get(f"{base}/hello", params={"name": "trio"}) as r:
        assert r.status == 200
        assert await r.text() == "hello trio"

    async with session.post(f"{base}/json", json={"a": [1, 2, 3]}) as r:
        assert await r.json() == {"got": {"a": [1, 2, 3]}, "method": "POST"}

    # Concurrent requests share the connection pool.
    async def put(i: int) -> object:
        async with session.put(f"{base}/json", json=i) as r:
            return (await r.json())["got"]

    assert await asyncio.gather(*(put(i) for i in range(20))) == list(range(20))

    # A streamed download, read in pieces.
    async with session.get(f"{base}/download", params={"n": str(N_CHUNKS)}) as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        total = bytearray()
        async for piece in r.content.iter_chunked(5000):
            total += piece
    assert bytes(total) == CHUNK * N_CHUNKS

    # A streamed upload from an async generator.
    async def body() -> AsyncIterator[bytes]:
        for _ in range(N_CHUNKS):
            yield CHUNK

    async with session.post(f"{base}/upload", data=body()) as r:
        assert await r.json() == {
            "size": len(CHUNK) * N_CHUNKS,
            "sha256": hashlib.sha256(CHUNK * N_CHUNKS).hexdigest(),
        }

    # A file response (sendfile on plain connections, a fallback under TLS),
    # whole and as a range.
    async with session.get(f"{base}/file") as r:
        assert await r.read() == content
    async with session.get(f"{base}/file", headers={"Range": "bytes=1000-1999"}) as r:
        assert r.status == 206
        assert await r.read() == content[1000:2000]


async def exercise_websocket(base: str, session: aiohttp.ClientSession) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB
    url = base.replace("http", "ws", 1) + "/ws"
    async with session.ws_connect(url, max_msg_size=8 * 1024 * 1024) as ws:
        await ws.send_str("hello")
        assert (await ws.receive_str()) == "HELLO"
        await ws.send_bytes(big)
        assert (await ws.receive_bytes()) == big[::-1]
        await ws.send_str("close-me")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4001 or msg.data == 4001


async def scenario_http(directory: Path) -> None:
    content = write_file(directory)
    app = make_app(directory / "served.bin")
    async with serve(app) as base, aiohttp.ClientSession() as session:
        await exercise_http(base, session, content)
        await exercise_websocket(base, session)
        # By name: "localhost" may resolve to ::1 first, where nothing listens.
        port = base.rsplit(":", 1)[1]
        async with session.get(f"http://localhost:{port}/hello") as r:
            assert await r.text() == "hello world"


async def scenario_https(directory: Path, tls: _harness.TLS) -> None:
    content = write_file(directory)
    app = make_app(directory / "served.bin")
    connector = aiohttp.TCPConnector(ssl=tls.client)
    async with (
        serve(app, ssl_context=tls.server) as base,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        assert base.startswith("https://")
        await exercise_http(base, session, content)
        await exercise_websocket(base, session)
        # A client that does not trust the CA is refused.
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await untrusting.get(f"{base}/hello")


async def scenario_unix(directory: Path) -> None:
    content = write_file(directory)
    path = str(directory / "http.sock")
    runner = web.AppRunner(make_app(directory / "served.bin"))
    await runner.setup()
    try:
        await web.UnixSite(runner, path).start()
        connector = aiohttp.UnixConnector(path=path)
        async with aiohttp.ClientSession(connector=connector) as session:
            await exercise_http("http://unix", session, content)
    finally:
        await runner.cleanup()


def make_hanging_app(started: asyncio.Future[None], cancelled: asyncio.Future[None]) -> object:
    async def hang(request: web.Request) -> web.Response:
        if not started.done():
            started.set_result(None)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if not cancelled.done():
                cancelled.set_result(None)
            raise
        raise AssertionError("not reached")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/hang", hang)
    app.router.add_get("/ok", ok)
    return app


@asynccontextmanager
async def hanging_server() -> AsyncIterator[tuple[str, object, asyncio.Future, asyncio.Future]]:
    """A server whose ``/hang`` handler reports when it starts and when it is cancelled."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()
    cancelled: asyncio.Future[None] = loop.create_future()
    app = make_hanging_app(started, cancelled)
    async with serve(app, handler_cancellation=True) as base, aiohttp.ClientSession() as session:
        yield base, session, started, cancelled


async def get_text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as r:
        r.raise_for_status()
        return await r.text()


async def scenario_client_disconnect() -> None:
    async with hanging_server() as (base, session, started, cancelled):
        task = asyncio.ensure_future(get_text(session, f"{base}/hang"))
        await started
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The server notices the closed connection and cancels the handler.
        await asyncio.wait_for(cancelled, 10)
        assert await get_text(session, f"{base}/ok") == "ok"


def test_http(run, tmp_path: Path) -> None:
    run(scenario_http, tmp_path)


def test_https(run, tmp_path: Path, tls: _harness.TLS) -> None:
    run(scenario_https, tmp_path, tls)


async def scenario_https_debug(directory: Path, tls: _harness.TLS) -> None:
    # What `python -X dev` and PYTHONASYNCIODEBUG=1 do.
    asyncio.get_running_loop().set_debug(True)
    await scenario_https(directory, tls)


def test_https_debug_mode(run, tmp_path: Path, tls: _harness.TLS) -> None:
    """In debug mode the server reports the untrusting client's failed handshake.

    In a Trio-hosted loop that report once ended the whole program (a remote
    peer could stop the Trio app); like the stdlib, it is only logged now.
    """
    run(scenario_https_debug, tmp_path, tls)


def test_unix_socket(run, tmp_path: Path) -> None:
    run(scenario_unix, tmp_path)


def test_handler_cancelled_on_disconnect(run) -> None:
    run(scenario_client_disconnect)


def test_trio_cancels_client_request() -> None:
    """A Trio cancel scope around the client request disconnects it; the handler is cancelled."""
    import trio

    import trio_asyncio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        async with trio_asyncio.aio_as_trio(hanging_server()) as (
            base,
            session,
            started,
            cancelled,
        ):
            async with trio.open_nursery() as nursery:
                scope = trio.CancelScope()

                async def client() -> None:
                    with scope:
                        await trio_asyncio.aio_as_trio(get_text)(session, f"{base}/hang")

                nursery.start_soon(client)
                await trio_asyncio.aio_as_trio(started)
                scope.cancel()
            assert scope.cancelled_caught
            with trio.fail_after(10):
                await trio_asyncio.aio_as_trio(cancelled)
            # The session is still usable.
            assert await trio_asyncio.aio_as_trio(get_text)(session, f"{base}/ok") == "ok"

            # And a timeout from Trio around a request works the same way.
            with trio.move_on_after(0.2) as timeout:
                await trio_asyncio.aio_as_trio(get_text)(session, f"{base}/hang")
            assert timeout.cancelled_caught

    _harness.run_trio(main)


def all_modes() -> None:
    for runner in _harness.all_runners():
        with tempfile.TemporaryDirectory() as directory:
            runner(scenario_http, Path(directory))


def test_imported_first() -> None:
    _harness.check_imported_first("aiohttp", "test_aiohttp", "all_modes")
