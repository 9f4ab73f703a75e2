"""trio-asyncio in one minute: a Trio program serving an aiohttp (asyncio) app.

The program is Trio. It opens an asyncio loop with ``trio_asyncio.open_loop()``,
starts an aiohttp web server (an asyncio library) in a Trio nursery, and
queries it with a tiny HTTP client written with Trio's own sockets. The
request handler is asyncio code that calls back into Trio. Every line says
which side is running, and what ``sniffio`` (how libraries detect the async
library they run under) answers there.

Run it with ``make demo``, or ``python examples/demo.py`` (needs aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import sys

import sniffio
import trio

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio

try:
    from aiohttp import web
except ImportError:
    sys.exit("The demo needs aiohttp: run 'make demo', or pip install -e '.[demo]'.")


def say(text: str) -> None:
    """Print *text*, labelled with the library running this code (per sniffio)."""
    print(f"  [{sniffio.current_async_library():>7}] {text}", flush=True)


def step(text: str) -> None:
    print(f"\n{text}", flush=True)


# ---- Trio code, used by the asyncio handler ------------------------------------------


async def trio_lookup(name: str) -> str:
    await trio.sleep(0.01)  # a Trio sleep: this is real Trio code
    say(f"the Trio helper looks up {name!r}")
    return f"Hello, {name}!"


# ---- the aiohttp (asyncio) application -------------------------------------------------


async def hello(request: web.Request) -> web.Response:
    name = request.query.get("name", "world")
    say(f"the aiohttp handler got GET {request.path_qs}; it calls Trio with trio_as_aio")
    greeting = await trio_as_aio(trio_lookup)(name)
    return web.json_response(
        {"greeting": greeting, "handler ran under": sniffio.current_async_library()}
    )


async def on_startup(app: web.Application) -> None:
    say("aiohttp's on_startup hook runs: aiohttp code runs in asyncio")


async def start_server(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the app until cancelled (a Trio task); report the port to ``nursery.start``."""
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.on_startup.append(on_startup)
    runner = web.AppRunner(app)
    await aio_as_trio(runner.setup)()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await aio_as_trio(site.start)()
        port = runner.addresses[0][1]
        say(f"aiohttp is serving on http://127.0.0.1:{port} (started with aio_as_trio)")
        task_status.started(port)
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):  # cleanup must run even when cancelled
            await aio_as_trio(runner.cleanup)()
            say("aiohttp server stopped")


# ---- a tiny Trio HTTP client ------------------------------------------------------------


async def http_get(port: int, path: str) -> tuple[int, dict[str, str]]:
    """GET *path* over HTTP/1.1 with ``trio.open_tcp_stream``; return (status, JSON body)."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode("ascii"))
        response = b""
        while chunk := await stream.receive_some():
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


# ---- the Trio program --------------------------------------------------------------------


async def main() -> None:
    print("Each line below is labelled with the async library that runs it,")
    print("as sniffio.current_async_library() reports it right there.")
    step("1. The program starts with trio.run(): this is Trio code.")
    say("main() is running")

    step("2. Open an asyncio event loop inside Trio: async with trio_asyncio.open_loop().")
    async with trio_asyncio.open_loop() as loop:
        say(f"the loop is a {type(loop).__name__}")

        async with trio.open_nursery() as nursery:
            step("3. Start aiohttp, an asyncio library, as a task of a Trio nursery.")
            port = await nursery.start(start_server)

            step("4. Query it with a Trio HTTP client (trio.open_tcp_stream).")
            status, body = await http_get(port, "/hello?name=Trio")
            say(f"got {status} {body}")

            step("5. Three requests at once, from three Trio tasks.")
            async with trio.open_nursery() as clients:
                for name in ("Ann", "Bob", "Cy"):
                    clients.start_soon(fetch_and_show, port, name)

            step("6. A Trio timeout cancels asyncio code: move_on_after(0.1) around asyncio.sleep.")
            with trio.move_on_after(0.1) as scope:
                await aio_as_trio(asyncio_sleep)(3600)
            say(f"cancelled: {scope.cancelled_caught}")

            step("7. Cancel the nursery: the server shuts down, then the loop closes.")
            nursery.cancel_scope.cancel()
    say("open_loop() has closed the asyncio loop")
    step("Done: the demo exits with status 0.")


async def fetch_and_show(port: int, name: str) -> None:
    status, body = await http_get(port, f"/hello?name={name}")
    say(f"got {status} {body['greeting']!r}")


async def asyncio_sleep(seconds: float) -> None:
    say(f"asyncio.sleep({seconds}) starts")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        say("asyncio.sleep was cancelled (asyncio.CancelledError)")
        raise


if __name__ == "__main__":
    trio.run(main)
