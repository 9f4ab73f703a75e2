"""An ``asyncio.Protocol`` server run from Trio, and a Trio client for it.

The protocol: the client sends strings, each prefixed by its length in bytes
as a 4-byte little-endian unsigned integer (``struct.pack("<I", len(data))``),
and the server answers every complete string with the two bytes ``ok``.
When the client has sent everything it closes its side of the connection
(EOF), and the server then closes the connection.

The server is a plain asyncio protocol, written as for any asyncio program;
the program around it is Trio. Usage::

    python examples/len_prefixed_protocol.py                   # server and client together
    python examples/len_prefixed_protocol.py serve [PORT]      # server only, until Ctrl+C
    python examples/len_prefixed_protocol.py send PORT TEXT... # client only

By hand, without this client::

    python -c "import struct, sys; d = b'hello'; sys.stdout.buffer.write(struct.pack('<I', len(d)) + d)" | nc 127.0.0.1 PORT
"""

from __future__ import annotations

import asyncio
import struct
import sys

import trio

import trio_asyncio
from trio_asyncio import aio_as_trio

HEADER = struct.Struct("<I")
REPLY = b"ok"

# ---- the asyncio side: protocols -----------------------------------------------------


class LengthPrefixedStringProtocol(asyncio.Protocol):
    """Splits the byte stream into length-prefixed strings; subclasses handle them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            end = HEADER.size + length
            if len(self._buffer) < end:
                break  # wait for the rest of this string
            payload = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            self.string_received(payload.decode("utf-8", errors="replace"))

    def eof_received(self) -> None:
        # The client has no more strings. Returning None (not True) closes
        # our side too; a partial string left in the buffer is dropped.
        return None

    def string_received(self, text: str) -> None:
        raise NotImplementedError


class StringReceiver(LengthPrefixedStringProtocol):
    """Prints each string and acknowledges it with ``ok``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        print(f"server: connection from {transport.get_extra_info('peername')[:2]}")

    def string_received(self, text: str) -> None:
        print(f"server: received {text!r}")
        assert self.transport is not None
        self.transport.write(REPLY)

    def connection_lost(self, exc: Exception | None) -> None:
        print("server: connection closed")


# ---- the Trio side -------------------------------------------------------------------


async def serve(port: int = 0, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the asyncio server until cancelled; report its port to ``nursery.start()``."""
    loop = trio_asyncio.current_loop.get()
    server = await aio_as_trio(loop.create_server)(StringReceiver, "127.0.0.1", port)
    try:
        port = server.sockets[0].getsockname()[1]
        print(f"server: serving on 127.0.0.1:{port}", flush=True)
        task_status.started(port)
        await trio.sleep_forever()
    finally:
        # Trio cancellation is level-triggered: unshielded, this asyncio
        # cleanup would be cancelled before it could start.
        with trio.CancelScope(shield=True):
            server.close()  # plain (non-async) asyncio calls need no adapter
            await aio_as_trio(server.wait_closed)()
            print("server: closed")


async def send(port: int, texts: list[str]) -> None:
    """A Trio client: send each string and wait for its ``ok``."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        for text in texts:
            data = text.encode("utf-8")
            await stream.send_all(HEADER.pack(len(data)) + data)
            reply = b""
            while len(reply) < len(REPLY):
                chunk = await stream.receive_some(len(REPLY) - len(reply))
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                reply += chunk
            print(f"client: sent {text!r}, got {reply.decode()!r}", flush=True)
        # Done: close our side, and wait for the server to close its side.
        await stream.send_eof()
        if await stream.receive_some():
            raise ConnectionError("unexpected data from the server")


async def serve_and_send(texts: list[str]) -> None:
    async with trio_asyncio.open_loop():
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve)
            await send(port, texts)
            nursery.cancel_scope.cancel()


async def serve_forever(port: int) -> None:
    async with trio_asyncio.open_loop():
        await serve(port)


def main(argv: list[str]) -> None:
    if not argv:
        trio.run(serve_and_send, ["hello world", "trio", "asyncio", "😀 unicode"])
    elif argv[0] == "serve":
        try:
            trio.run(serve_forever, int(argv[1]) if len(argv) > 1 else 0)
        except KeyboardInterrupt:
            print("server: exit")
    elif argv[0] == "send" and len(argv) >= 3:
        trio.run(send, int(argv[1]), argv[2:])
    else:
        sys.exit(__doc__)
    print("done")


if __name__ == "__main__":
    main(sys.argv[1:])
