"""Echo servers and one-shot clients: the connections the soak churns.

Four kinds, TCP and Unix sockets each through ``asyncio.Protocol`` and
through streams. A client connects, sends :data:`PAYLOAD`, reads the echo,
checks it and closes; the server side closes on the client's EOF, so the
client always closes first. Both sides run on whichever loop calls them: the
servers of the long Trio-hosted loop take connections from every driver, and
each sync-mode loop also starts and closes servers of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

#: What a client sends and expects back (small: the soak is about the
#: connections' lifecycle, not throughput).
PAYLOAD = bytes(range(64)) * 2

#: The connection kinds, each with its own counter (``conn_<kind>``).
KINDS: tuple[str, ...] = ("tcp_protocol", "tcp_streams", "unix_protocol", "unix_streams")


@dataclass
class Endpoints:
    """Where the four echo servers of one loop listen."""

    tcp_protocol: tuple[str, int]
    tcp_streams: tuple[str, int]
    unix_protocol: str
    unix_streams: str


class EchoServers:
    """The four echo servers of one loop; ``close()`` also removes the socket files."""

    def __init__(self, servers: list[asyncio.AbstractServer], endpoints: Endpoints) -> None:
        self.servers = servers
        self.endpoints = endpoints

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        # Python < 3.13 leaves the socket file of a closed Unix server behind.
        for path in (self.endpoints.unix_protocol, self.endpoints.unix_streams):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class _EchoProtocol(asyncio.Protocol):
    """Server side, Protocol flavour: echo every chunk; the loop closes on EOF."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._transport.write(data)

    def eof_received(self) -> bool:
        return False  # close our side too


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Server side, streams flavour: echo one payload, wait for EOF, close."""
    try:
        data = await reader.readexactly(len(PAYLOAD))
        writer.write(data)
        await writer.drain()
        await reader.read()  # the client's EOF: the client closes first
    finally:
        writer.close()
        await writer.wait_closed()


async def start_echo_servers(socket_dir: str, tag: str) -> EchoServers:
    """Start the four echo servers on the running loop; Unix sockets go in *socket_dir*."""
    loop = asyncio.get_running_loop()
    tcp_protocol = await loop.create_server(_EchoProtocol, "127.0.0.1", 0)
    tcp_streams = await asyncio.start_server(_echo_stream, "127.0.0.1", 0)
    unix_protocol_path = os.path.join(socket_dir, f"{tag}-p.sock")
    unix_streams_path = os.path.join(socket_dir, f"{tag}-s.sock")
    unix_protocol = await loop.create_unix_server(_EchoProtocol, unix_protocol_path)
    unix_streams = await asyncio.start_unix_server(_echo_stream, unix_streams_path)
    servers = [tcp_protocol, tcp_streams, unix_protocol, unix_streams]
    endpoints = Endpoints(
        tcp_protocol=tcp_protocol.sockets[0].getsockname()[:2],
        tcp_streams=tcp_streams.sockets[0].getsockname()[:2],
        unix_protocol=unix_protocol_path,
        unix_streams=unix_streams_path,
    )
    return EchoServers(servers, endpoints)


class _PingProtocol(asyncio.Protocol):
    """Client side, Protocol flavour: send the payload, close once it is echoed."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self._done = done
        self._received = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._transport.write(PAYLOAD)

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) >= len(PAYLOAD):
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        if exc is not None:
            self._done.set_exception(exc)
        elif self._received != PAYLOAD:
            self._done.set_exception(
                RuntimeError(f"bad echo: {len(self._received)} bytes, expected {len(PAYLOAD)}")
            )
        else:
            self._done.set_result(None)


async def connect_once(kind: str, endpoints: Endpoints) -> None:
    """One connection of *kind* to *endpoints* on the running loop: connect, echo, close.

    Raises if anything goes wrong, including a wrong echo.
    """
    loop = asyncio.get_running_loop()
    if kind.endswith("protocol"):
        done: asyncio.Future[None] = loop.create_future()
        if kind == "tcp_protocol":
            host, port = endpoints.tcp_protocol
            await loop.create_connection(lambda: _PingProtocol(done), host, port)
        else:
            await loop.create_unix_connection(lambda: _PingProtocol(done), endpoints.unix_protocol)
        await done
        return
    if kind == "tcp_streams":
        host, port = endpoints.tcp_streams
        reader, writer = await asyncio.open_connection(host, port)
    else:
        reader, writer = await asyncio.open_unix_connection(endpoints.unix_streams)
    try:
        writer.write(PAYLOAD)
        await writer.drain()
        echoed = await reader.readexactly(len(PAYLOAD))
        if echoed != PAYLOAD:
            raise RuntimeError("bad echo over streams")
    finally:
        writer.close()
        await writer.wait_closed()
