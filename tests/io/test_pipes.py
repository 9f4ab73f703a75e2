"""Pipe transports: connect_read_pipe and connect_write_pipe.

Scenarios run on both the stdlib selector loop and ours (``aio_run``) with the
same assertions; where we deliberately differ (or look at our internals) the
test uses ``trio_aio_run``. Synchronisation is by futures, never by time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trio_asyncio._io._pipes import ReadPipeTransport, WritePipeTransport


@pytest.fixture
def aio_run(aio_run_every_driver: Callable[..., Any]) -> Callable[..., Any]:
    """Overrides the conftest's: the stdlib loop and *both* our drivers."""
    return aio_run_every_driver


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_leaked_fds() -> Iterator[None]:
    """Every test closes everything it opened: same fd count before and after."""
    gc.collect()
    before = open_fds()
    yield
    gc.collect()
    assert open_fds() == before


def old_stdlib(loop: asyncio.AbstractEventLoop) -> bool:
    """The 3.10 stdlib read pipe has no is_reading() and reads even if paused early."""
    return sys.version_info < (3, 11) and isinstance(loop, asyncio.SelectorEventLoop)


def pipe_files() -> tuple[Any, Any]:
    """An os.pipe() as unbuffered (read, write) file objects."""
    r, w = os.pipe()
    return os.fdopen(r, "rb", buffering=0), os.fdopen(w, "wb", buffering=0)


class Recorder(asyncio.Protocol):
    """Records every protocol call; ``lost`` resolves with connection_lost's argument."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.events: list[Any] = []
        self.data = bytearray()
        self.transport: Any = None
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.paused: asyncio.Future[None] = loop.create_future()
        self.resumed: asyncio.Future[None] = loop.create_future()
        self.data_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.events[0] == "made"
        self.events.append("data")
        self.data += data
        if self.data_waiter is not None and not self.data_waiter.done():
            self.data_waiter.set_result(None)

    def eof_received(self) -> None:
        self.events.append("eof")
        self.eof.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.events.append("pause")
        self.paused.set_result(None)

    def resume_writing(self) -> None:
        self.events.append("resume")
        self.resumed.set_result(None)

    async def wait_for_data(self, size: int) -> bytes:
        while len(self.data) < size:
            self.data_waiter = asyncio.get_running_loop().create_future()
            await self.data_waiter
        return bytes(self.data)


def drain_into(loop: asyncio.AbstractEventLoop, rfile: Any, sink: bytearray) -> None:
    """Read everything that arrives on *rfile* into *sink* (a plain add_reader)."""
    os.set_blocking(rfile.fileno(), False)

    def readable() -> None:
        try:
            data = os.read(rfile.fileno(), 1 << 20)
        except BlockingIOError:
            return
        if data:
            sink.extend(data)
        else:
            loop.remove_reader(rfile.fileno())

    loop.add_reader(rfile.fileno(), readable)


# ---- read pipes -------------------------------------------------------------------


def test_read_pipe_pieces_and_eof(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_read_pipe(Recorder, rfile)
            assert proto.events == ["made"]
            assert transport.get_extra_info("pipe") is rfile
            assert old_stdlib(loop) or transport.is_reading()
            assert not transport.is_closing()
            assert not os.get_blocking(rfile.fileno())
            wfile.write(b"ab")
            assert await proto.wait_for_data(2) == b"ab"
            wfile.write(b"cd")
            assert await proto.wait_for_data(4) == b"abcd"
            wfile.close()
            assert await proto.lost is None
            assert proto.events[0] == "made"
            assert proto.events[-2:] == ["eof", "lost"]
            assert set(proto.events[1:-2]) == {"data"}
            assert transport.is_closing()
            assert rfile.closed  # the transport closed its pipe
            transport.close()  # no second connection_lost
            await asyncio.sleep(0)
            assert proto.events.count("lost") == 1
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_read_pipe_pause_and_resume(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_read_pipe(Recorder, rfile)
            transport.pause_reading()
            transport.pause_reading()  # idempotent
            assert old_stdlib(loop) or not transport.is_reading()
            wfile.write(b"held")
            for _ in range(5):
                await asyncio.sleep(0)
            assert proto.data == b""  # not read while paused
            transport.resume_reading()
            transport.resume_reading()  # idempotent
            assert old_stdlib(loop) or transport.is_reading()
            assert await proto.wait_for_data(4) == b"held"
            transport.close()
            assert old_stdlib(loop) or not transport.is_reading()
            assert await proto.lost is None
            assert "eof" not in proto.events
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_read_pipe_pause_before_connection_made(aio_run: Callable[..., Any]) -> None:
    """Pausing from connection_made() means no data before resume_reading()."""

    class PausingRecorder(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            transport.pause_reading()  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            wfile.write(b"early")
            transport, proto = await loop.connect_read_pipe(PausingRecorder, rfile)
            if old_stdlib(loop):
                transport.close()
                pytest.skip("the 3.10 stdlib starts reading even when paused early")
            for _ in range(5):
                await asyncio.sleep(0)
            assert proto.data == b""
            transport.resume_reading()
            assert await proto.wait_for_data(5) == b"early"
            transport.close()
            await proto.lost
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_read_pipe_close_delivers_connection_lost_once(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_read_pipe(Recorder, rfile)
            transport.close()
            transport.close()
            assert transport.is_closing()
            assert await proto.lost is None
            for _ in range(3):
                await asyncio.sleep(0)
            assert proto.events == ["made", "lost"]
            assert rfile.closed
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_read_pipe_from_socket(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        try:
            _, proto = await loop.connect_read_pipe(Recorder, a)
            b.sendall(b"sock")
            assert await proto.wait_for_data(4) == b"sock"
            b.close()
            assert await proto.lost is None
            assert a.fileno() == -1  # closed by the transport
        finally:
            a.close()
            b.close()

    aio_run(main)


def test_read_pipe_stream_reader(aio_run: Callable[..., Any]) -> None:
    """A StreamReader over a pipe: its pause/resume keeps the buffer bounded."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        reader = asyncio.StreamReader(limit=1024)
        payload = bytes(range(256)) * 4096  # 1 MiB
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), rfile
            )
            writer_transport, writer_proto = await loop.connect_write_pipe(Recorder, wfile)
            writer_transport.write(payload)
            writer_transport.write_eof()
            assert await reader.read() == payload
            assert await writer_proto.lost is None
            await asyncio.sleep(0)
            assert transport.is_closing()
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_read_pipe_rejects_regular_files(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryFile() as file:
            with pytest.raises(ValueError, match=r"^Pipe transport is for pipes/sockets only\.$"):
                await loop.connect_read_pipe(asyncio.Protocol, file)
            with pytest.raises(
                ValueError,
                match=r"^Pipe transport is only for pipes, sockets and character devices$",
            ):
                await loop.connect_write_pipe(asyncio.Protocol, file)
            assert not file.closed

    aio_run(main)


def test_read_pipe_error_goes_to_exception_handler(trio_aio_run: Callable[..., Any]) -> None:
    """A read error other than EIO is reported and ends the connection with it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: contexts.append(context))
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_read_pipe(Recorder, rfile)
            error = OSError(5000, "boom")
            transport._fatal_error(error, "Fatal read error on pipe transport")
            assert await proto.lost is error
            assert contexts[0]["exception"] is error
            assert contexts[0]["message"] == "Fatal read error on pipe transport"
        finally:
            wfile.close()
            rfile.close()

    trio_aio_run(main)


def test_pipe_fd_is_reserved_for_the_transport(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_read_pipe(Recorder, rfile)
            with pytest.raises(RuntimeError, match="is used by transport"):
                loop.add_reader(rfile.fileno(), lambda: None)
            assert isinstance(transport, ReadPipeTransport)
            assert isinstance(transport, asyncio.ReadTransport)
            assert "fd=" in repr(transport) and "polling" in repr(transport)
            transport.close()
            await proto.lost
            assert "closed" in repr(transport)
        finally:
            wfile.close()
            rfile.close()

    trio_aio_run(main)


# ---- write pipes ------------------------------------------------------------------


def test_write_pipe_write_and_eof(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            assert transport.get_extra_info("pipe") is wfile
            assert transport.can_write_eof()
            assert transport.get_write_buffer_size() == 0
            transport.write(b"hello ")
            transport.write(bytearray(b"pipe "))
            transport.write(memoryview(b"world"))
            transport.writelines([b"!", b"!"])
            transport.write(b"")
            assert os.read(rfile.fileno(), 100) == b"hello pipe world!!"
            transport.write_eof()
            assert transport.is_closing()
            assert await proto.lost is None
            assert wfile.closed
            assert os.read(rfile.fileno(), 100) == b""  # EOF for the reader
            assert proto.events == ["made", "lost"]
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_write_pipe_reader_closes_while_idle(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            rfile.close()
            assert await proto.lost is None  # nothing was lost
            assert transport.is_closing()
            assert wfile.closed
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_write_pipe_reader_closes_with_data_pending(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            transport.write(b"x" * (4 << 20))  # far more than the pipe holds
            assert transport.get_write_buffer_size() > 0
            rfile.close()
            exc = await proto.lost
            assert isinstance(exc, BrokenPipeError)
            assert transport.get_write_buffer_size() == 0
            assert proto.events.count("lost") == 1
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_write_pipe_flow_control(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            transport.set_write_buffer_limits(high=16 * 1024, low=1024)
            assert transport.get_write_buffer_limits() == (1024, 16 * 1024)
            payload = os.urandom(1 << 20)
            transport.write(payload)
            assert proto.events == ["made", "pause"]  # the pipe is full
            assert transport.get_write_buffer_size() > 16 * 1024
            received = bytearray()
            drain_into(loop, rfile, received)
            await proto.resumed
            assert proto.events == ["made", "pause", "resume"]
            transport.write_eof()  # waits for the buffer to be written
            assert await proto.lost is None
            while len(received) < len(payload):
                # The last chunk may still be in the pipe.
                await asyncio.sleep(0)
            loop.remove_reader(rfile.fileno())
            assert received == payload
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_write_pipe_abort_drops_the_buffer(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            transport.write(b"y" * (1 << 20))
            assert transport.get_write_buffer_size() > 0
            transport.abort()
            assert transport.is_closing()
            assert transport.get_write_buffer_size() == 0
            assert await proto.lost is None
            assert wfile.closed
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_write_pipe_close_flushes_first(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            payload = b"z" * (512 * 1024)
            transport.write(payload)
            transport.close()
            assert transport.is_closing()
            assert not proto.lost.done()
            received = bytearray()
            drain_into(loop, rfile, received)
            assert await proto.lost is None
            while len(received) < len(payload):
                await asyncio.sleep(0)
            assert received == payload
            loop.remove_reader(rfile.fileno())
        finally:
            wfile.close()
            rfile.close()

    aio_run(main)


def test_writes_after_close_are_dropped_and_logged(
    aio_run: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            rfile.close()
            assert await proto.lost is None
            with caplog.at_level(logging.WARNING, logger="asyncio"):
                for _ in range(7):
                    transport.write(b"lost")
        finally:
            wfile.close()
            rfile.close()

    caplog.clear()
    aio_run(main)
    assert "pipe closed by peer" in caplog.text


def test_write_pipe_to_socket(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, a)
            transport.write(b"over a socket")
            assert b.recv(100) == b"over a socket"
            b.close()
            assert await proto.lost is None
            assert a.fileno() == -1
        finally:
            a.close()
            b.close()

    aio_run(main)


def test_write_pipe_on_a_fifo(aio_run: Callable[..., Any], tmp_path: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        path = tmp_path / "fifo"
        os.mkfifo(path)
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        wfile = open(path, "wb", buffering=0)  # noqa: SIM115
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            transport.write(b"fifo")
            assert os.read(rfd, 10) == b"fifo"
            os.close(rfd)
            rfd = -1
            assert await proto.lost is None
        finally:
            if rfd >= 0:
                os.close(rfd)
            wfile.close()

    aio_run(main)


def test_write_pipe_connection_lost_only_once(trio_aio_run: Callable[..., Any]) -> None:
    """write_eof, abort, close and the reader's close together: one connection_lost.

    (The stdlib calls connection_lost twice here and then fails.)
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            transport.write_eof()
            transport.abort()
            transport.close()
            rfile.close()
            assert await proto.lost is None
            for _ in range(3):
                await asyncio.sleep(0)
            assert proto.events == ["made", "lost"]
        finally:
            wfile.close()
            rfile.close()

    trio_aio_run(main)


def test_write_pipe_rejects_non_bytes(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            assert isinstance(transport, WritePipeTransport)
            with pytest.raises(TypeError, match="bytes-like"):
                transport.write("text")  # type: ignore[arg-type]
            # Lengths are counted in bytes, not items.
            import array

            transport.write(memoryview(array.array("i", [1, 2, 3])))
            assert len(os.read(rfile.fileno(), 100)) == 3 * array.array("i").itemsize
            transport.close()
            await proto.lost
        finally:
            wfile.close()
            rfile.close()

    trio_aio_run(main)


def test_write_error_reported_in_debug_only(trio_aio_run: Callable[..., Any]) -> None:
    """A failing os.write ends the connection with the error (OSErrors are not logged)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: contexts.append(context))
        rfile, wfile = pipe_files()
        rfile.close()  # the first write fails with EPIPE
        try:
            transport, proto = await loop.connect_write_pipe(Recorder, wfile)
            transport.write(b"data")
            exc = await proto.lost
            assert isinstance(exc, BrokenPipeError) or exc is None
            assert contexts == []
        finally:
            wfile.close()

    trio_aio_run(main)


def test_pipe_transports_close_after_loop_close(trio_aio_run: Callable[..., Any]) -> None:
    """Closing a pipe transport once its loop is gone closes the pipe, quietly."""
    kept: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rfile, wfile = pipe_files()
        kept.extend([rfile, wfile])
        kept.append((await loop.connect_read_pipe(Recorder, rfile))[0])
        kept.append((await loop.connect_write_pipe(Recorder, wfile))[0])

    trio_aio_run(main)
    rfile, wfile, read_transport, write_transport = kept
    # As in the stdlib, their repr says "open" (there is no selector to ask any more).
    assert "open" in repr(read_transport) and "open" in repr(write_transport)
    read_transport.close()
    write_transport.close()
    assert rfile.closed and wfile.closed
