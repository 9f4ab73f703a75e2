"""TLS: ``TLSProtocol`` over in-memory transports, ``loop.start_tls()``, and ssl= end to end.

Most tests drive :class:`TLSProtocol` over :class:`FakeTransport` pairs:
in-memory streams whose writes reach the peer's protocol on a later loop
iteration, in odd-sized pieces (so TLS records straddle reads), with real
write flow control and pause/resume of reading. They run on our loop under
Trio's MockClock (autojump), so handshake and shutdown timeouts take no real
time; nothing synchronises by sleeping.

The tests over loopback TCP (``create_connection``/``create_server`` with
``ssl=``, streams, ``StreamWriter.start_tls``) run on both the stdlib loop and
ours (``aio_run``): the stdlib is the reference.

Certificates (a CA, a server certificate signed by it, a client certificate,
and an unrelated CA) are made once per session with the ``openssl`` CLI.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import hashlib
import logging
import shutil
import ssl
import subprocess
import sys
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_asyncio
from trio_asyncio._io import _connections, _tls
from trio_asyncio._io._tls import TLSProtocol

HOST = "127.0.0.1"
MB = 1024 * 1024

# ---- certificates ----------------------------------------------------------------


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca)
        return ctx

    def client_context(
        self, *, trust: Path | None = None, with_cert: bool = False
    ) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(trust or self.ca)
        if with_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _make_ca(name: str, directory: Path) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", cert, "-days", "3", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _make_leaf(
    name: str, ca: tuple[Path, Path], ext: str, directory: Path, serial: int
) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    extfile = directory / f"{name}.ext"
    extfile.write_text(ext)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial", str(serial),
        "-out", cert, "-days", "3", "-extfile", extfile,
        cwd=directory,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("tls-certs")
    ca = _make_ca("test-ca", directory)
    other_ca, _ = _make_ca("other-ca", directory)
    server = _make_leaf(
        "localhost",
        ca,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        directory,
        1,
    )
    client = _make_leaf(
        "client", ca, "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", directory, 2
    )
    return Certs(ca[0], server[0], server[1], client[0], client[1], other_ca)


# ---- running on our loop ---------------------------------------------------------


def run_mock(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run asyncio *fn* on our loop, with Trio's autojumping MockClock.

    Only for tests without real I/O: the clock jumps whenever everything is
    idle, so timeouts expire at once instead of after real seconds.
    """

    async def main() -> Any:
        async with trio_asyncio.open_loop():
            return await trio_asyncio.aio_as_trio(fn)()

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# ---- in-memory transports --------------------------------------------------------

_EOF = object()


class FakeTransport(asyncio.Transport):
    """One end of an in-memory byte stream between two protocols.

    Writes are queued and delivered to the peer's protocol from a later
    callback, in pieces of *piece* bytes, while the peer reads; the writer's
    protocol is paused above *high_water* queued bytes. ``close()`` sends EOF
    after the queued data, ``abort()`` drops it; either way ``connection_lost``
    follows. Supports BufferedProtocol (unless *use_get_buffer* is false),
    set_protocol and pause/resume_reading: everything start_tls() needs.
    """

    def __init__(
        self,
        loop: Any,
        protocol: Any,
        *,
        piece: int = 7001,
        high_water: int = 64 * 1024,
        use_get_buffer: bool = True,
    ) -> None:
        super().__init__({"peername": ("peer", 1), "sockname": ("me", 2), "socket": None})
        self.loop = loop
        self.protocol = protocol
        self.peer: FakeTransport | None = None
        self.piece = piece
        self.high_water = high_water
        self.use_get_buffer = use_get_buffer
        self.queue: collections.deque[Any] = collections.deque()
        self.queued = 0
        self.writing_paused = False
        self.reading = True
        self.closing = False
        self.lost = False
        self.blackhole = False  # drop everything written (a silent peer)
        self.pump_scheduled = False
        self.bytes_written = 0
        self.max_queued = 0

    def __repr__(self) -> str:
        return f"<FakeTransport closing={self.closing} lost={self.lost}>"

    # -- protocol
    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closing

    # -- reading
    def is_reading(self) -> bool:
        return self.reading and not self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            if self.peer is not None:
                self.peer.schedule_pump()

    # -- writing
    def get_write_buffer_size(self) -> int:
        return self.queued

    def write(self, data: Any) -> None:
        if self.closing or self.lost or self.blackhole or not data:
            return
        data = bytes(data)
        self.bytes_written += len(data)
        self.queue.append(data)
        self.queued += len(data)
        self.max_queued = max(self.max_queued, self.queued)
        self.schedule_pump()
        if not self.writing_paused and self.queued > self.high_water:
            self.writing_paused = True
            self.protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.queue.append(_EOF)
        self.schedule_pump()

    def schedule_pump(self) -> None:
        if not self.pump_scheduled and not self.lost:
            self.pump_scheduled = True
            self.loop.call_soon(self.pump)

    def pump(self) -> None:
        """Deliver queued data to the peer while it reads."""
        self.pump_scheduled = False
        peer = self.peer
        queue = self.queue
        if peer is None or peer.closing:
            # The other end is closed: what we send goes nowhere.
            queue.clear()
            self.queued = 0
        while queue and peer.reading:
            item = queue[0]
            if item is _EOF:
                queue.popleft()
                peer.got_eof()
                continue
            piece = item[: self.piece]
            if len(item) > self.piece:
                queue[0] = item[self.piece :]
            else:
                queue.popleft()
            self.queued -= len(piece)
            peer.deliver(piece)
        if self.writing_paused and self.queued <= self.high_water // 4 and not self.lost:
            self.writing_paused = False
            self.protocol.resume_writing()
        if self.closing and not queue and not self.lost:
            self.lose(None)

    def deliver(self, data: bytes) -> None:
        protocol = self.protocol
        if self.use_get_buffer and isinstance(protocol, asyncio.BufferedProtocol):
            while data:
                buf = protocol.get_buffer(len(data))
                n = min(len(buf), len(data))
                buf[:n] = data[:n]
                data = data[n:]
                protocol.buffer_updated(n)
        else:
            protocol.data_received(data)

    def got_eof(self) -> None:
        if self.lost:
            return
        if not self.protocol.eof_received():
            self.close()

    # -- closing
    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.reading = False
        self.queue.append(_EOF)
        self.schedule_pump()
        if self.peer is not None:
            self.peer.schedule_pump()  # its data now goes nowhere

    def abort(self) -> None:
        self.closing = True
        self.reading = False
        self.queue.clear()
        self.queued = 0
        if self.peer is not None and not self.peer.lost:
            self.loop.call_soon(self.peer.got_eof)
        self.lose(None)

    def lose(self, exc: BaseException | None) -> None:
        if not self.lost:
            self.lost = True
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, exc)


def fake_pair(
    loop: Any, proto_a: Any, proto_b: Any, **kwargs: Any
) -> tuple[FakeTransport, FakeTransport]:
    """Connect two protocols; their connection_made() run on the next iteration."""
    a = FakeTransport(loop, proto_a, **kwargs)
    b = FakeTransport(loop, proto_b, **kwargs)
    a.peer, b.peer = b, a
    loop.call_soon(proto_a.connection_made, a)
    loop.call_soon(proto_b.connection_made, b)
    return a, b


# ---- application protocols -------------------------------------------------------


class Recorder(asyncio.Protocol):
    """An application protocol that records what happens to it."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.events: list[Any] = []
        self.data = bytearray()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.got_eof: asyncio.Future[None] = loop.create_future()
        self._want: tuple[int, asyncio.Future[None]] | None = None
        self.paused_writing = 0
        self.resumed_writing = 0
        self.eof_result: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def received(self, nbytes: int) -> None:
        if self.events[-1:] != ["data"]:
            self.events.append("data")
        if self._want is not None and len(self.data) >= self._want[0]:
            self._want[1].set_result(None)
            self._want = None

    def data_received(self, data: bytes) -> None:
        assert data, "data_received(b'') must never happen"
        self.data += data
        self.received(len(data))

    def eof_received(self) -> Any:
        self.events.append("eof")
        self.got_eof.set_result(None)
        return self.eof_result

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.paused_writing += 1

    def resume_writing(self) -> None:
        self.resumed_writing += 1

    async def wait_for(self, nbytes: int) -> bytes:
        if len(self.data) < nbytes:
            future = asyncio.get_running_loop().create_future()
            self._want = (nbytes, future)
            await future
        return bytes(self.data)


class BufferedRecorder(Recorder, asyncio.BufferedProtocol):
    """The same, as a BufferedProtocol with a small buffer (many get_buffer calls)."""

    def __init__(self, size: int = 1000) -> None:
        super().__init__()
        self.buffer = bytearray(size)
        self.get_buffer_calls = 0

    def get_buffer(self, sizehint: int) -> bytearray:
        self.get_buffer_calls += 1
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buffer[:nbytes]
        self.received(nbytes)


@dataclass
class Pair:
    client: TLSProtocol
    server: TLSProtocol
    client_app: Recorder
    server_app: Recorder
    client_raw: FakeTransport
    server_raw: FakeTransport


async def tls_pair(
    certs: Certs,
    *,
    client_app: Recorder | None = None,
    server_app: Recorder | None = None,
    client_ctx: ssl.SSLContext | None = None,
    server_ctx: ssl.SSLContext | None = None,
    hostname: str | None = "localhost",
    check: bool = True,
    **fake: Any,
) -> tuple[Pair, asyncio.Future[None], asyncio.Future[None]]:
    """A client and a server TLSProtocol over a fake pair; handshake awaited if *check*."""
    loop = asyncio.get_running_loop()
    client_app = client_app or Recorder()
    server_app = server_app or Recorder()
    client_waiter = loop.create_future()
    server_waiter = loop.create_future()
    client = TLSProtocol(
        loop,
        client_app,
        client_ctx or certs.client_context(),
        client_waiter,
        server_hostname=hostname,
    )
    server = TLSProtocol(
        loop, server_app, server_ctx or certs.server_context(), server_waiter, server_side=True
    )
    a, b = fake_pair(loop, client, server, **fake)
    if check:
        await asyncio.gather(client_waiter, server_waiter)
    return Pair(client, server, client_app, server_app, a, b), client_waiter, server_waiter


async def close_both(pair: Pair) -> None:
    pair.client_app.transport.close()
    assert await pair.client_app.lost is None
    assert await pair.server_app.lost is None


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking test data."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest() * 64
        counter += 1
    return bytes(out[:size])


# ---- handshake and data ----------------------------------------------------------


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_handshake_and_small_data_both_ways(certs: Certs, tls12: bool) -> None:
    async def main() -> None:
        client_ctx = certs.client_context()
        if tls12:
            client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        pair, _, _ = await tls_pair(certs, client_ctx=client_ctx)
        capp, sapp = pair.client_app, pair.server_app
        assert capp.events == ["made"] and sapp.events == ["made"]
        assert capp.transport is pair.client.app_transport
        assert isinstance(capp.transport, asyncio.Transport)
        version = capp.transport.get_extra_info("ssl_object").version()
        assert version == ("TLSv1.2" if tls12 else "TLSv1.3")
        capp.transport.write(b"hello ")
        capp.transport.writelines([b"from ", bytearray(b"the "), memoryview(b"client")])
        assert await sapp.wait_for(21) == b"hello from the client"
        sapp.transport.write(b"and back")
        assert await capp.wait_for(8) == b"and back"
        await close_both(pair)

    run_mock(main)


def test_connection_made_before_waiter_and_extra_info(certs: Certs) -> None:
    async def main() -> None:
        order: list[str] = []

        class App(Recorder):
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                order.append("made")

        app = App()
        pair, client_waiter, _ = await tls_pair(certs, client_app=app, check=False)
        client_waiter.add_done_callback(lambda _: order.append("waiter"))
        await client_waiter
        await asyncio.sleep(0)
        assert order == ["made", "waiter"]
        t = app.transport
        sslobj = t.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert t.get_extra_info("sslcontext") is sslobj.context
        assert t._sslcontext is sslobj.context  # uvloop's name, read by aiohttp's tests
        peercert = t.get_extra_info("peercert")
        assert dict(x[0] for x in peercert["subject"])["commonName"] == "localhost"
        assert t.get_extra_info("cipher") == sslobj.cipher()
        assert t.get_extra_info("compression") is None
        # The raw transport answers the rest.
        assert t.get_extra_info("peername") == ("peer", 1)
        assert t.get_extra_info("sockname") == ("me", 2)
        assert t.get_extra_info("socket") is None
        assert t.get_extra_info("nonexistent", "dflt") == "dflt"
        # No client certificate was asked for.
        assert pair.server_app.transport.get_extra_info("peercert") is None
        assert t.get_protocol() is app
        assert not t.can_write_eof()
        with pytest.raises(NotImplementedError):
            t.write_eof()
        assert t.get_write_buffer_limits() == (128 * 1024, 512 * 1024)
        assert "TLSProtocol client OPEN" in repr(pair.client)
        await close_both(pair)

    run_mock(main)


def test_client_certificate(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(
            certs,
            client_ctx=certs.client_context(with_cert=True),
            server_ctx=certs.server_context(require_client_cert=True),
        )
        peercert = pair.server_app.transport.get_extra_info("peercert")
        assert dict(x[0] for x in peercert["subject"])["commonName"] == "client"
        await close_both(pair)

    run_mock(main)


def test_missing_client_certificate_fails_after_handshake(certs: Certs) -> None:
    # TLS 1.3: the client's handshake completes before the server checks its
    # certificate; the server's alert then ends the established connection.
    async def main() -> None:
        pair, client_waiter, server_waiter = await tls_pair(
            certs, server_ctx=certs.server_context(require_client_cert=True), check=False
        )
        with pytest.raises(ssl.SSLError):
            await server_waiter
        await client_waiter
        exc = await pair.client_app.lost
        assert isinstance(exc, ssl.SSLError)
        assert "CERTIFICATE_REQUIRED" in str(exc).upper()
        assert pair.server_app.events == []

    run_mock(main)


@pytest.mark.parametrize("buffered", [False, True], ids=["Protocol", "BufferedProtocol"])
@pytest.mark.parametrize("piece", [1, 7001, 300 * 1024])
def test_large_transfer_both_ways(certs: Certs, buffered: bool, piece: int) -> None:
    size = 20 * 1024 if piece == 1 else 6 * MB

    async def main() -> None:
        factory = BufferedRecorder if buffered else Recorder
        pair, _, _ = await tls_pair(certs, client_app=factory(), server_app=factory(), piece=piece)
        up, down = pattern(size, 1), pattern(size, 2)
        # Mixed write sizes: tiny ones coalesce, big ones are encrypted at once.
        view = memoryview(up)
        offset = 0
        step = 1
        while offset < size:
            pair.client_app.transport.write(view[offset : offset + step])
            offset += step
            step = step * 3 % 700_001 + 1
        pair.server_app.transport.write(down)
        assert await pair.server_app.wait_for(size) == up
        assert await pair.client_app.wait_for(size) == down
        if buffered:
            assert pair.client_app.get_buffer_calls > size // 1000
        await close_both(pair)

    run_mock(main)


def test_streams_over_tls_with_flow_control(certs: Certs) -> None:
    """StreamReader/Writer over TLS: drain() waits, the reader pauses the transport."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=16 * 1024)
        server_proto = asyncio.StreamReaderProtocol(reader)
        client_reader = asyncio.StreamReader()
        client_proto = asyncio.StreamReaderProtocol(client_reader)
        pair, _, _ = await tls_pair(
            certs, client_app=client_proto, server_app=server_proto, high_water=32 * 1024
        )
        transport = pair.client.app_transport
        writer = asyncio.StreamWriter(transport, client_proto, client_reader, loop)
        transport.set_write_buffer_limits(high=64 * 1024)
        data = pattern(8 * MB, 3)
        paused_seen = 0

        async def send() -> None:
            nonlocal paused_seen
            for i in range(0, len(data), 256 * 1024):
                writer.write(data[i : i + 256 * 1024])
                if transport.get_write_buffer_size() > 64 * 1024:
                    paused_seen += 1
                await writer.drain()
                assert transport.get_write_buffer_size() <= 64 * 1024 or transport.is_closing()

        sender = asyncio.ensure_future(send())
        received = hashlib.sha256()
        total = 0
        while total < len(data):
            chunk = await reader.read(100_000)
            received.update(chunk)
            total += len(chunk)
            # The reader pauses reading: ciphertext waits, up to the limit.
            assert pair.server.app_transport.get_read_buffer_size() < 256 * 1024 + 7001
        await sender
        assert received.digest() == hashlib.sha256(data).digest()
        assert paused_seen > 0
        # The raw transport's buffer stayed bounded: we stop encrypting while it is paused.
        assert pair.client_raw.max_queued < 32 * 1024 + 2 * 256 * 1024
        writer.close()
        await writer.wait_closed()
        assert await reader.read() == b""

    run_mock(main)


def test_app_write_flow_control_follows_raw_transport(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        capp, sapp = pair.client_app, pair.server_app
        t = capp.transport
        sapp.transport.pause_reading()
        pair.server_raw.pause_reading()  # nothing leaves the client's raw transport
        data = pattern(3 * MB, 4)
        t.write(data)
        # The raw transport took one chunk and paused us: the rest is plaintext.
        assert pair.client_raw.writing_paused
        assert t.get_write_buffer_size() == len(data) - 256 * 1024
        assert capp.paused_writing == 1
        t.write(b"x")  # more writes while paused: no second pause_writing
        assert capp.paused_writing == 1
        pair.server_raw.resume_reading()
        sapp.transport.resume_reading()
        assert await sapp.wait_for(len(data) + 1) == data + b"x"
        assert capp.resumed_writing == 1
        assert t.get_write_buffer_size() == 0
        await close_both(pair)

    run_mock(main)


def test_small_writes_are_coalesced_into_few_records(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        t = pair.client_app.transport
        before = pair.client_raw.bytes_written
        for i in range(1000):
            t.write(b"%05d" % i)
        # The first write left at once; the others wait for the end of the batch.
        assert t.get_write_buffer_size() == 4995
        expected = b"".join(b"%05d" % i for i in range(1000))
        assert await pair.server_app.wait_for(5000) == expected
        # Two records (22 bytes of overhead each in TLS 1.3), not a thousand.
        assert pair.client_raw.bytes_written - before == 5000 + 2 * 22
        await close_both(pair)

    run_mock(main)


def test_mutable_buffers_may_be_reused_after_write(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        t = pair.client_app.transport
        pair.client_raw.writing_paused = True
        pair.client.pause_writing()  # the raw transport is full: nothing is encrypted
        small, big = bytearray(b"a" * 100), bytearray(b"b" * 100_000)
        t.write(small)
        t.write(big)
        small[:] = b"x" * 100
        big[:] = b"y" * 100_000
        big.extend(b"resizable")  # no memoryview of it is kept
        pair.client_raw.writing_paused = False
        pair.client.resume_writing()
        assert await pair.server_app.wait_for(100_100) == b"a" * 100 + b"b" * 100_000
        # A large mutable write that is encrypted at once is not copied first,
        # and its buffer is free again when write() returns.
        big2 = bytearray(b"c" * 100_000)
        t.write(memoryview(big2))
        big2.extend(b"!")
        # One larger than what is encrypted per raw write: the raw transport
        # pauses us half-way and the rest is copied.
        big3 = bytearray(b"d" * 1 * MB)
        t.write(big3)
        big3.extend(b"!")
        big3[:] = b"e"
        assert await pair.server_app.wait_for(200_100 + MB) == (
            b"a" * 100 + b"b" * 100_000 + b"c" * 100_000 + b"d" * MB
        )
        await close_both(pair)

    run_mock(main)


def test_write_type_errors_and_empty_writes(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        t = pair.client_app.transport
        with pytest.raises(TypeError, match="bytes-like"):
            t.write("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            t.writelines([b"ok", 1])
        t.write(b"")
        t.writelines([])
        # A multi-byte memoryview format is sent as its bytes.
        import array

        t.write(memoryview(array.array("i", [1, 2])))
        assert await pair.server_app.wait_for(10) == b"ok" + array.array("i", [1, 2]).tobytes()
        await close_both(pair)

    run_mock(main)


def test_writes_during_handshake_are_sent_after_it(certs: Certs) -> None:
    async def main() -> None:
        pair, client_waiter, _ = await tls_pair(certs, check=False)
        pair.client.app_transport.write(b"early ")
        pair.client.app_transport.write(b"x" * 50_000)
        await client_waiter
        assert await pair.server_app.wait_for(50_006) == b"early " + b"x" * 50_000
        await close_both(pair)

    run_mock(main)


# ---- reading ---------------------------------------------------------------------


@pytest.mark.parametrize("buffered", [False, True], ids=["Protocol", "BufferedProtocol"])
def test_pause_and_resume_reading(certs: Certs, buffered: bool) -> None:
    async def main() -> None:
        factory = BufferedRecorder if buffered else Recorder
        pair, _, _ = await tls_pair(certs, server_app=factory())
        st = pair.server_app.transport
        assert st.is_reading()
        st.pause_reading()
        st.pause_reading()
        assert not st.is_reading()
        data = pattern(2 * MB, 5)
        pair.client_app.transport.write(data)
        # Wait until the server's raw transport was paused: the ciphertext
        # buffer reached its limit and nothing was delivered.
        while pair.server_raw.reading:
            await asyncio.sleep(0)
        assert pair.server_app.data == b""
        assert 256 * 1024 <= st.get_read_buffer_size() < 256 * 1024 + 7001
        assert st.get_read_buffer_limits() == (64 * 1024, 256 * 1024)
        st.resume_reading()
        st.resume_reading()
        assert st.is_reading()
        assert await pair.server_app.wait_for(len(data)) == data
        assert pair.server_raw.reading
        await close_both(pair)

    run_mock(main)


def test_pause_reading_from_data_received(certs: Certs) -> None:
    async def main() -> None:
        class Pausing(Recorder):
            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                self.transport.pause_reading()
                asyncio.get_running_loop().call_soon(self.transport.resume_reading)

        pair, _, _ = await tls_pair(certs, server_app=Pausing(), piece=100)
        data = pattern(300_000, 6)
        pair.client_app.transport.write(data)
        assert await pair.server_app.wait_for(len(data)) == data
        await close_both(pair)

    run_mock(main)


def test_set_read_buffer_limits(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        st = pair.server_app.transport
        st.set_read_buffer_limits(high=10_000)
        assert st.get_read_buffer_limits() == (2500, 10_000)
        st.pause_reading()
        pair.client_app.transport.write(b"z" * 100_000)
        while pair.server_raw.reading:
            await asyncio.sleep(0)
        assert st.get_read_buffer_size() < 10_000 + 7001
        st.set_read_buffer_limits(high=1 * MB)  # lifts the pause of the raw transport
        assert pair.server_raw.reading
        st.set_read_buffer_limits()
        assert st.get_read_buffer_limits() == (64 * 1024, 256 * 1024)
        with pytest.raises(ValueError):
            st.set_read_buffer_limits(high=1, low=2)
        st.resume_reading()
        assert await pair.server_app.wait_for(100_000) == b"z" * 100_000
        await close_both(pair)

    run_mock(main)


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_post_handshake_messages_produce_no_data(certs: Certs, tls12: bool) -> None:
    # TLS 1.3 servers send session tickets after the handshake: the client
    # reads records that carry no application data. Neither data_received(b"")
    # nor an EOF may come of it.
    async def main() -> None:
        client_ctx = certs.client_context()
        if tls12:
            client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        pair, _, _ = await tls_pair(certs, client_ctx=client_ctx, piece=3)
        for _ in range(50):
            await asyncio.sleep(0)
        assert pair.client_app.events == ["made"]
        assert pair.client.app_transport.get_read_buffer_size() == 0
        sslobj = pair.client_app.transport.get_extra_info("ssl_object")
        if not tls12:
            assert sslobj.session is not None and sslobj.session.has_ticket
        pair.server_app.transport.write(b"ping")
        assert await pair.client_app.wait_for(4) == b"ping"
        await close_both(pair)

    run_mock(main)


def test_data_arriving_with_the_last_handshake_message(certs: Certs) -> None:
    # The server writes from connection_made: that data may travel with its
    # handshake messages and must be delivered after the client's connection_made.
    async def main() -> None:
        class Greeter(Recorder):
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                transport.write(b"220 welcome")

        pair, _, _ = await tls_pair(certs, server_app=Greeter(), piece=1 << 20)
        assert await pair.client_app.wait_for(11) == b"220 welcome"
        assert pair.client_app.events == ["made", "data"]
        await close_both(pair)

    run_mock(main)


def test_set_protocol_switches_kind(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        st = pair.server_app.transport
        pair.client_app.transport.write(b"one")
        await pair.server_app.wait_for(3)
        other = BufferedRecorder(size=2)
        st.set_protocol(other)
        assert st.get_protocol() is other
        other.transport = st
        pair.client_app.transport.write(b"two-three")
        assert await other.wait_for(9) == b"two-three"
        pair.client_app.transport.close()
        assert await other.lost is None
        assert await pair.client_app.lost is None
        assert pair.server_app.events == ["made", "data"]

    run_mock(main)


def test_protocol_errors_are_reported_and_close(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))

        class Failing(Recorder):
            def data_received(self, data: bytes) -> None:
                raise ZeroDivisionError

        pair, _, _ = await tls_pair(certs, server_app=Failing())
        pair.client_app.transport.write(b"boom")
        exc = await pair.server_app.lost
        assert isinstance(exc, ZeroDivisionError)
        assert contexts[0]["message"] == "Fatal error on SSL protocol"
        assert contexts[0]["exception"] is exc
        assert contexts[0]["transport"] is pair.server_app.transport
        assert await pair.client_app.lost is None

    run_mock(main)


def test_eof_received_returning_true_is_warned_about(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        pair.server_app.eof_result = True
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            await close_both(pair)
        assert "returning true from eof_received() has no effect" in caplog.text

    run_mock(main)


# ---- closing ---------------------------------------------------------------------


def test_graceful_close_exchanges_close_notify(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct = pair.client_app.transport
        ct.write(b"last words" * 10_000)
        ct.close()
        assert ct.is_closing()
        ct.close()  # idempotent
        assert await pair.server_app.wait_for(100_000) == b"last words" * 10_000
        assert await pair.server_app.lost is None
        assert await pair.client_app.lost is None
        # Both sides read the other's close_notify: no truncation.
        assert pair.server._peer_closed and pair.client._peer_closed
        assert pair.server_app.events == ["made", "data", "eof", "lost"]
        # As in the stdlib, the closing side hears of the peer's close_notify.
        assert pair.client_app.events == ["made", "eof", "lost"]
        assert pair.client_raw.lost and pair.server_raw.lost
        assert pair.client_app.transport.get_write_buffer_size() == 0

    run_mock(main)


def test_writes_after_close_are_dropped_with_a_warning(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct = pair.client_app.transport
        ct.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(4):
                ct.write(b"dropped")
            assert "SSL connection is closed" not in caplog.text
            for _ in range(3):
                ct.write(b"dropped")
        assert "SSL connection is closed" in caplog.text
        await pair.server_app.lost
        assert pair.server_app.data == b""
        await pair.client_app.lost

    run_mock(main)


def test_server_closes_while_client_streams(certs: Certs) -> None:
    # Data racing our close_notify is dropped; the shutdown still succeeds
    # (the stdlib fails it with APPLICATION_DATA_AFTER_CLOSE_NOTIFY).
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct, st = pair.client_app.transport, pair.server_app.transport
        ct.write(pattern(1 * MB, 7))
        await pair.server_app.wait_for(1)
        st.close()
        ct.write(b"more, while the close_notify travels")
        assert await pair.server_app.lost is None
        assert await pair.client_app.lost is None
        assert len(pair.server_app.data) < 1 * MB

    run_mock(main)


def test_close_while_raw_transport_is_paused(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct = pair.client_app.transport
        pair.server_raw.pause_reading()
        data = pattern(2 * MB, 8)
        ct.write(data)
        ct.close()  # the backlog is written before the close_notify
        assert pair.client._state is _tls._FLUSHING
        pair.server_app.transport.write(b"dropped: the client closed")
        for _ in range(5):
            await asyncio.sleep(0)
        assert pair.client._incoming.pending == 0  # read and dropped
        pair.server_raw.resume_reading()
        assert await pair.server_app.wait_for(len(data)) == data
        assert await pair.server_app.lost is None
        assert await pair.client_app.lost is None
        assert pair.client_app.data == b""

    run_mock(main)


def test_abort(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct = pair.client_app.transport
        pair.server_raw.pause_reading()
        ct.write(b"never sent" * 100_000)
        ct.abort()
        assert ct.is_closing()
        assert ct.get_write_buffer_size() == 0
        assert await pair.client_app.lost is None
        pair.server_raw.resume_reading()
        # The server sees a bare EOF: no close_notify, but no error either.
        assert await pair.server_app.lost is None
        assert not pair.server._peer_closed
        assert pair.server_app.events[-2:] == ["eof", "lost"]
        ct.abort()  # harmless
        ct.close()

    run_mock(main)


def test_peer_closing_without_close_notify(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        pair.server_app.transport.write(b"truncated?")
        await asyncio.sleep(0)
        pair.server_raw.close()  # under the TLS layer: a bare TCP FIN
        assert await pair.client_app.lost is None
        assert pair.client_app.data == b"truncated?"
        assert pair.client_app.events == ["made", "data", "eof", "lost"]
        assert not pair.client._peer_closed
        await pair.server_app.lost

    run_mock(main)


def test_bare_eof_while_reading_is_paused_waits_for_the_reader(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct = pair.client_app.transport
        ct.pause_reading()
        pair.server_app.transport.write(b"pending data")
        for _ in range(5):
            await asyncio.sleep(0)
        pair.server_raw.close()
        await pair.server_app.lost
        for _ in range(5):
            await asyncio.sleep(0)
        assert pair.client_app.events == ["made"]
        ct.resume_reading()
        assert await pair.client_app.lost is None
        assert pair.client_app.data == b"pending data"
        assert pair.client_app.events == ["made", "data", "eof", "lost"]

    run_mock(main)


def test_peer_close_lets_app_answer_in_eof_received(certs: Certs) -> None:
    async def main() -> None:
        class Answering(Recorder):
            def eof_received(self) -> Any:
                self.transport.write(b"goodbye")
                return super().eof_received()

        pair, _, _ = await tls_pair(certs, server_app=Answering())
        pair.client_app.transport.close()
        assert await pair.client_app.lost is None
        # TLS 1.3 allows it; the client closed, so the data is dropped there.
        assert await pair.server_app.lost is None

    run_mock(main)


def test_shutdown_timeout(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pair, _, _ = await tls_pair(certs)
        # The server's TLS layer goes deaf: our close_notify is never answered.
        pair.server_raw.set_protocol(asyncio.Protocol())
        pair.client._shutdown_timeout = 7.5
        start = loop.time()
        pair.client_app.transport.close()
        exc = await pair.client_app.lost
        assert isinstance(exc, TimeoutError)
        assert str(exc) == "SSL shutdown timed out"
        assert loop.time() - start == pytest.approx(7.5)
        pair.server.app_transport.abort()  # the deaf one

    run_mock(main)


def test_shutdown_timeout_default_is_30s(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pair, _, _ = await tls_pair(certs)
        pair.server_raw.set_protocol(asyncio.Protocol())
        start = loop.time()
        pair.client_app.transport.close()
        assert isinstance(await pair.client_app.lost, TimeoutError)
        assert loop.time() - start == pytest.approx(30)
        pair.server.app_transport.abort()  # the deaf one

    run_mock(main)


def test_connection_lost_exactly_once(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct = pair.client_app.transport
        ct.close()
        ct.abort()
        pair.client.connection_lost(None)  # a second report from below is ignored
        assert await pair.client_app.lost is None
        await pair.server_app.lost
        for _ in range(5):
            await asyncio.sleep(0)
        assert pair.client_app.events.count("lost") == 1

    run_mock(main)


def test_unclosed_transport_warns(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        transport = pair.client.app_transport
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            transport.__del__()
        await close_both(pair)
        transport.__del__()  # closed: silent

    run_mock(main)


# ---- handshake failures ----------------------------------------------------------


def test_handshake_timeout(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        app = Recorder()
        waiter = loop.create_future()
        client = TLSProtocol(loop, app, certs.client_context(), waiter, server_hostname="localhost")
        a, b = fake_pair(loop, client, asyncio.Protocol())
        a.blackhole = True  # nobody answers our ClientHello
        start = loop.time()
        with pytest.raises(
            ConnectionAbortedError, match=r"SSL handshake is taking longer than 60\.0 seconds"
        ):
            await waiter
        assert loop.time() - start == pytest.approx(60)
        while not a.lost:
            await asyncio.sleep(0)
        assert app.events == []
        b.abort()

    run_mock(main)


def test_handshake_timeout_custom(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        server = TLSProtocol(
            loop,
            Recorder(),
            certs.server_context(),
            waiter,
            server_side=True,
            ssl_handshake_timeout=2.5,
        )
        _a, b = fake_pair(loop, server, asyncio.Protocol())  # the client never speaks
        start = loop.time()
        with pytest.raises(ConnectionAbortedError):
            await waiter
        assert loop.time() - start == pytest.approx(2.5)
        b.abort()

    run_mock(main)


def test_bad_certificate(certs: Certs) -> None:
    async def main() -> None:
        pair, client_waiter, server_waiter = await tls_pair(
            certs, client_ctx=certs.client_context(trust=certs.other_ca), check=False
        )
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await client_waiter
        assert info.value.verify_message == "unable to get local issuer certificate"
        # We send the alert before closing, so the server learns why.
        with pytest.raises(ssl.SSLError, match=r"(?i)unknown[_ ]ca"):
            await server_waiter
        while not (pair.client_raw.lost and pair.server_raw.lost):
            await asyncio.sleep(0)
        assert pair.client_app.events == [] and pair.server_app.events == []
        assert pair.client.app_transport.is_closing()

    run_mock(main)


def test_hostname_mismatch(certs: Certs) -> None:
    async def main() -> None:
        _pair, client_waiter, server_waiter = await tls_pair(
            certs, hostname="wrong.example", check=False
        )
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await client_waiter
        with pytest.raises(ssl.SSLError):
            await server_waiter

    run_mock(main)


def test_handshake_failure_is_logged_in_debug_only(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[Any] = []
        loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
        loop.set_debug(True)
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            _pair, client_waiter, server_waiter = await tls_pair(
                certs, hostname="wrong.example", check=False
            )
            await asyncio.gather(client_waiter, server_waiter, return_exceptions=True)
        loop.set_debug(False)
        assert contexts == []  # SSL errors are OSErrors: not the exception handler's business
        assert "SSL handshake failed on verifying the certificate" in caplog.text
        assert "starts SSL handshake" in caplog.text

    run_mock(main)


def test_peer_disconnects_during_handshake(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        client = TLSProtocol(
            loop, Recorder(), certs.client_context(), waiter, server_hostname="localhost"
        )
        a, b = fake_pair(loop, client, asyncio.Protocol())
        loop.call_soon(b.close)  # EOF as the answer to our ClientHello
        with pytest.raises(ConnectionResetError):
            await waiter
        while not a.lost:
            await asyncio.sleep(0)

    run_mock(main)


def test_connection_lost_during_handshake(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        client = TLSProtocol(
            loop, Recorder(), certs.client_context(), waiter, server_hostname="localhost"
        )
        a, b = fake_pair(loop, client, asyncio.Protocol())
        a.blackhole = True
        await asyncio.sleep(0)
        err = OSError("network down")
        a.lose(err)
        with pytest.raises(OSError, match="network down"):
            await waiter
        b.abort()

    run_mock(main)


def test_garbage_instead_of_tls(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        server = TLSProtocol(loop, Recorder(), certs.server_context(), waiter, server_side=True)
        a, b = fake_pair(loop, server, asyncio.Protocol())
        loop.call_soon(b.write, b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises(ssl.SSLError):
            await waiter
        while not a.lost:
            await asyncio.sleep(0)
        b.abort()

    run_mock(main)


def test_waiter_cancelled_during_handshake(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pair, client_waiter, server_waiter = await tls_pair(certs, check=False)
        client_waiter.cancel()
        # Whoever cancelled closes the raw transport, as create_connection does.
        pair.client_raw.close()
        with pytest.raises((ConnectionResetError, ssl.SSLError)):
            await server_waiter
        while not pair.client_raw.lost:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert pair.client_app.events in ([], ["made", "lost"])
        assert loop.is_running()

    run_mock(main)


def test_raw_transport_calling_data_received(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs, use_get_buffer=False)
        data = pattern(1 * MB, 12)
        pair.client_app.transport.write(data)
        assert await pair.server_app.wait_for(len(data)) == data
        await close_both(pair)

    run_mock(main)


def test_many_small_writes_are_encrypted_before_the_batch_ends(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs, high_water=10 * MB)
        t = pair.client_app.transport
        before = pair.client_raw.bytes_written
        for _ in range(20_000):
            t.write(b"0123456789")
        # Only what came after the last 64 KiB boundary still waits.
        assert t.get_write_buffer_size() < 64 * 1024
        assert pair.client_raw.bytes_written - before > 100_000
        assert await pair.server_app.wait_for(200_000) == b"0123456789" * 20_000
        await close_both(pair)

    run_mock(main)


def test_set_write_buffer_limits(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        t, app = pair.client_app.transport, pair.client_app
        t.set_write_buffer_limits(high=0)
        assert t.get_write_buffer_limits() == (0, 0)
        pair.server_raw.pause_reading()
        t.write(b"a" * 1 * MB)  # the raw transport pauses us; the rest waits
        assert app.paused_writing == 1
        t.set_write_buffer_limits()
        assert t.get_write_buffer_limits() == (128 * 1024, 512 * 1024)
        assert app.resumed_writing == 0  # still above the new low-water mark
        t.set_write_buffer_limits(high=4 * MB)
        assert app.resumed_writing == 1
        pair.server_raw.resume_reading()
        await pair.server_app.wait_for(1 * MB)
        await close_both(pair)

    run_mock(main)


def test_connection_made_raising(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))

        class Failing(Recorder):
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                raise ZeroDivisionError

        pair, client_waiter, server_waiter = await tls_pair(
            certs, client_app=Failing(), check=False
        )
        with pytest.raises(ZeroDivisionError):
            await client_waiter
        assert isinstance(await pair.client_app.lost, ZeroDivisionError)
        assert contexts[0]["message"] == "protocol.connection_made() failed"
        # The client aborted before its Finished got out.
        with pytest.raises(ConnectionResetError):
            await server_waiter

    run_mock(main)


def test_eof_received_raising(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))

        class Failing(Recorder):
            def eof_received(self) -> Any:
                raise ZeroDivisionError

        pair, _, _ = await tls_pair(certs, server_app=Failing())
        pair.client_app.transport.close()
        assert isinstance(await pair.server_app.lost, ZeroDivisionError)
        assert contexts[0]["message"] == "Error calling eof_received()"
        await pair.client_app.lost

    run_mock(main)


def test_get_buffer_returning_an_empty_buffer(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
        pair, _, _ = await tls_pair(certs, server_app=BufferedRecorder(size=0))
        pair.client_app.transport.write(b"data")
        exc = await pair.server_app.lost
        assert isinstance(exc, RuntimeError)
        assert str(exc) == "get_buffer() returned an empty buffer"
        assert contexts[0]["exception"] is exc
        await pair.client_app.lost

    run_mock(main)


def test_get_buffer_returning_a_typed_buffer(certs: Certs) -> None:
    async def main() -> None:
        import array

        class Typed(BufferedRecorder):
            def __init__(self) -> None:
                super().__init__()
                self.typed = array.array("I", bytes(4000))

            def get_buffer(self, sizehint: int) -> Any:
                return memoryview(self.typed)

            def buffer_updated(self, nbytes: int) -> None:
                self.data += self.typed.tobytes()[:nbytes]
                self.received(nbytes)

        pair, _, _ = await tls_pair(certs, server_app=Typed())
        data = pattern(100_000, 13)
        pair.client_app.transport.write(data)
        assert await pair.server_app.wait_for(len(data)) == data
        await close_both(pair)

    run_mock(main)


def test_set_protocol_from_buffer_updated(certs: Certs) -> None:
    async def main() -> None:
        second = Recorder()

        class Handover(BufferedRecorder):
            def buffer_updated(self, nbytes: int) -> None:
                super().buffer_updated(nbytes)
                if len(self.data) >= 5000:
                    self.transport.set_protocol(second)
                    second.transport = self.transport

        pair, _, _ = await tls_pair(certs, server_app=Handover(size=5000), piece=1 << 20)
        data = pattern(50_000, 14)
        pair.client_app.transport.write(data)
        assert await second.wait_for(45_000) == data[5000:]
        assert pair.server_app.data == data[:5000]
        pair.client_app.transport.close()
        assert await second.lost is None
        await pair.client_app.lost

    run_mock(main)


def test_debug_mode_logs_the_handshake(certs: Certs, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        asyncio.get_running_loop().set_debug(True)
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            pair, _, _ = await tls_pair(certs)
            await close_both(pair)
        asyncio.get_running_loop().set_debug(False)
        assert "SSL handshake took" in caplog.text

    run_mock(main)


def test_close_during_handshake_aborts(certs: Certs) -> None:
    async def main() -> None:
        pair, client_waiter, server_waiter = await tls_pair(certs, check=False)
        await asyncio.sleep(0)
        assert pair.client._state is _tls._HANDSHAKING
        pair.client.app_transport.close()
        with pytest.raises(ConnectionResetError):
            await client_waiter
        with pytest.raises(ConnectionResetError):
            await server_waiter
        assert pair.client_app.events == []

    run_mock(main)


def test_closed_before_connection_made(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        tls = TLSProtocol(loop, Recorder(), certs.client_context(), waiter, server_hostname="x")
        tls.app_transport.close()
        a, b = fake_pair(loop, tls, asyncio.Protocol())
        with pytest.raises(ConnectionResetError):
            await waiter
        assert a.lost and not a.bytes_written
        b.abort()

    run_mock(main)


def test_raw_eof_while_waiting_for_close_notify(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)

        class HangUp(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                pair.server_raw.close()  # a FIN, but no close_notify

        pair.server_raw.set_protocol(HangUp())
        pair.client_app.transport.close()
        assert await pair.client_app.lost is None
        assert pair.client_app.events == ["made", "eof", "lost"]
        assert not pair.client._peer_closed
        pair.server.app_transport.abort()

    run_mock(main)


def test_raw_eof_while_flushing(certs: Certs) -> None:
    async def main() -> None:
        pair, _, _ = await tls_pair(certs)
        ct = pair.client_app.transport
        pair.server_raw.pause_reading()
        ct.write(b"q" * 1 * MB)
        ct.close()
        assert pair.client._state is _tls._FLUSHING
        pair.server_raw.close()  # the server goes away without reading
        assert await pair.client_app.lost is None
        assert pair.client_app.events == ["made", "eof", "lost"]
        pair.server_app.transport.abort()

    run_mock(main)


def test_constructor_arguments(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        app = Recorder()
        ctx = certs.client_context()
        with pytest.raises(ValueError, match="ssl_handshake_timeout should be a positive number"):
            TLSProtocol(loop, app, ctx, None, ssl_handshake_timeout=0)
        with pytest.raises(ValueError, match="ssl_shutdown_timeout should be a positive number"):
            TLSProtocol(loop, app, ctx, None, ssl_shutdown_timeout=-1)
        with pytest.raises(ValueError, match="Server side SSL needs a valid SSLContext"):
            TLSProtocol(loop, app, None, None, server_side=True)
        # ssl=True: a default context, hostname checks only with a hostname.
        tls = TLSProtocol(loop, app, None, None)
        context = tls.app_transport.get_extra_info("sslcontext")
        assert isinstance(context, ssl.SSLContext) and not context.check_hostname
        tls = TLSProtocol(loop, app, None, None, server_hostname="example.com")
        assert tls.app_transport.get_extra_info("sslcontext").check_hostname
        assert tls.app_transport.get_extra_info("peername") is None

    run_mock(main)


# ---- start_tls over any transport ------------------------------------------------


class LineProtocol(asyncio.Protocol):
    """Plain-text side of a STARTTLS exchange."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.lines: asyncio.Queue[bytes] = asyncio.Queue()
        self.buffer = b""
        self.lost: asyncio.Future[Any] = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.lines.put_nowait(line)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


def test_start_tls_over_fake_transports(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = LineProtocol(), LineProtocol()
        a, b = fake_pair(loop, client, server)
        await asyncio.sleep(0)
        a.write(b"STARTTLS\n")
        assert await server.lines.get() == b"STARTTLS"
        b.write(b"GO AHEAD\n")
        assert await client.lines.get() == b"GO AHEAD"
        server_tls, client_tls = await asyncio.gather(
            loop.start_tls(b, server, certs.server_context(), server_side=True),
            loop.start_tls(a, client, certs.client_context(), server_hostname="localhost"),
        )
        assert a.get_protocol() is not client
        assert client_tls.get_protocol() is client
        assert client_tls.get_extra_info("ssl_object").version() == "TLSv1.3"
        assert client_tls.get_extra_info("peername") == ("peer", 1)
        client_tls.write(b"secret\n")
        assert await server.lines.get() == b"secret"
        server_tls.write(b"reply\n")
        assert await client.lines.get() == b"reply"
        client_tls.close()
        assert await client.lost is None
        assert await server.lost is None

    run_mock(main)


def test_start_tls_failure_closes_transport(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = LineProtocol(), LineProtocol()
        a, b = fake_pair(loop, client, server)
        await asyncio.sleep(0)
        results = await asyncio.gather(
            loop.start_tls(b, server, certs.server_context(), server_side=True),
            loop.start_tls(
                a,
                client,
                certs.client_context(trust=certs.other_ca),
                server_hostname="localhost",
            ),
            return_exceptions=True,
        )
        assert isinstance(results[0], ssl.SSLError)
        assert isinstance(results[1], ssl.SSLCertVerificationError)
        assert a.is_closing() and b.is_closing()
        # The protocols were connected before start_tls: they hear of the end.
        assert isinstance(await client.lost, ssl.SSLCertVerificationError)
        assert isinstance(await server.lost, ssl.SSLError)

    run_mock(main)


def test_start_tls_handshake_timeout(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = LineProtocol(), LineProtocol()
        a, b = fake_pair(loop, client, server)
        await asyncio.sleep(0)
        start = loop.time()
        with pytest.raises(ConnectionAbortedError):
            await loop.start_tls(
                a,
                client,
                certs.client_context(),
                server_hostname="localhost",
                ssl_handshake_timeout=3,
            )
        assert loop.time() - start == pytest.approx(3)
        assert a.is_closing()
        b.abort()

    run_mock(main)


def test_start_tls_cancelled(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = LineProtocol(), LineProtocol()
        a, b = fake_pair(loop, client, server)
        await asyncio.sleep(0)
        task = asyncio.ensure_future(
            loop.start_tls(a, client, certs.client_context(), server_hostname="localhost")
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert a.is_closing()
        assert await client.lost is None
        b.abort()

    run_mock(main)


def test_start_tls_argument_checks(certs: Certs) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = LineProtocol(), LineProtocol()
        a, _b = fake_pair(loop, client, server)
        await asyncio.sleep(0)
        with pytest.raises(
            TypeError, match=r"sslcontext is expected to be an instance of ssl\.SSLContext"
        ):
            await loop.start_tls(a, client, object())  # type: ignore[arg-type]

        class Unsupported(asyncio.Transport):
            pass  # only the abstract methods

        with pytest.raises(TypeError, match="is not supported by start_tls"):
            await loop.start_tls(Unsupported(), client, certs.client_context())

        class OptedOut(FakeTransport):
            _start_tls_compatible = False

        with pytest.raises(TypeError, match="is not supported by start_tls"):
            await loop.start_tls(OptedOut(loop, client), client, certs.client_context())
        with pytest.raises(ValueError, match="ssl_handshake_timeout"):
            await loop.start_tls(a, client, certs.client_context(), ssl_handshake_timeout=0)
        assert a.get_protocol() is client  # nothing was changed
        a.close()
        # A closing transport: None, as from the stdlib; the protocol keeps it.
        assert (
            await loop.start_tls(a, client, certs.client_context(), server_hostname="localhost")
            is None
        )
        assert a.get_protocol() is client
        await client.lost
        await server.lost

    run_mock(main)


def test_tls_inside_tls(certs: Certs) -> None:
    """start_tls() over our own TLS transport (as through an HTTPS proxy)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        outer, _, _ = await tls_pair(certs, client_app=LineProtocol(), server_app=LineProtocol())
        client, server = outer.client_app, outer.server_app
        outer_client_t = outer.client.app_transport
        server_tls, client_tls = await asyncio.gather(
            loop.start_tls(
                outer.server.app_transport, server, certs.server_context(), server_side=True
            ),
            loop.start_tls(
                outer_client_t, client, certs.client_context(), server_hostname="localhost"
            ),
        )
        assert outer_client_t.get_protocol() is not client
        data = pattern(1 * MB, 9).replace(b"\n", b"-") + b"\n"
        client_tls.write(data)
        assert await server.lines.get() == data[:-1]
        server_tls.write(b"inner reply\n")
        assert await client.lines.get() == b"inner reply"
        client_tls.close()
        assert await client.lost is None
        assert await server.lost is None
        assert outer.client_raw.lost and outer.server_raw.lost

    run_mock(main)


# ---- end to end over TCP, on both loops ------------------------------------------

needs_connections = pytest.mark.skipif(
    "create_connection" not in vars(_connections.ConnectionsMixin),
    reason="loop.create_connection() is not implemented yet",
)


async def _echo_server(certs: Certs, **kwargs: Any) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, HOST, 0, ssl=certs.server_context(), **kwargs)


@needs_connections
def test_streams_over_tcp(certs: Certs, aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        server = await _echo_server(certs)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        transport = writer.transport
        assert transport.get_extra_info("peername")[0] == HOST
        assert transport.get_extra_info("sockname")[0] == HOST
        assert transport.get_extra_info("socket") is not None
        assert transport.get_extra_info("ssl_object").server_hostname == "localhost"
        assert transport.get_extra_info("cipher") is not None
        data = pattern(3 * MB, 10)
        writer.write(data)
        await writer.drain()
        assert await reader.readexactly(len(data)) == data
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    aio_run(main)


@needs_connections
def test_closed_connection_is_freed_without_the_cyclic_gc(
    certs: Certs, aio_run: Callable[..., Any]
) -> None:
    # A protocol that keeps its transport (as most do) must not tie the
    # closed connection, its buffers and its SSLContext into a cycle.
    class Keeper(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.lost = asyncio.get_running_loop().create_future()

        def connection_lost(self, exc: BaseException | None) -> None:
            self.lost.set_result(None)

    async def main() -> weakref.ref[ssl.SSLContext]:
        loop = asyncio.get_running_loop()
        server = await _echo_server(certs)
        port = server.sockets[0].getsockname()[1]
        context = certs.client_context()
        transport, protocol = await loop.create_connection(
            Keeper, HOST, port, ssl=context, server_hostname="localhost"
        )
        transport.close()
        await protocol.lost
        server.close()
        await server.wait_closed()
        return weakref.ref(context)

    gc.collect()
    gc.disable()
    try:
        context_ref = aio_run(main)
        assert context_ref() is None
    finally:
        gc.enable()


@needs_connections
def test_bad_certificate_over_tcp(certs: Certs, aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reports: list[dict[str, Any]] = []
        # In debug mode (python -X dev) loops report the server's failed
        # handshakes to the exception handler, as the stdlib does.
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        server = await _echo_server(certs)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                HOST,
                port,
                ssl=certs.client_context(trust=certs.other_ca),
                server_hostname="localhost",
            )
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await asyncio.open_connection(
                HOST, port, ssl=certs.client_context(), server_hostname="wrong.example"
            )
        server.close()
        await server.wait_closed()
        for context in reports:
            assert loop.get_debug()
            assert context["message"] == "Error on transport creation for incoming connection"

    aio_run(main)


@needs_connections
def test_create_connection_handshake_timeout_over_tcp(
    certs: Certs, aio_run: Callable[..., Any]
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # A plain TCP server that accepts and never says anything.
        silent = await loop.create_server(asyncio.Protocol, HOST, 0)
        port = silent.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionAbortedError):
            await loop.create_connection(
                asyncio.Protocol,
                HOST,
                port,
                ssl=certs.client_context(),
                server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )
        silent.close()
        await silent.wait_closed()

    aio_run(main)


@needs_connections
@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is 3.11+")
def test_stream_writer_start_tls_over_tcp(certs: Certs, aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        upgraded = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                assert await reader.readline() == b"STARTTLS\n"
                writer.write(b"OK\n")
                await writer.drain()
                await writer.start_tls(certs.server_context())
                line = await reader.readline()
                writer.write(line.upper())
                await writer.drain()
                upgraded.set_result(writer.get_extra_info("ssl_object") is not None)
            finally:
                writer.close()

        server = await asyncio.start_server(handle, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        await writer.start_tls(certs.client_context(), server_hostname="localhost")
        assert writer.get_extra_info("peercert") is not None
        writer.write(b"over tls\n")
        assert await reader.readline() == b"OVER TLS\n"
        assert await upgraded
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    aio_run(main)


@needs_connections
def test_loop_start_tls_over_tcp(certs: Certs, aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_side: asyncio.Future[tuple[Any, LineProtocol]] = loop.create_future()

        def factory() -> LineProtocol:
            protocol = LineProtocol()

            async def upgrade() -> None:
                assert await protocol.lines.get() == b"STARTTLS"
                # The client waits for this before its ClientHello, so no
                # TLS data can reach the plain-text protocol.
                protocol.transport.write(b"GO\n")
                transport = await loop.start_tls(
                    protocol.transport, protocol, certs.server_context(), server_side=True
                )
                server_side.set_result((transport, protocol))

            protocol.upgrade = asyncio.ensure_future(upgrade())  # type: ignore[attr-defined]
            return protocol

        server = await loop.create_server(factory, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(LineProtocol, HOST, port)
        with pytest.raises(TypeError, match="sslcontext is expected"):
            await loop.start_tls(transport, client, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="is not supported by start_tls"):
            await loop.start_tls(asyncio.Transport(), client, certs.client_context())
        transport.write(b"STARTTLS\n")
        assert await client.lines.get() == b"GO"
        tls = await loop.start_tls(
            transport, client, certs.client_context(), server_hostname="localhost"
        )
        server_tls, server_proto = await server_side
        assert tls.get_extra_info("peername") == transport.get_extra_info("peername")
        assert tls.get_extra_info("ssl_object").version() == "TLSv1.3"
        data = pattern(2 * MB, 15).replace(b"\n", b"") + b"\n"
        tls.write(data)
        assert await server_proto.lines.get() == data[:-1]
        server_tls.write(b"bye\n")
        assert await client.lines.get() == b"bye"
        tls.close()
        assert await client.lost is None
        assert await server_proto.lost is None
        server_tls.close()  # a no-op, but 3.10's stdlib warns otherwise
        server.close()
        await server.wait_closed()

    aio_run(main)


@needs_connections
def test_start_tls_on_a_closing_transport_gives_none(
    certs: Certs, aio_run: Callable[..., Any]
) -> None:
    # aiohttp relies on this: "Failed to start TLS (possibly caused by
    # closing transport)".
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(LineProtocol, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(LineProtocol, HOST, port)
        transport.close()
        tls = await loop.start_tls(
            transport, client, certs.client_context(), server_hostname="localhost"
        )
        assert tls is None
        server.close()
        await server.wait_closed()

    aio_run(main)


@needs_connections
def test_protocols_over_tcp_close_and_eof(certs: Certs, aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_apps: list[Recorder] = []

        def factory() -> Recorder:
            server_apps.append(Recorder())
            return server_apps[-1]

        server = await loop.create_server(factory, HOST, 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        transport, app = await loop.create_connection(
            Recorder, HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        assert not transport.can_write_eof()
        transport.write(b"x" * 100_000)
        await server_apps[0].wait_for(100_000)
        transport.close()
        assert await app.lost is None
        assert await server_apps[0].lost is None
        if sys.version_info >= (3, 11) or isinstance(loop, trio_asyncio.TrioEventLoop):
            assert server_apps[0].events == ["made", "data", "eof", "lost"]
        else:  # the stdlib's TLS before 3.11 did not report the close_notify
            assert server_apps[0].events == ["made", "data", "lost"]
        # abort: the server sees an EOF without close_notify, and no error.
        transport, app = await loop.create_connection(
            Recorder, HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        transport.write(b"y")
        await server_apps[1].wait_for(1)
        transport.abort()
        assert await app.lost is None
        # (The stdlib loop's socket may hold unread session tickets: a reset.)
        exc = await server_apps[1].lost
        assert exc is None or isinstance(exc, ConnectionResetError)
        for server_app in server_apps:
            server_app.transport.close()  # no-ops, but 3.10's stdlib warns otherwise
        server.close()
        await server.wait_closed()

    aio_run(main)


@needs_connections
def test_sendfile_over_tls(certs: Certs, tmp_path: Path, aio_run: Callable[..., Any]) -> None:
    data = pattern(3 * MB, 16)
    path = tmp_path / "payload"
    path.write_bytes(data)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_app: asyncio.Future[Recorder] = loop.create_future()

        def factory() -> Recorder:
            app = Recorder()
            server_app.set_result(app)
            return app

        server = await loop.create_server(factory, HOST, 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        transport, app = await loop.create_connection(
            Recorder, HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        transport.write(b"header:")
        with path.open("rb") as file:
            sent = await loop.sendfile(transport, file, offset=1000, count=2 * MB)
            assert sent == 2 * MB
            assert file.tell() == 1000 + 2 * MB
        assert transport.get_protocol() is app
        transport.write(b":trailer")
        received = await (await server_app).wait_for(7 + 2 * MB + 8)
        assert received == b"header:" + data[1000 : 1000 + 2 * MB] + b":trailer"
        transport.close()
        assert await app.lost is None
        (await server_app).transport.close()
        server.close()
        await server.wait_closed()

    aio_run(main)


@needs_connections
def test_interop_with_trio_ssl_stream(certs: Certs) -> None:
    """Our TLS client against Trio's own SSLStream server (a different TLS driver)."""

    async def main() -> None:
        async def handler(stream: trio.SSLStream) -> None:
            data = b""
            while len(data) < 1 * MB:
                data += await stream.receive_some()
            await stream.send_all(hashlib.sha256(data).digest())
            await stream.aclose()

        async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(
                    trio.serve_ssl_over_tcp, handler, 0, certs.server_context(), host=HOST
                )
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]

            async def client() -> bytes:
                reader, writer = await asyncio.open_connection(
                    HOST, port, ssl=certs.client_context(), server_hostname="localhost"
                )
                payload = pattern(1 * MB, 11)
                writer.write(payload)
                digest = await reader.readexactly(32)
                assert digest == hashlib.sha256(payload).digest()
                assert await reader.read() == b""
                writer.close()
                await writer.wait_closed()
                return digest

            await trio_asyncio.aio_as_trio(client)()
            nursery.cancel_scope.cancel()
        assert loop.is_closed()

    trio.run(main)
