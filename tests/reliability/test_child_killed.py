"""A child process killed (SIGKILL) while we write to its stdin and read its stdout.

On every driver (the stdlib loop as the reference, ``open_loop`` and the
sync loop), two ways:

- ``test_streams_*``: ``asyncio.create_subprocess_exec`` with stdin/stdout
  pipes. The writer loops ``write()`` + ``drain()``; the reader reads until
  EOF. The child is killed either mid-stream (it echoes what we write, and
  is killed once a random amount has come back) or while our ``drain()`` is
  blocked (it reads nothing, so the stdin pipe fills and writing pauses).
  Then: ``drain()`` fails with ``BrokenPipeError`` or
  ``ConnectionResetError`` (the two ways a closed pipe is reported), the
  reader gets EOF, ``wait()`` returns ``-SIGKILL``, and the child is reaped.
- ``test_protocol_*``: the same over ``loop.subprocess_exec`` with a
  SubprocessProtocol that counts every callback: ``pipe_connection_lost``
  exactly once per pipe, ``process_exited`` once, ``connection_lost`` once
  and last; the stdin pipe transport is closing and the return code -9.

Everything is bounded by ``asyncio.wait_for`` (:data:`TIMEOUT`); the
leak guard checks fds and threads after each test.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from _children import assert_reaped

KB = 1024
TIMEOUT = 20.0
SEED = int(os.environ.get("TRIO_ASYNCIO_FAULT_SEED", "7707"))

#: Echoes stdin to stdout in small pieces (a child that streams).
ECHO_CHILD = (
    "import os\n"
    "while True:\n"
    "    data = os.read(0, 4096)\n"
    "    if not data:\n"
    "        break\n"
    "    os.write(1, data)\n"
)
#: Reads nothing and writes nothing: our writes to it must pause.
STUCK_CHILD = "import time\ntime.sleep(60)\n"

CHILDREN = {"echo": ECHO_CHILD, "stuck": STUCK_CHILD}
#: The errors a write to a killed child may end with.
PIPE_ERRORS = (BrokenPipeError, ConnectionResetError)


# ---- asyncio.subprocess (streams) ---------------------------------------------------------


async def streams_scenario(child: str, seed: int) -> dict[str, Any]:
    """Write and read until the child is killed; report what each side saw."""
    rng = random.Random(seed)
    kill_after = rng.randint(1, 256 * KB)  # echo: bytes read back before the kill
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILDREN[child],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    loop = asyncio.get_running_loop()
    blocked = loop.create_future()  # the writer is waiting in a paused drain()
    got_enough = loop.create_future()  # the reader has read kill_after bytes
    report: dict[str, Any] = {"pid": proc.pid, "written": 0, "read": 0}

    async def write() -> None:
        transport: Any = stdin.transport
        high = transport.get_write_buffer_limits()[1]
        try:
            while True:
                stdin.write(rng.randbytes(rng.randint(1, 32 * KB)))
                report["written"] += 1
                if transport.get_write_buffer_size() > high and not blocked.done():
                    blocked.set_result(None)
                await stdin.drain()
        except PIPE_ERRORS as exc:
            report["write_error"] = type(exc).__name__

    async def read() -> None:
        while data := await stdout.read(64 * KB):
            report["read"] += len(data)
            if report["read"] >= kill_after and not got_enough.done():
                got_enough.set_result(None)
        report["eof"] = stdout.at_eof()

    writer, reader = asyncio.ensure_future(write()), asyncio.ensure_future(read())
    try:
        await (got_enough if child == "echo" else blocked)
        proc.kill()
        report["returncode"] = await proc.wait()
        await asyncio.gather(writer, reader)
    finally:
        for task in (writer, reader):
            task.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    report["stdin_closing"] = stdin.transport.is_closing()
    return report


@pytest.mark.parametrize("child", sorted(CHILDREN))
def test_streams_child_killed(aio_run_every_driver: Callable[..., Any], child: str) -> None:
    seed = zlib.crc32(f"{SEED}:streams:{child}".encode())

    async def main() -> dict[str, Any]:
        return await asyncio.wait_for(streams_scenario(child, seed), TIMEOUT)

    report = aio_run_every_driver(main)
    print(f"\nseed {seed}: {report}")
    assert_reaped(report["pid"])
    assert report["returncode"] == -signal.SIGKILL, report
    assert report.get("write_error") in ("BrokenPipeError", "ConnectionResetError"), report
    assert report["eof"] is True, report
    assert report["stdin_closing"] is True, report
    if child == "echo":
        assert report["read"] > 0, report
    else:
        assert report["read"] == 0, report


# ---- loop.subprocess_exec (protocol) ----------------------------------------------------------


class CountingProtocol(asyncio.SubprocessProtocol):
    """Records every callback, in order, and wakes the scenario as things happen."""

    def __init__(self, kill_after: int) -> None:
        loop = asyncio.get_running_loop()
        self.events: list[str] = []
        self.lost_pipes: dict[int, list[BaseException | None]] = {}
        self.read = 0
        self.kill_after = kill_after
        self.got_enough = loop.create_future()
        self.paused = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.done = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("connection_made")

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.read += len(data)
        if self.read >= self.kill_after and not self.got_enough.done():
            self.got_enough.set_result(None)

    def pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self.events.append(f"pipe_connection_lost({fd})")
        self.lost_pipes.setdefault(fd, []).append(exc)
        if fd == 0:
            self.writable.set()  # wake the writer: it stops

    def pause_writing(self) -> None:
        self.writable.clear()
        if not self.paused.done():
            self.paused.set_result(None)

    def resume_writing(self) -> None:
        self.writable.set()

    def process_exited(self) -> None:
        self.events.append("process_exited")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("connection_lost")
        if not self.done.done():
            self.done.set_result(exc)


async def protocol_scenario(child: str, seed: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    transport, protocol = await loop.subprocess_exec(
        lambda: CountingProtocol(rng.randint(1, 256 * KB)),
        sys.executable,
        "-c",
        CHILDREN[child],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
    )
    stdin: Any = transport.get_pipe_transport(0)

    async def write() -> None:
        while not stdin.is_closing() and 0 not in protocol.lost_pipes:
            await protocol.writable.wait()
            stdin.write(rng.randbytes(rng.randint(1, 32 * KB)))
            # Let the loop notice the child's end: once the pipe is lost,
            # writes are dropped without pausing, and wait() returns at once.
            await asyncio.sleep(0)

    writer = asyncio.ensure_future(write())
    try:
        await (protocol.got_enough if child == "echo" else protocol.paused)
        transport.kill()
        lost_exc = await protocol.done
        await writer
        # A last write after the loss is dropped silently (as by the stdlib).
        stdin.write(b"dropped")
    finally:
        writer.cancel()
        transport.close()
    return {
        "pid": transport.get_pid(),
        "returncode": transport.get_returncode(),
        "events": protocol.events,
        "lost_pipes": {
            fd: [type(e).__name__ for e in excs] for fd, excs in protocol.lost_pipes.items()
        },
        "lost_exc": lost_exc,
        "read": protocol.read,
        "stdin_closing": stdin.is_closing(),
    }


@pytest.mark.parametrize("child", sorted(CHILDREN))
def test_protocol_child_killed(aio_run_every_driver: Callable[..., Any], child: str) -> None:
    seed = zlib.crc32(f"{SEED}:protocol:{child}".encode())

    async def main() -> dict[str, Any]:
        return await asyncio.wait_for(protocol_scenario(child, seed), TIMEOUT)

    report = aio_run_every_driver(main)
    print(f"\nseed {seed}: {report}")
    assert_reaped(report["pid"])
    assert report["returncode"] == -signal.SIGKILL, report
    events = report["events"]
    assert events[0] == "connection_made", report
    assert events[-1] == "connection_lost", report
    for name in ("connection_made", "process_exited", "connection_lost"):
        assert events.count(name) == 1, report
    assert sorted(report["lost_pipes"]) == [0, 1], report
    for excs in report["lost_pipes"].values():
        assert len(excs) == 1, report
        assert excs[0] in ("NoneType", *(e.__name__ for e in PIPE_ERRORS)), report
    assert report["lost_exc"] is None, report
    assert report["stdin_closing"], report
