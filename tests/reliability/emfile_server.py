"""An echo server that runs out of file descriptors while accepting (run by test_emfile.py).

Usage: python emfile_server.py DRIVER REPORT_TO RETRY WINDOW

- DRIVER: ``stdlib`` (a SelectorEventLoop, the reference), ``sync`` (our
  sync-mode loop) or ``trio`` (our loop in ``trio.run`` + ``open_loop``);
- REPORT_TO: ``log`` (no exception handler of ours: the default one logs)
  or ``handler`` (``loop.set_exception_handler``);
- RETRY: the accept retry delay to use, in seconds (the stdlib's and ours
  are 1 s; patched here to keep the test short);
- WINDOW: how long to watch the server while it is out of fds.

The scenario, all in this process:

1. An echo server starts; :data:`PENDING` clients connect (plain sockets;
   the kernel completes the handshakes, the server has not accepted yet).
2. ``RLIMIT_NOFILE`` is lowered and the fd table filled up so that exactly
   :data:`SLOTS` fds are free: the server accepts that many connections,
   then ``accept()`` fails with EMFILE.
3. For WINDOW seconds the server is watched: how many ``accept()`` calls it
   makes (``socket.socket.accept`` is wrapped), how much CPU the process
   uses, what is reported; meanwhile one accepted connection is echoed now
   and then, to show that the loop still serves.
4. The first SLOTS clients close: their server sides close, fds free up.
   The server must accept the remaining clients (after its retry delay)
   and echo on each, and a brand new connection must work too.

Prints one JSON object with the measurements on stdout.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import resource
import socket
import sys
import time
from typing import Any

#: Connections the server can accept before it runs out of fds.
SLOTS = 8
#: Clients that connect before the fds run out.
PENDING = 16
#: How often an accepted connection is echoed while the server is starved.
ECHO_EVERY = 0.1
MESSAGE = "socket.accept() out of system resource"

accept_calls = 0
_accept = socket.socket.accept


def counting_accept(self: socket.socket) -> tuple[socket.socket, Any]:
    """``socket.socket.accept``, counted (both loops call it on the listening socket)."""
    global accept_calls
    accept_calls += 1
    return _accept(self)


socket.socket.accept = counting_accept  # type: ignore[method-assign]


def fill_fd_table(free: int) -> list[int]:
    """Lower RLIMIT_NOFILE and open fds until exactly *free* fds are left."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    fillers = []
    while True:
        try:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
            break
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + free, hard))
    return fillers


async def echo_once(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes) -> bool:
    await loop.sock_sendall(sock, data)
    got = b""
    while len(got) < len(data):
        chunk = await loop.sock_recv(sock, len(data) - len(got))
        if not chunk:
            return False
        got += chunk
    return got == data


async def scenario(report_to: str, window: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    first_report = loop.create_future()

    def record(message: str, exc: BaseException | None) -> None:
        reports.append({"message": message, "errno": getattr(exc, "errno", None)})
        if not first_report.done():
            first_report.set_result(None)

    if report_to == "handler":
        loop.set_exception_handler(
            lambda loop, context: record(context["message"], context.get("exception"))
        )
    else:

        class Capture(logging.Handler):
            def emit(self, record_: logging.LogRecord) -> None:
                exc = record_.exc_info[1] if record_.exc_info else None
                record(record_.getMessage().splitlines()[0], exc)

        logging.getLogger("asyncio").addHandler(Capture())

    accepted: list[asyncio.BaseTransport] = []
    closed: list[asyncio.BaseTransport] = []
    all_accepted = loop.create_future()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            accepted.append(transport)
            if len(accepted) == PENDING and not all_accepted.done():
                all_accepted.set_result(None)

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

        def connection_lost(self, exc: BaseException | None) -> None:
            closed.append(self.transport)

    server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=128)
    address = server.sockets[0].getsockname()
    clients = []
    for _ in range(PENDING):
        client = socket.create_connection(address)  # done by the kernel's backlog
        client.setblocking(False)
        clients.append(client)
    fillers = fill_fd_table(SLOTS)

    # Out of fds after SLOTS connections: the first report.
    await asyncio.wait_for(first_report, 10)
    result: dict[str, Any] = {"loop": type(loop).__name__, "accepted_when_starved": len(accepted)}

    # The starved period: count accept() calls and CPU time.
    calls, reports_before = accept_calls, len(reports)
    cpu, start = time.process_time(), time.monotonic()
    echoes = 0
    while time.monotonic() - start < window:
        assert await echo_once(loop, clients[echoes % SLOTS], b"ping %d" % echoes)
        echoes += 1
        await asyncio.sleep(ECHO_EVERY)
    elapsed = time.monotonic() - start
    result.update(
        window=elapsed,
        accept_calls_in_window=accept_calls - calls,
        reports_in_window=len(reports) - reports_before,
        cpu_in_window=time.process_time() - cpu,
        echoes_while_starved=echoes,
        accepted_after_window=len(accepted),
    )

    # Free fds: the first SLOTS clients leave, and so do their server sides.
    for client in clients[:SLOTS]:
        client.close()
    await asyncio.wait_for(all_accepted, 10)
    result["echo_after"] = all(
        [await echo_once(loop, client, b"again") for client in clients[SLOTS:]]
    )
    reader, writer = await asyncio.open_connection(*address[:2])
    writer.write(b"new")
    result["new_connection_echo"] = await reader.readexactly(3) == b"new"
    result["serving"] = server.is_serving()
    writer.close()
    await writer.wait_closed()

    for client in clients[SLOTS:]:
        client.close()
    for fd in fillers:
        os.close(fd)
    server.close()
    await server.wait_closed()
    for transport in accepted:
        transport.close()
    result["reports"] = sorted({(r["message"], r["errno"]) for r in reports})
    result["reports_total"] = len(reports)
    return result


def main() -> None:
    driver, report_to = sys.argv[1], sys.argv[2]
    retry, window = float(sys.argv[3]), float(sys.argv[4])
    if driver == "stdlib":
        import asyncio.constants

        asyncio.constants.ACCEPT_RETRY_DELAY = retry  # type: ignore[misc]
        loop = asyncio.SelectorEventLoop()
        try:
            result = loop.run_until_complete(scenario(report_to, window))
        finally:
            loop.close()
    else:
        import trio

        import trio_asyncio
        from trio_asyncio._io import _server

        _server.ACCEPT_RETRY_DELAY = retry
        if driver == "sync":
            loop = trio_asyncio.new_event_loop()
            try:
                result = loop.run_until_complete(scenario(report_to, window))
            finally:
                loop.close()
        else:

            async def trio_main() -> dict[str, Any]:
                async with trio_asyncio.open_loop():
                    return await trio_asyncio.aio_as_trio(scenario)(report_to, window)  # type: ignore[no-any-return]

            result = trio.run(trio_main)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
