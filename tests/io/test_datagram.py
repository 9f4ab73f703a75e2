"""create_datagram_endpoint and the datagram transport.

Most tests are differential (``aio_run`` runs them on the stdlib loop too);
the few that check a deliberate difference from the stdlib use
``trio_aio_run``. Nothing sleeps to synchronise: every wait is for an event
the test causes, with a timeout only as a guard against hangs.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import sys
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trio_asyncio import TrioEventLoop
from trio_asyncio._io import _datagram

LOCALHOST = "127.0.0.1"
GUARD = 10.0  # seconds; only ever reached when a test is broken
PY310 = sys.version_info < (3, 11)
PY313 = sys.version_info >= (3, 13)


class Recorder(asyncio.DatagramProtocol):
    """Records every protocol call, in order, for the test to await."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None
        self.made = 0
        self.lost_calls = 0
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport: Any) -> None:
        self.made += 1
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.events.put_nowait(("data", (data, addr)))

    def error_received(self, exc: Exception) -> None:
        self.events.put_nowait(("error", exc))

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1
        self.events.put_nowait(("resumed", None))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost_calls += 1
        if not self.lost.done():
            self.lost.set_result(exc)

    async def next(self) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), GUARD)

    async def next_data(self) -> tuple[bytes, Any]:
        kind, value = await self.next()
        assert kind == "data", (kind, value)
        return value  # type: ignore[no-any-return]

    async def wait_lost(self) -> BaseException | None:
        return await asyncio.wait_for(asyncio.shield(self.lost), GUARD)


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def endpoint(**kwargs: Any) -> tuple[Any, Recorder]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Recorder, **kwargs)  # type: ignore[return-value]


async def close_all(*pairs: tuple[Any, Recorder]) -> None:
    for transport, _ in pairs:
        transport.close()
    for _, protocol in pairs:
        assert await protocol.wait_lost() is None


def unix_dgram_pair(
    directory: Path, sndbuf: int | None = None
) -> tuple[socket.socket, socket.socket]:
    """Two non-blocking Unix datagram sockets, bound to paths and connected.

    Not ``socketpair()``: the stdlib transport takes an unnamed peer ('') for
    an unconnected socket and then fails to send.
    """
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a_path, b_path = str(directory / "a"), str(directory / "b")
    a.bind(a_path)
    b.bind(b_path)
    a.connect(b_path)
    b.connect(a_path)
    if sndbuf is not None:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def free_udp_port(family: int = socket.AF_INET, host: str = LOCALHOST) -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def short_tmp(tmp_path: Path) -> Path:
    """A directory for sockets whose paths fit in sun_path (108 bytes)."""
    if len(str(tmp_path)) < 80:
        return tmp_path
    pytest.skip("tmp_path too long for a Unix socket path")


# ---- echo, connected and not -------------------------------------------------


def test_echo_unconnected(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_datagram_endpoint(Echo, local_addr=(LOCALHOST, 0))
        server_addr = server[0].get_extra_info("sockname")
        client = await endpoint(local_addr=(LOCALHOST, 0))
        transport, protocol = client
        assert protocol.made == 1 and protocol.transport is transport
        # (The stdlib's transport is only a DatagramTransport from 3.12.)
        assert isinstance(transport, asyncio.BaseTransport)
        if isinstance(loop, TrioEventLoop) or sys.version_info >= (3, 12):
            assert isinstance(transport, asyncio.DatagramTransport)
        assert transport.get_extra_info("peername") is None
        sockname = transport.get_extra_info("sockname")
        assert sockname[0] == LOCALHOST and sockname[1] > 0
        sock = transport.get_extra_info("socket")
        assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_DGRAM)
        assert sock.getsockname() == sockname
        assert transport.get_write_buffer_size() == 0
        assert not transport.is_closing()

        for payload in (b"one", bytearray(b"two"), memoryview(b"three")):
            transport.sendto(payload, server_addr)
            assert await protocol.next_data() == (bytes(payload), server_addr)

        server[0].close()
        await close_all(client)
        assert transport.is_closing()
        assert protocol.lost_calls == 1

    aio_run(main)


def test_echo_connected(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_datagram_endpoint(Echo, local_addr=(LOCALHOST, 0))
        server_addr = server[0].get_extra_info("sockname")
        client = await endpoint(remote_addr=server_addr)
        transport, protocol = client
        assert transport.get_extra_info("peername") == server_addr
        transport.sendto(b"default destination")
        assert await protocol.next_data() == (b"default destination", server_addr)
        transport.sendto(b"explicit, same address", server_addr)
        assert await protocol.next_data() == (b"explicit, same address", server_addr)
        server[0].close()
        await close_all(client)

    aio_run(main)


def test_local_and_remote(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        peer = await endpoint(local_addr=(LOCALHOST, 0))
        peer_addr = peer[0].get_extra_info("sockname")
        port = free_udp_port()
        me = await endpoint(local_addr=(LOCALHOST, port), remote_addr=peer_addr)
        assert me[0].get_extra_info("sockname") == (LOCALHOST, port)
        assert me[0].get_extra_info("peername") == peer_addr
        me[0].sendto(b"hi")
        assert await peer[1].next_data() == (b"hi", (LOCALHOST, port))
        await close_all(peer, me)

    aio_run(main)


def test_family_only(aio_run: Callable[..., Any]) -> None:
    """No addresses: an unbound socket of *family*; the first sendto binds it."""

    async def main() -> None:
        peer = await endpoint(local_addr=(LOCALHOST, 0))
        peer_addr = peer[0].get_extra_info("sockname")
        me = await endpoint(family=socket.AF_INET)
        assert me[0].get_extra_info("peername") is None
        me[0].sendto(b"x", peer_addr)
        data, addr = await peer[1].next_data()
        assert data == b"x" and addr[1] != 0
        await close_all(peer, me)

    aio_run(main)


def test_many_datagrams_in_order(aio_run: Callable[..., Any]) -> None:
    """A burst larger than one readiness' worth of reads arrives whole and in order."""

    async def main() -> None:
        transport, protocol = await endpoint(local_addr=(LOCALHOST, 0))
        addr = transport.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            count = 5 * _datagram.MAX_READS_PER_READY + 3
            for i in range(count):
                sender.sendto(b"%d" % i, addr)
            for i in range(count):
                assert (await protocol.next_data())[0] == b"%d" % i
        await close_all((transport, protocol))

    aio_run(main)


def test_read_budget_adapts(trio_aio_run: Callable[..., Any]) -> None:
    """Bursts raise the number of receives per readiness; a trickle lowers it."""

    async def main() -> None:
        transport, protocol = await endpoint(local_addr=(LOCALHOST, 0))
        addr = transport.get_extra_info("sockname")
        assert transport._read_budget == 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(3):  # one datagram per readiness: stays at 1
                sender.sendto(b"one", addr)
                await protocol.next_data()
            assert transport._read_budget == 1
            burst = 4 * _datagram.MAX_READS_PER_READY
            for _ in range(burst):
                sender.sendto(b"many", addr)
            budgets = set()
            for _ in range(burst):
                await protocol.next_data()
                budgets.add(transport._read_budget)
            assert max(budgets) == _datagram.MAX_READS_PER_READY
            sender.sendto(b"one", addr)
            await protocol.next_data()
            assert transport._read_budget == 1
        await close_all((transport, protocol))

    trio_aio_run(main)


def test_big_unix_datagram(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    """Datagrams up to 256 KiB are received whole (more than any UDP datagram)."""

    async def main() -> None:
        a, b = unix_dgram_pair(short_tmp)
        with a:
            size = 150_000
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * size)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * size)
            transport, protocol = await endpoint(sock=b)
            payload = bytes(range(256)) * (size // 256)
            a.send(payload)
            assert (await protocol.next_data())[0] == payload
            a.send(b"small")  # the shared buffer holds no stale bytes
            assert (await protocol.next_data())[0] == b"small"
            await close_all((transport, protocol))

    aio_run(main)


def test_empty_datagram(trio_aio_run: Callable[..., Any], short_tmp: Path) -> None:
    """Empty datagrams are sent (the stdlib drops them before Python 3.13)."""

    async def main() -> None:
        a, b = unix_dgram_pair(short_tmp)
        with a:
            transport, protocol = await endpoint(sock=b)
            transport.sendto(b"")
            assert a.recv(10) == b""
            a.send(b"")
            assert (await protocol.next_data())[0] == b""
            await close_all((transport, protocol))

    trio_aio_run(main)


# ---- address resolution --------------------------------------------------------------


def test_resolve_hostname(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        peer = await endpoint(local_addr=(LOCALHOST, 0))
        port = peer[0].get_extra_info("sockname")[1]
        me = await endpoint(
            local_addr=("localhost", 0), remote_addr=("localhost", port), family=socket.AF_INET
        )
        assert me[0].get_extra_info("sockname")[0] == LOCALHOST
        assert me[0].get_extra_info("peername") == (LOCALHOST, port)
        me[0].sendto(b"by name")
        assert (await peer[1].next_data())[0] == b"by name"
        await close_all(peer, me)

    aio_run(main)


def fake_getaddrinfo(loop: asyncio.AbstractEventLoop, answers: dict[str, list[Any]]) -> list[Any]:
    """Make *loop* resolve the hosts in *answers* to canned addrinfo lists; log lookups."""
    lookups: list[Any] = []

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> list[Any]:
        lookups.append((host, port, kwargs))
        return answers[host]  # type: ignore[no-any-return]

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    return lookups


def udp_info(host: str, port: int, proto: int = socket.IPPROTO_UDP) -> tuple[Any, ...]:
    return (socket.AF_INET, socket.SOCK_DGRAM, proto, "", (host, port))


def test_lookup_arguments(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lookups = fake_getaddrinfo(loop, {"here.test": [udp_info(LOCALHOST, 0)]})
        me = await endpoint(
            local_addr=("here.test", 0), proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE
        )
        assert lookups == [
            (
                "here.test",
                0,
                {
                    "family": 0,
                    "type": socket.SOCK_DGRAM,
                    "proto": socket.IPPROTO_UDP,
                    "flags": socket.AI_PASSIVE,
                },
            )
        ]
        # Numeric hosts are not looked up.
        other = await endpoint(local_addr=(LOCALHOST, 0), remote_addr=(LOCALHOST, 9))
        assert len(lookups) == 1
        await close_all(me, other)

    aio_run(main)


def test_lookup_returns_nothing(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        fake_getaddrinfo(asyncio.get_running_loop(), {"nowhere.test": []})
        with pytest.raises(OSError, match="getaddrinfo\\(\\) returned empty list"):
            await endpoint(remote_addr=("nowhere.test", 9))

    aio_run(main)


def test_first_working_address_wins(aio_run: Callable[..., Any]) -> None:
    """One socket is tried per (family, proto), in order, until one binds."""

    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind((LOCALHOST, 0))
            port = busy.getsockname()[1]
            fake_getaddrinfo(
                asyncio.get_running_loop(),
                {
                    "multi.test": [udp_info(LOCALHOST, port), udp_info(LOCALHOST, 0, proto=0)],
                    # For one (family, proto), the last address counts.
                    "same.test": [udp_info(LOCALHOST, 0), udp_info(LOCALHOST, port)],
                    # Fails with EADDRINUSE, then with a gaierror.
                    "dead.test": [udp_info(LOCALHOST, port), udp_info("::1", 0, proto=0)],
                },
            )
            me = await endpoint(local_addr=("multi.test", 0))
            assert me[0].get_extra_info("sockname")[0] == LOCALHOST
            assert me[0].get_extra_info("socket").proto == 0
            await close_all(me)
            for host in ("same.test", "dead.test"):
                with pytest.raises(OSError) as info:
                    await endpoint(local_addr=(host, 0))
                assert info.value.errno == errno.EADDRINUSE  # the first error

    aio_run(main)


# ---- socket options ------------------------------------------------------------


def test_allow_broadcast(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        peer = await endpoint(local_addr=(LOCALHOST, 0))
        peer_addr = peer[0].get_extra_info("sockname")
        plain = await endpoint(local_addr=(LOCALHOST, 0))
        sock = plain[0].get_extra_info("socket")
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        # A broadcast endpoint is not connected, but remote_addr remains
        # the default destination.
        bcast = await endpoint(remote_addr=peer_addr, allow_broadcast=True)
        sock = bcast[0].get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        assert bcast[0].get_extra_info("peername") is None
        bcast[0].sendto(b"to the default")
        assert (await peer[1].next_data())[0] == b"to the default"
        with pytest.raises(ValueError, match="Invalid address"):
            bcast[0].sendto(b"elsewhere", (LOCALHOST, 9))
        await close_all(peer, plain, bcast)

    aio_run(main)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        first = await endpoint(local_addr=(LOCALHOST, 0), reuse_port=True)
        port = first[0].get_extra_info("sockname")[1]
        sock = first[0].get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        second = await endpoint(local_addr=(LOCALHOST, port), reuse_port=True)
        assert second[0].get_extra_info("sockname") == (LOCALHOST, port)
        with pytest.raises(OSError) as info:
            await endpoint(local_addr=(LOCALHOST, port))
        assert info.value.errno == errno.EADDRINUSE
        await close_all(first, second)

    aio_run(main)


def test_address_in_use(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        first = await endpoint(local_addr=(LOCALHOST, 0))
        port = first[0].get_extra_info("sockname")[1]
        with pytest.raises(OSError) as info:
            await endpoint(local_addr=(LOCALHOST, port))
        assert info.value.errno == errno.EADDRINUSE
        await close_all(first)

    aio_run(main)


# ---- IPv6 -----------------------------------------------------------------------


ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")


@ipv6
def test_ipv6_echo(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_datagram_endpoint(Echo, local_addr=("::1", 0))
        server_addr = server[0].get_extra_info("sockname")
        assert len(server_addr) == 4
        client = await endpoint(remote_addr=server_addr[:2])
        transport, protocol = client
        assert transport.get_extra_info("socket").family == socket.AF_INET6
        assert transport.get_extra_info("peername") == server_addr
        transport.sendto(b"six")
        assert await protocol.next_data() == (b"six", server_addr)
        server[0].close()
        await close_all(client)

    aio_run(main)


@ipv6
def test_ipv6_remote_without_flowinfo(trio_aio_run: Callable[..., Any]) -> None:
    """``(host, port)`` names the resolved ``(host, port, 0, 0)`` remote address.

    The stdlib raises ValueError here, although both are the same address.
    """

    async def main() -> None:
        peer = await endpoint(local_addr=("::1", 0))
        peer_addr = peer[0].get_extra_info("sockname")
        me = await endpoint(remote_addr=peer_addr[:2])
        me[0].sendto(b"short form", peer_addr[:2])
        me[0].sendto(b"long form", peer_addr)
        assert (await peer[1].next_data())[0] == b"short form"
        assert (await peer[1].next_data())[0] == b"long form"
        with pytest.raises(ValueError, match="Invalid address"):
            me[0].sendto(b"x", ("::1", peer_addr[1], 0, 7))
        await close_all(peer, me)

    trio_aio_run(main)


@ipv6
def test_families_must_match(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="can not get address information"):
            await endpoint(local_addr=(LOCALHOST, 0), remote_addr=("::1", 9))

    aio_run(main)


# ---- Unix datagram sockets --------------------------------------------------------


def test_unix_echo(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_path = str(short_tmp / "srv")
        client_path = str(short_tmp / "cli")
        server = await loop.create_datagram_endpoint(
            Echo, local_addr=server_path, family=socket.AF_UNIX
        )
        assert server[0].get_extra_info("sockname") == server_path
        client = await endpoint(
            local_addr=client_path, remote_addr=server_path, family=socket.AF_UNIX
        )
        transport, protocol = client
        assert transport.get_extra_info("peername") == server_path
        assert transport.get_extra_info("socket").family == socket.AF_UNIX
        transport.sendto(b"over a path")
        assert await protocol.next_data() == (b"over a path", server_path)
        with pytest.raises(ValueError, match="Invalid address"):
            transport.sendto(b"x", str(short_tmp / "other"))
        server[0].close()
        await close_all(client)

        # The socket files stay behind; a new endpoint replaces a stale one.
        assert os.path.exists(server_path)
        again = await endpoint(local_addr=server_path, family=socket.AF_UNIX)
        await close_all(again)

    aio_run(main)


def test_unix_refuses_tuples(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="string is expected"):
            await endpoint(local_addr=(LOCALHOST, 0), family=socket.AF_UNIX)
        with pytest.raises(TypeError, match="string is expected"):
            await endpoint(remote_addr=b"/tmp/x", family=socket.AF_UNIX)

    aio_run(main)


def test_unix_remote_missing(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await endpoint(remote_addr=str(short_tmp / "nobody"), family=socket.AF_UNIX)

    aio_run(main)


def test_unix_abstract_namespace(aio_run: Callable[..., Any]) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract namespace is Linux-only")

    async def main() -> None:
        name = f"\0trio-asyncio-test-{os.getpid()}-{id(main)}"
        server = await endpoint(local_addr=name, family=socket.AF_UNIX)
        client = await endpoint(remote_addr=name, family=socket.AF_UNIX)
        client[0].sendto(b"abstract")
        assert (await server[1].next_data())[0] == b"abstract"
        await close_all(server, client)

    aio_run(main)


# ---- errors while sending and receiving ---------------------------------------------


def test_error_received_connection_refused(aio_run: Callable[..., Any]) -> None:
    """ICMP port unreachable on a connected socket goes to error_received()."""

    async def main() -> None:
        transport, protocol = await endpoint(remote_addr=(LOCALHOST, free_udp_port()))
        transport.sendto(b"anyone?")
        kind, exc = await protocol.next()
        assert kind == "error"
        assert isinstance(exc, ConnectionRefusedError)
        # The transport survives the error.
        assert not transport.is_closing()
        transport.sendto(b"still there")
        kind, exc = await protocol.next()
        assert kind == "error" and isinstance(exc, ConnectionRefusedError)
        await close_all((transport, protocol))

    aio_run(main)


def test_sendto_mismatched_address(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        peer = await endpoint(local_addr=(LOCALHOST, 0))
        peer_addr = peer[0].get_extra_info("sockname")
        me = await endpoint(remote_addr=peer_addr)
        with pytest.raises(ValueError) as info:
            me[0].sendto(b"x", (LOCALHOST, peer_addr[1] + 1))
        assert str(info.value) == f"Invalid address: must be None or {peer_addr}"
        assert not me[0].is_closing()
        await close_all(peer, me)

    aio_run(main)


def test_sendto_without_destination(trio_aio_run: Callable[..., Any]) -> None:
    """No address and no remote_addr: error_received(), the transport stays open.

    (The stdlib calls ``sendto(data, None)``, a fatal TypeError.)
    """

    async def main() -> None:
        transport, protocol = await endpoint(local_addr=(LOCALHOST, 0))
        transport.sendto(b"where to?")
        kind, exc = await protocol.next()
        assert kind == "error" and exc.errno == errno.EDESTADDRREQ
        assert not transport.is_closing()
        await close_all((transport, protocol))

    trio_aio_run(main)


def test_sendto_not_bytes(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        me = await endpoint(local_addr=(LOCALHOST, 0))
        with pytest.raises(TypeError, match="data argument must be a bytes-like object, not 'str'"):
            me[0].sendto("text", (LOCALHOST, 9))
        await close_all(me)

    aio_run(main)


def test_sendto_bad_address_is_fatal(aio_run: Callable[..., Any]) -> None:
    """A non-OSError from send is a fatal error: reported, and the transport aborted."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        transport, protocol = await endpoint(local_addr=(LOCALHOST, 0))
        transport.sendto(b"x", "not an address")
        assert transport.is_closing()
        exc = await protocol.wait_lost()
        assert isinstance(exc, TypeError)
        assert len(contexts) == 1
        assert contexts[0]["message"] == "Fatal write error on datagram transport"
        assert contexts[0]["exception"] is exc
        assert contexts[0]["transport"] is transport
        assert protocol.lost_calls == 1

    aio_run(main)


# ---- flow control and closing with data buffered --------------------------------------


async def fill_send_buffer(transport: Any, datagram: bytes = b"x" * 1000) -> int:
    """Send until the transport buffers; return how many datagrams went out at once."""
    sent = 0
    while transport.get_write_buffer_size() == 0:
        transport.sendto(datagram)
        sent += 1
        assert sent < 100_000, "the socket never filled up"
    return sent - 1


def drain(sock: socket.socket) -> list[bytes]:
    received = []
    while True:
        try:
            received.append(sock.recv(65536))
        except BlockingIOError:
            return received


def test_flow_control(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    async def main() -> None:
        ours, theirs = unix_dgram_pair(short_tmp, sndbuf=4096)
        ours.setblocking(False)
        with theirs:
            transport, protocol = await endpoint(sock=ours)
            transport.set_write_buffer_limits(high=2500, low=1000)
            assert transport.get_write_buffer_limits() == (1000, 2500)
            went_out = await fill_send_buffer(transport)
            assert went_out > 0
            overhead = 8 if PY313 else 0
            assert transport.get_write_buffer_size() == 1000 + overhead
            assert protocol.paused == 0
            transport.sendto(b"y" * 1000)
            assert protocol.paused == 0
            transport.sendto(b"z" * 1000)  # now above the high-water mark
            assert transport.get_write_buffer_size() == 3 * (1000 + overhead)
            assert protocol.paused == 1
            transport.sendto(b"")
            assert protocol.paused == 1  # once per crossing

            # Reading at the other end drains our buffer.
            received: list[bytes] = []
            loop = asyncio.get_running_loop()
            loop.add_reader(theirs, lambda: received.extend(drain(theirs)))
            assert await protocol.next() == ("resumed", None)
            assert protocol.resumed == 1
            assert transport.get_write_buffer_size() <= 1000
            # close() sends the rest, in order, before connection_lost().
            await close_all((transport, protocol))
            loop.remove_reader(theirs)
            received += drain(theirs)
            # (The stdlib drops empty datagrams before Python 3.13.)
            expected = [b"x" * 1000, b"y" * 1000, b"z" * 1000]
            if isinstance(loop, TrioEventLoop) or PY313:
                expected.append(b"")
            assert received[went_out:] == expected
            assert protocol.paused == protocol.resumed == 1

    aio_run(main)


def test_close_flushes_buffer(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    async def main() -> None:
        ours, theirs = unix_dgram_pair(short_tmp, sndbuf=4096)
        ours.setblocking(False)
        with theirs:
            transport, protocol = await endpoint(sock=ours)
            went_out = await fill_send_buffer(transport)
            transport.sendto(b"last")
            transport.close()
            assert transport.is_closing()
            transport.close()  # idempotent
            # Nothing is lost while the buffer drains.
            for _ in range(3):
                await asyncio.sleep(0)
            assert not protocol.lost.done()
            received: list[bytes] = []
            loop = asyncio.get_running_loop()
            loop.add_reader(theirs, lambda: received.extend(drain(theirs)))
            assert await protocol.wait_lost() is None
            loop.remove_reader(theirs)
            received += drain(theirs)
            assert protocol.lost_calls == 1
            assert len(received) == went_out + 2
            assert received[-1] == b"last"
            assert ours.fileno() == -1  # the transport closed it

    aio_run(main)


def test_abort_drops_buffer(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    async def main() -> None:
        ours, theirs = unix_dgram_pair(short_tmp, sndbuf=4096)
        ours.setblocking(False)
        with theirs:
            transport, protocol = await endpoint(sock=ours)
            went_out = await fill_send_buffer(transport)
            transport.close()
            transport.abort()
            transport.abort()
            assert await protocol.wait_lost() is None
            assert protocol.lost_calls == 1
            assert len(drain(theirs)) == went_out

    aio_run(main)


def test_sendto_after_close_is_dropped(trio_aio_run: Callable[..., Any], short_tmp: Path) -> None:
    """After close(), sends are dropped (the stdlib only does so on connected sockets)."""

    async def main() -> None:
        a, b = unix_dgram_pair(short_tmp)
        with a:
            transport, protocol = await endpoint(sock=b)
            transport.close()
            for _ in range(3):
                transport.sendto(b"late")
            assert await protocol.wait_lost() is None
            for _ in range(10):
                transport.sendto(b"later")
            assert drain(a) == []
            assert protocol.lost_calls == 1

    trio_aio_run(main)


def test_close_in_datagram_received(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    """No datagram is delivered after the protocol closes the transport."""

    class CloseOnFirst(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = unix_dgram_pair(short_tmp)
        with a:
            for i in range(5):
                a.send(b"%d" % i)
            _, protocol = await loop.create_datagram_endpoint(CloseOnFirst, sock=b)
            assert await protocol.wait_lost() is None
            assert protocol.events.qsize() == 1
            assert (await protocol.next_data())[0] == b"0"

    aio_run(main)


def test_pause_and_resume_reading(trio_aio_run: Callable[..., Any], short_tmp: Path) -> None:
    async def main() -> None:
        a, b = unix_dgram_pair(short_tmp)
        with a:
            transport, protocol = await endpoint(sock=b)
            assert transport.is_reading()
            transport.pause_reading()
            transport.pause_reading()
            assert not transport.is_reading()
            a.send(b"held")
            for _ in range(5):
                await asyncio.sleep(0)
            assert protocol.events.empty()
            transport.resume_reading()
            assert (await protocol.next_data())[0] == b"held"
            await close_all((transport, protocol))
            assert not transport.is_reading()

    trio_aio_run(main)


def test_connection_made_runs_first(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    """connection_made() runs before the caller resumes and before any datagram."""

    async def main() -> None:
        a, b = unix_dgram_pair(short_tmp)
        with a:
            a.send(b"early")
            order: list[str] = []

            class P(Recorder):
                def connection_made(self, transport: Any) -> None:
                    order.append("made")
                    super().connection_made(transport)

                def datagram_received(self, data: bytes, addr: Any) -> None:
                    order.append("data")
                    super().datagram_received(data, addr)

            loop = asyncio.get_running_loop()
            transport, protocol = await loop.create_datagram_endpoint(P, sock=b)
            order.append("returned")
            await protocol.next_data()
            assert order == ["made", "returned", "data"]
            await close_all((transport, protocol))

    aio_run(main)


def test_close_in_connection_made(aio_run: Callable[..., Any]) -> None:
    class CloseAtOnce(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            CloseAtOnce, local_addr=(LOCALHOST, 0)
        )
        assert transport.is_closing()
        assert await protocol.wait_lost() is None
        assert protocol.lost_calls == 1

    aio_run(main)


# ---- sock= ------------------------------------------------------------------------------


def test_sock_connected(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        peer = await endpoint(local_addr=(LOCALHOST, 0))
        peer_addr = peer[0].get_extra_info("sockname")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(peer_addr)
        me = await endpoint(sock=sock)
        assert not sock.getblocking()
        assert me[0].get_extra_info("peername") == peer_addr
        me[0].sendto(b"via sock")
        assert (await peer[1].next_data())[0] == b"via sock"
        await close_all(peer, me)
        assert sock.fileno() == -1

    aio_run(main)


def test_sock_in_use(aio_run: Callable[..., Any], short_tmp: Path) -> None:
    async def main() -> None:
        if not isinstance(asyncio.get_running_loop(), TrioEventLoop) and sys.version_info < (3, 12):
            return  # the stdlib only checks from 3.12
        a, b = unix_dgram_pair(short_tmp)
        with a:
            me = await endpoint(sock=b)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await endpoint(sock=b)
            await close_all(me)

    aio_run(main)


def test_sock_type_checked(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            expected = "A datagram socket was expected" if PY313 else "A UDP Socket was expected"
            with pytest.raises(ValueError, match=expected):
                await endpoint(sock=sock)

    aio_run(main)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("local_addr", (LOCALHOST, 0)),
        ("remote_addr", (LOCALHOST, 9)),
        ("family", socket.AF_INET),
        ("proto", socket.IPPROTO_UDP),
        ("flags", socket.AI_PASSIVE),
        ("reuse_port", True),
        ("allow_broadcast", True),
    ],
)
def test_sock_with_options(aio_run: Callable[..., Any], option: str, value: Any) -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(ValueError) as info:
                await endpoint(sock=sock, **{option: value})
            message = str(info.value)
            if PY310 and not isinstance(asyncio.get_running_loop(), TrioEventLoop):
                # 3.10's stdlib also lists its private "reuse_address not
                # given" sentinel; we leave it out.
                message = re.sub(r"reuse_address=<object object at \w+>(, )?", "", message)
                message = message.replace(", )", ")")
            assert message == (
                "socket modifier keyword arguments can not be used when sock is "
                f"specified. ({option}={value})"
            )

    aio_run(main)


# ---- argument validation ---------------------------------------------------------------


def test_no_address_no_family(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="unexpected address family"):
            await endpoint()

    aio_run(main)


@pytest.mark.parametrize("addr", [(LOCALHOST, 0, 0), LOCALHOST, [LOCALHOST, 0]])
def test_address_must_be_pair(aio_run: Callable[..., Any], addr: Any) -> None:
    async def main() -> None:
        error = AssertionError if PY310 else TypeError
        with pytest.raises(error, match="2-tuple is expected"):
            await endpoint(local_addr=addr)
        with pytest.raises(error, match="2-tuple is expected"):
            await endpoint(remote_addr=addr)

    aio_run(main)


@pytest.mark.skipif(not PY310, reason="reuse_address exists on Python 3.10 only")
def test_reuse_address_310(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="reuse_address=True` is no longer supported"):
            await endpoint(local_addr=(LOCALHOST, 0), reuse_address=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            me = await endpoint(local_addr=(LOCALHOST, 0), reuse_address=False)
        assert [w.category for w in caught] == [DeprecationWarning]
        assert "reuse_address" in str(caught[0].message)
        assert caught[0].filename == __file__  # points at the caller
        await close_all(me)
        # With sock=, reuse_address is ignored, as in the stdlib.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            me = await endpoint(
                sock=socket.socket(socket.AF_INET, socket.SOCK_DGRAM), reuse_address=True
            )
        await close_all(me)

    aio_run(main)


@pytest.mark.skipif(PY310, reason="reuse_address still exists on Python 3.10")
@pytest.mark.parametrize("value", [True, False])
def test_reuse_address_removed(aio_run: Callable[..., Any], value: bool) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="reuse_address"):
            await endpoint(local_addr=(LOCALHOST, 0), reuse_address=value)

    aio_run(main)


def test_signature_matches_stdlib() -> None:
    import inspect

    ours = inspect.signature(TrioEventLoop.create_datagram_endpoint)
    theirs = inspect.signature(asyncio.BaseEventLoop.create_datagram_endpoint)
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (
            p.name,
            p.kind,
            p.default if p.name != "reuse_address" else ours.parameters[p.name].default,
        )
        for p in theirs.parameters.values()
    ]


def test_repr(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        transport, protocol = await endpoint(local_addr=(LOCALHOST, 0))
        fd = transport.get_extra_info("socket").fileno()
        assert repr(transport) == (
            f"<DatagramSocketTransport fd={fd} read=polling write=<idle, bufsize=0>>"
        )
        transport.close()
        assert "closing" in repr(transport)
        await protocol.wait_lost()
        assert repr(transport) == f"<DatagramSocketTransport closed fd={fd}>"

    trio_aio_run(main)


def test_unclosed_transport_warns(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        import gc

        transport, protocol = await endpoint(local_addr=(LOCALHOST, 0))
        sock = transport.get_extra_info("socket")
        transport._loop._remove_reader(sock.fileno())
        protocol.transport = None
        alive = weakref.ref(transport)
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            del transport, protocol
            gc.collect()
        assert alive() is None
        assert sock.fileno() == -1

    trio_aio_run(main)
