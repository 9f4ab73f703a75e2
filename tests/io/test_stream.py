"""The socket stream transport: reading, writing, flow control, half-close, errors.

Scenarios run on the stdlib selector loop and on ours (``aio_run``) with the
same assertions; ``trio_aio_run`` marks checks of our own internals or of
places where we deliberately differ. Synchronisation is by futures, never by
time.
"""

from __future__ import annotations

import array
import asyncio
import socket
import sys
from collections.abc import Callable
from typing import Any

import pytest

import trio_asyncio

LOCALHOST = "127.0.0.1"
# Before 3.12, writelines() was write(b"".join(...)) and its errors said so.
WRITELINES = "writelines" if sys.version_info >= (3, 12) else "write"


# ---- helpers ---------------------------------------------------------------------


class Recorder(asyncio.Protocol):
    """Records every protocol call; futures to wait for data, EOF and loss."""

    def __init__(self, eof_result: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.events: list[str] = []
        self.data = bytearray()
        self.eof_result = eof_result
        self.made: asyncio.Future[Any] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.lost_calls = 0
        self.paused_at: list[int] = []
        self.resumed_at: list[int] = []
        self._want: tuple[int, asyncio.Future[None]] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        assert "lost" not in self.events and "eof" not in self.events
        self.data += data
        self._check_want()

    def eof_received(self) -> Any:
        self.events.append("eof")
        self.eof.set_result(None)
        return self.eof_result

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost_calls += 1
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)
        if self._want is not None and not self._want[1].done():
            self._want[1].set_exception(ConnectionError("lost before enough data"))

    def pause_writing(self) -> None:
        self.paused_at.append(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.resumed_at.append(self.transport.get_write_buffer_size())

    def _check_want(self) -> None:
        if self._want is not None and len(self.data) >= self._want[0]:
            self._want[1].set_result(None)
            self._want = None

    async def wait_for(self, size: int) -> bytes:
        """Wait until *size* bytes in total have arrived."""
        if len(self.data) < size:
            self._want = (size, asyncio.get_running_loop().create_future())
            await self._want[1]
        return bytes(self.data)


class BufferedRecorder(asyncio.BufferedProtocol, Recorder):
    """The same, as a BufferedProtocol with a deliberately small buffer."""

    def __init__(self, size: int = 7, **kwargs: Any) -> None:
        Recorder.__init__(self, **kwargs)
        self.buffer = bytearray(size)
        self.get_buffer_calls = 0

    def get_buffer(self, sizehint: int) -> bytearray:
        self.get_buffer_calls += 1
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert "lost" not in self.events
        self.data += self.buffer[:nbytes]
        self._check_want()


class Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def tcp_server(factory: Callable[[], asyncio.BaseProtocol] = Echo) -> tuple[Any, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, LOCALHOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def close_server(server: Any) -> None:
    server.close()
    await server.wait_closed()


async def connected_pair(
    client: Callable[[], asyncio.BaseProtocol], server: Callable[[], asyncio.BaseProtocol]
) -> tuple[Any, Any, Any]:
    """A client transport/protocol connected to a server protocol (over a socketpair)."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    _, server_protocol = await loop.connect_accepted_socket(server, b)
    client_transport, client_protocol = await loop.create_connection(client, sock=a)
    return client_transport, client_protocol, server_protocol


def is_ours(loop: Any) -> bool:
    return isinstance(loop, trio_asyncio.BaseTrioEventLoop)


async def fill_kernel_buffers(transport: Any) -> None:
    """Write until the kernel takes no more and some data waits in our buffer."""
    transport.set_write_buffer_limits(high=1 << 30)
    chunk = b"f" * 65536
    while transport.get_write_buffer_size() == 0:
        transport.write(chunk)


async def read_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while chunk := await loop.sock_recv(sock, 1 << 20):
        data += chunk
    return bytes(data)


async def read_all(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, 1 << 20)
        assert chunk
        data += chunk
    return bytes(data)


# ---- data flow -------------------------------------------------------------------


def test_echo_protocol(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await tcp_server()
        transport, protocol = await loop.create_connection(Recorder, LOCALHOST, port)
        payload = b"".join(b"message %03d|" % i for i in range(200))
        for i in range(200):
            transport.write(b"message %03d|" % i)
        await protocol.wait_for(len(payload))
        transport.close()
        exc = await protocol.lost
        await close_server(server)
        return bytes(protocol.data) == payload, protocol.events, exc, protocol.lost_calls

    assert aio_run(main) == (True, ["made", "lost"], None, 1)


def test_echo_buffered_protocol(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await tcp_server()
        transport, protocol = await loop.create_connection(BufferedRecorder, LOCALHOST, port)
        payload = bytes(range(256)) * 40
        transport.write(payload)
        await protocol.wait_for(len(payload))
        transport.close()
        await protocol.lost
        await close_server(server)
        # A 7-byte buffer: many get_buffer() calls, one recv_into each.
        return (
            bytes(protocol.data) == payload,
            protocol.get_buffer_calls >= len(payload) // 7,
            protocol.events,
        )

    assert aio_run(main) == (True, True, ["made", "lost"])


def test_set_protocol_switches_between_kinds(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await tcp_server()
        transport, first = await loop.create_connection(Recorder, LOCALHOST, port)
        transport.write(b"one")
        await first.wait_for(3)
        second = BufferedRecorder(size=2)
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        transport.write(b"two!")
        await second.wait_for(4)
        third = Recorder()
        transport.set_protocol(third)
        transport.write(b"three")
        await third.wait_for(5)
        transport.close()
        await third.lost
        await close_server(server)
        return bytes(first.data), bytes(second.data), bytes(third.data), third.events

    assert aio_run(main) == (b"one", b"two!", b"three", ["lost"])


def test_writelines_and_buffer_kinds(aio_run: Callable[..., Any]) -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        server, port = await tcp_server()
        transport, protocol = await loop.create_connection(Recorder, LOCALHOST, port)
        small = [b"a", bytearray(b"bc"), memoryview(b"def"), b""]
        big = [bytes([i]) * 3000 for i in range(10)]
        wide = memoryview(array.array("i", [1, 2, 3]))
        transport.writelines(small)
        transport.writelines(big)
        transport.writelines([])
        transport.write(wide)
        expected = b"abcdef" + b"".join(big) + wide.tobytes()
        await protocol.wait_for(len(expected))
        transport.close()
        await protocol.lost
        await close_server(server)
        return bytes(protocol.data) == expected

    assert aio_run(main)


def test_write_checks(aio_run: Callable[..., Any]) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        server, port = await tcp_server()
        transport, protocol = await loop.create_connection(Recorder, LOCALHOST, port)
        errors = []
        for call in (
            lambda: transport.write("text"),
            lambda: transport.write_eof(),
            lambda: transport.write(b"x"),
            lambda: transport.writelines([b"x"]),
        ):
            try:
                call()
            except (TypeError, RuntimeError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        transport.write_eof()  # twice is fine
        assert transport.can_write_eof()
        transport.close()
        await protocol.lost
        await close_server(server)
        return errors

    assert aio_run(main) == [
        "TypeError: data argument must be a bytes-like object, not 'str'",
        "RuntimeError: Cannot call write() after write_eof()",
        f"RuntimeError: Cannot call {WRITELINES}() after write_eof()",
    ]


def test_writes_after_close_are_dropped(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await tcp_server()
        transport, protocol = await loop.create_connection(Recorder, LOCALHOST, port)
        transport.close()
        assert transport.is_closing()
        await protocol.lost
        for _ in range(3):
            transport.write(b"ignored")
        transport.close()
        transport.abort()
        await close_server(server)
        return protocol.events, transport.get_write_buffer_size()

    assert aio_run(main) == (["made", "lost"], 0)


def test_mutable_data_is_copied_when_buffered(trio_aio_run: Callable[..., Any]) -> None:
    # The stdlib keeps a view of a bytearray it could not send at once, so
    # changing it afterwards changes what is sent; we copy.
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        try:
            transport, protocol = await loop.create_connection(Recorder, sock=a)
            await fill_kernel_buffers(transport)
            data = bytearray(b"x" * 100_000)
            transport.write(data)
            lines = [bytearray(b"y" * 10_000) for _ in range(3)]
            transport.writelines(lines)
            data[:] = b"z" * len(data)
            for line in lines:
                line[:] = b"z" * len(line)
            transport.close()
            received = await read_to_eof(b)
            await protocol.lost
        finally:
            b.close()
        return b"z" not in received and received.endswith(b"x" * 100_000 + b"y" * 30_000)

    assert trio_aio_run(main)


# ---- extra info, repr ---------------------------------------------------------------


def test_extra_info(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        server, port = await tcp_server()
        transport, protocol = await loop.create_connection(Recorder, LOCALHOST, port)
        sock = transport.get_extra_info("socket")
        result = (
            transport.get_extra_info("peername") == (LOCALHOST, port),
            transport.get_extra_info("sockname")[0],
            type(sock).__name__,
            sock.family,
            sock.fileno() >= 0,
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
            transport.get_extra_info("nonsense", 42),
        )
        transport.close()
        await protocol.lost
        await close_server(server)
        return result

    assert aio_run(main) == (
        True,
        LOCALHOST,
        "TransportSocket",
        socket.AF_INET,
        True,
        True,
        42,
    )


def test_repr(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        shown = [repr(transport)]
        transport.pause_reading()
        shown.append(repr(transport))
        transport.close()
        shown.append(repr(transport))
        await protocol.lost
        shown.append(repr(transport))
        b.close()
        return shown

    shown = trio_aio_run(main)
    assert "read=polling" in shown[0] and "write=<idle, bufsize=0>" in shown[0]
    assert "read=idle" in shown[1]
    assert "closing" in shown[2]
    assert "closed" in shown[3]


# ---- reading control ------------------------------------------------------------------


def test_pause_and_resume_reading(aio_run: Callable[..., Any]) -> None:
    async def main() -> list[Any]:
        transport, protocol, peer = await connected_pair(Recorder, Recorder)
        await peer.made
        states = [transport.is_reading()]
        transport.pause_reading()
        transport.pause_reading()  # idempotent
        states.append(transport.is_reading())
        peer.transport.write(b"while paused")
        for _ in range(5):
            await asyncio.sleep(0)
        states.append(bytes(protocol.data))
        transport.resume_reading()
        transport.resume_reading()
        states.append(transport.is_reading())
        states.append(await protocol.wait_for(12))
        transport.close()
        states.append(transport.is_reading())
        await protocol.lost
        await peer.lost
        return states

    assert aio_run(main) == [True, False, b"", True, b"while paused", False]


def test_pause_reading_in_connection_made(
    aio_run: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["aio_run"] == "stdlib" and sys.version_info < (3, 11):
        pytest.skip("the 3.10 stdlib starts reading even when connection_made() paused it")

    class PausedAtStart(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.pause_reading()

    async def main() -> list[Any]:
        transport, protocol, peer = await connected_pair(PausedAtStart, Recorder)
        await peer.made
        peer.transport.write(b"hi")
        for _ in range(5):
            await asyncio.sleep(0)
        seen = [bytes(protocol.data)]
        transport.resume_reading()
        seen.append(await protocol.wait_for(2))
        transport.close()
        await protocol.lost
        await peer.lost
        return seen

    assert aio_run(main) == [b"", b"hi"]


# ---- half-close -----------------------------------------------------------------------


@pytest.mark.parametrize("keep_open", [True, False])
def test_half_close(aio_run: Callable[..., Any], keep_open: bool) -> None:
    class Replier(Recorder):
        def eof_received(self) -> Any:
            super().eof_received()
            self.transport.write(b"reply")
            if keep_open:
                # Half-open: we can still write after returning True.
                asyncio.get_running_loop().call_soon(self.finish)
            return keep_open

        def finish(self) -> None:
            self.transport.write(b"+late")
            self.transport.close()

    async def main() -> tuple[Any, ...]:
        transport, protocol, peer = await connected_pair(Recorder, Replier)
        transport.write(b"request")
        transport.write_eof()
        exc = await protocol.lost
        peer_exc = await peer.lost
        return bytes(peer.data), peer.events, bytes(protocol.data), protocol.events, exc, peer_exc

    expected_reply = b"reply+late" if keep_open else b"reply"
    assert aio_run(main) == (
        b"request",
        ["made", "eof", "lost"],
        expected_reply,
        ["made", "eof", "lost"],
        None,
        None,
    )


def test_write_eof_waits_for_the_buffer(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        try:
            transport, protocol = await loop.create_connection(Recorder, sock=a)
            await fill_kernel_buffers(transport)
            transport.write(b"last")
            transport.write_eof()
            tail = (await read_to_eof(b))[-4:]
            transport.close()
            await protocol.lost
        finally:
            b.close()
        return tail, protocol.events

    assert aio_run(main) == (b"last", ["made", "lost"])


# ---- write flow control -------------------------------------------------------------------


def test_flow_control_exact_boundaries(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        try:
            transport, protocol = await loop.create_connection(Recorder, sock=a)
            await fill_kernel_buffers(transport)
            # The kernel is full and the peer does not read: the buffer only
            # changes by what we write.
            size = transport.get_write_buffer_size()
            transport.set_write_buffer_limits(high=size + 100, low=0)
            assert transport.get_write_buffer_limits() == (0, size + 100)
            transport.write(b"x" * 100)  # == high: no pause
            at_high = list(protocol.paused_at)
            transport.write(b"x")  # > high: pause
            transport.write(b"x" * 1000)  # still paused: no second call
            written = size + 1101
            paused = list(protocol.paused_at)
            resumed_before_drain = list(protocol.resumed_at)
            await read_all(b, written)  # the buffer drains to 0 == low
            await asyncio.sleep(0)
            transport.close()
            await protocol.lost
        finally:
            b.close()
        return (
            at_high,
            [p - (size + 100) for p in paused],
            resumed_before_drain,
            protocol.resumed_at,
        )

    assert aio_run(main) == ([], [1], [], [0])


def test_lowering_the_limits_pauses_at_once(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        try:
            transport, protocol = await loop.create_connection(Recorder, sock=a)
            await fill_kernel_buffers(transport)
            size = transport.get_write_buffer_size()
            transport.set_write_buffer_limits(high=size)  # not above: no pause
            first = len(protocol.paused_at)
            transport.set_write_buffer_limits(high=size - 1, low=size - 1)
            second = len(protocol.paused_at)
            transport.abort()
            await protocol.lost
        finally:
            b.close()
        return first, second, protocol.resumed_at

    assert aio_run(main) == (0, 1, [])


def test_flow_control_with_a_slow_reader(aio_run: Callable[..., Any]) -> None:
    # A writer that honours pause/resume never lets the buffer grow past
    # high + one chunk, and every pause is followed by a resume.
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        try:
            transport, protocol = await loop.create_connection(Recorder, sock=a)
            transport.set_write_buffer_limits(high=20_000, low=5_000)
            chunk = b"c" * 4096
            total = 2_000_000
            sent = 0
            resumed = asyncio.Event()
            original = protocol.resume_writing

            def resume_writing() -> None:
                original()
                resumed.set()

            protocol.resume_writing = resume_writing  # type: ignore[method-assign]
            reader = asyncio.ensure_future(read_all(b, total))
            while sent < total:
                transport.write(chunk[: total - sent])
                sent += min(len(chunk), total - sent)
                if len(protocol.paused_at) > len(protocol.resumed_at):
                    resumed.clear()
                    await resumed.wait()
            received = await reader
            transport.close()
            await protocol.lost
        finally:
            b.close()
        return (
            len(received),
            len(protocol.paused_at) == len(protocol.resumed_at) > 0,
            all(20_000 < p <= 20_000 + 4096 for p in protocol.paused_at),
            all(r <= 5_000 for r in protocol.resumed_at),
        )

    assert aio_run(main) == (2_000_000, True, True, True)


# ---- closing ----------------------------------------------------------------------------------


def test_close_flushes_the_buffer(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        try:
            transport, protocol = await loop.create_connection(Recorder, sock=a)
            await fill_kernel_buffers(transport)
            transport.write(b"the end")
            buffered = transport.get_write_buffer_size() > 0
            transport.close()
            transport.close()
            data = await read_to_eof(b)
            exc = await protocol.lost
        finally:
            b.close()
        return buffered, data.endswith(b"the end"), protocol.events, exc

    assert aio_run(main) == (True, True, ["made", "lost"], None)


def test_abort_drops_the_buffer(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        try:
            transport, protocol = await loop.create_connection(Recorder, sock=a)
            await fill_kernel_buffers(transport)
            transport.abort()
            after = (transport.is_closing(), transport.get_write_buffer_size())
            exc = await protocol.lost
            transport.abort()
            transport.close()
        finally:
            b.close()
        return after, exc, protocol.events

    assert aio_run(main) == ((True, 0), None, ["made", "lost"])


def test_eof_closes_unless_protocol_keeps_open(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        results = []
        for keep in (None, False, True):
            transport, protocol, peer = await connected_pair(
                lambda keep=keep: Recorder(eof_result=keep), Recorder
            )
            await peer.made
            peer.transport.write_eof()
            await protocol.eof
            results.append(transport.is_closing())
            if keep:
                transport.write(b"still open")
                await peer.wait_for(10)
                transport.close()
            await protocol.lost
            await peer.lost
            results.append(protocol.events)
        return tuple(results)

    assert aio_run(main) == (
        True,
        ["made", "eof", "lost"],
        True,
        ["made", "eof", "lost"],
        False,
        ["made", "eof", "lost"],
    )


# ---- errors ------------------------------------------------------------------------------------


def test_reset_by_peer_while_reading(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind((LOCALHOST, 0))
        listener.listen()
        listener.setblocking(False)
        try:
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            transport, protocol = await loop.create_connection(Recorder, *listener.getsockname())
            conn, _ = await accepting
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()  # RST
            exc = await protocol.lost
        finally:
            listener.close()
        return type(exc), protocol.events, protocol.lost_calls, transport.is_closing()

    assert aio_run(main) == (ConnectionResetError, ["made", "lost"], 1, True)


def test_broken_pipe_while_writing(aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        transport.pause_reading()
        b.close()
        transport.write(b"into the void")
        exc = await protocol.lost
        return isinstance(exc, (BrokenPipeError, ConnectionResetError)), protocol.events

    assert aio_run(main) == (True, ["made", "lost"])


@pytest.mark.parametrize("where", ["data_received", "get_buffer", "empty_buffer", "eof_received"])
def test_protocol_errors_are_fatal(aio_run: Callable[..., Any], where: str) -> None:
    class Failing(BufferedRecorder):
        def get_buffer(self, sizehint: int) -> bytearray:
            if where == "get_buffer":
                raise ZeroDivisionError
            if where == "empty_buffer":
                return bytearray()
            return super().get_buffer(sizehint)

        def buffer_updated(self, nbytes: int) -> None:
            raise ZeroDivisionError

        def eof_received(self) -> Any:
            super().eof_received()
            raise ZeroDivisionError

    class FailingPlain(Recorder):
        def data_received(self, data: bytes) -> None:
            raise ZeroDivisionError

    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda loop, context: contexts.append(context))
        factory = FailingPlain if where == "data_received" else Failing
        transport, protocol, peer = await connected_pair(factory, Recorder)
        await peer.made
        if where == "eof_received":
            peer.transport.write_eof()
        else:
            peer.transport.write(b"boom")
        exc = await protocol.lost
        peer.transport.close()
        await peer.lost
        await asyncio.sleep(0)
        return (
            type(exc),
            [c["message"] for c in contexts],
            [type(c["exception"]) for c in contexts],
            contexts[0]["transport"] is transport,
            protocol.lost_calls,
        )

    message = {
        "data_received": "Fatal error: protocol.data_received() call failed.",
        "get_buffer": "Fatal error: protocol.get_buffer() call failed.",
        "empty_buffer": "Fatal error: protocol.get_buffer() call failed.",
        "eof_received": "Fatal error: protocol.eof_received() call failed.",
    }[where]
    error = RuntimeError if where == "empty_buffer" else ZeroDivisionError
    assert aio_run(main) == (error, [message], [error], True, 1)


def test_transport_fd_is_reserved(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        transport, protocol = await loop.create_connection(Recorder, sock=a)
        with pytest.raises(RuntimeError, match=f"File descriptor {fd} is used by transport"):
            loop.add_reader(fd, lambda: None)
        registered = loop._transports._by_fd.get(fd) is transport
        transport.close()
        await protocol.lost
        b.close()
        return registered, fd in loop._transports._by_fd

    assert trio_aio_run(main) == (True, False)
