"""``sock_*`` waits in loops of several threads at once (found by the soak test).

The clean-up callback of a ``sock_*`` wait (``_forget_reader`` /
``_forget_writer``) used to run in one ``contextvars.Context`` shared by
every loop. A Context cannot be entered by two threads at once, so loops in
different threads failed now and then with "cannot enter context: ... is
already entered", reported to their exception handlers, and the fd stayed
registered. A tiny GIL switch interval makes the overlap near certain.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from typing import Any

import trio_asyncio

THREADS = 4
ROUNDS = 500


async def _ping_pong(rounds: int) -> None:
    """One byte back and forth over a socket pair: every sock_recv waits for readiness."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    async def echo() -> None:
        for _ in range(rounds):
            await loop.sock_sendall(b, await loop.sock_recv(b, 1))

    with a, b:
        echoing = asyncio.ensure_future(echo())
        for _ in range(rounds):
            await loop.sock_sendall(a, b"x")
            assert await loop.sock_recv(a, 1) == b"x"
        await echoing


def test_sock_waits_in_sync_loops_of_several_threads_at_once() -> None:
    reports: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def worker() -> None:
        loop = trio_asyncio.new_event_loop()
        loop.set_exception_handler(lambda _, context: reports.append(context))
        try:
            loop.run_until_complete(_ping_pong(ROUNDS))
        except BaseException as exc:
            failures.append(exc)
        finally:
            loop.close()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert reports == []
