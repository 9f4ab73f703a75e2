"""An aiohttp web server inside a Trio nursery, next to ordinary Trio tasks.

aiohttp is an asyncio library. Here it runs on trio-asyncio's loop, in a Trio
program: the server is one task of a Trio nursery, a Trio heartbeat task
runs beside it, and the request handler calls back into Trio code. A small
aiohttp client sends a few requests, then the program cancels the nursery
and the server shuts down cleanly.

Run it with ``python examples/aiohttp_server.py`` (needs ``pip install aiohttp``).
"""

from __future__ import annotations

import aiohttp
import trio
from aiohttp import web

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio

# ---- Trio code ---------------------------------------------------------------


async def trio_slow_square(n: int) -> int:
    """Some Trio code that the asyncio request handler wants to use."""
    await trio.sleep(0.01)
    return n * n


# ---- asyncio code (aiohttp) ----------------------------------------------------


async def handle_square(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    # From asyncio, Trio code is called through trio_as_aio().
    result = await trio_as_aio(trio_slow_square)(n)
    return web.json_response({"n": n, "square": result})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/square/{n}", handle_square)
    return app


async def fetch_squares(base_url: str, numbers: list[int]) -> list[dict[str, int]]:
    """An aiohttp client: plain asyncio code, unaware of Trio."""
    replies = []
    async with aiohttp.ClientSession() as session:
        for n in numbers:
            async with session.get(f"{base_url}/square/{n}") as response:
                response.raise_for_status()
                replies.append(await response.json())
    return replies


# ---- the Trio program ------------------------------------------------------------


async def serve(app: web.Application, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve *app* until cancelled; report the port through ``nursery.start()``."""
    runner = web.AppRunner(app)
    # From Trio, asyncio code is called through aio_as_trio().
    await aio_as_trio(runner.setup)()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)  # port 0: any free port
        await aio_as_trio(site.start)()
        port = runner.addresses[0][1]
        task_status.started(port)
        await trio.sleep_forever()
    finally:
        # Cancelled by the nursery: shut the server down before leaving.
        with trio.CancelScope(shield=True):
            await aio_as_trio(runner.cleanup)()
            print("server: stopped")


async def heartbeat(beats: list[float]) -> None:
    """An ordinary Trio task, running while the server serves."""
    while True:
        beats.append(trio.current_time())
        await trio.sleep(0.005)


async def main() -> None:
    beats: list[float] = []
    async with trio_asyncio.open_loop():
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, make_app())
            print(f"server: listening on http://127.0.0.1:{port}")
            nursery.start_soon(heartbeat, beats)

            replies = await aio_as_trio(fetch_squares)(f"http://127.0.0.1:{port}", [2, 3, 4])
            for reply in replies:
                print(f"client: {reply['n']} squared is {reply['square']}")

            nursery.cancel_scope.cancel()  # stop the server and the heartbeat
    print(f"heartbeat: a Trio task beat {len(beats)} times while the server ran")
    print("done")


if __name__ == "__main__":
    trio.run(main)
