"""nats-py against NATS: request/reply, queue groups and JetStream."""

from __future__ import annotations

import asyncio

import _harness
import pytest

nats = pytest.importorskip("nats")


def server_url(address: tuple[str, int]) -> str:
    host, port = address
    return f"nats://{host}:{port}"


async def scenario_request_reply(address: tuple[str, int]) -> None:
    subject = _harness.unique("ta.svc")
    nc = await nats.connect(server_url(address), connect_timeout=10)
    try:
        served: list[str] = []

        def responder(name: str):
            async def handle(msg) -> None:
                served.append(name)
                await msg.respond(msg.data.upper())

            return handle

        # Two members of a queue group share the requests.
        await nc.subscribe(subject, queue="workers", cb=responder("a"))
        await nc.subscribe(subject, queue="workers", cb=responder("b"))
        await nc.flush()
        replies = await asyncio.gather(
            *(nc.request(subject, f"req {i}".encode(), timeout=10) for i in range(40))
        )
        assert [r.data for r in replies] == [f"REQ {i}".encode() for i in range(40)]
        assert len(served) == 40

        # A plain subscription sees published messages in order.
        events = _harness.unique("ta.events")
        sub = await nc.subscribe(events)
        for i in range(10):
            await nc.publish(events, str(i).encode(), headers={"n": str(i)})
        got = [await sub.next_msg(timeout=10) for _ in range(10)]
        assert [(m.data, m.headers["n"]) for m in got] == [
            (str(i).encode(), str(i)) for i in range(10)
        ]
        await sub.unsubscribe()

        # No responders: a fast, explicit error.
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request(_harness.unique("ta.nobody"), b"?", timeout=10)
    finally:
        await nc.drain()


async def scenario_jetstream(address: tuple[str, int]) -> None:
    stream = _harness.unique("TA_STREAM")
    nc = await nats.connect(server_url(address), connect_timeout=10)
    js = nc.jetstream()
    try:
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        for i in range(25):
            ack = await js.publish(f"{stream}.orders", f"order {i}".encode())
            assert (ack.stream, ack.seq) == (stream, i + 1)

        # A durable pull consumer, fetched in batches.
        psub = await js.pull_subscribe(f"{stream}.orders", durable="worker")
        got = []
        while len(got) < 25:
            for msg in await psub.fetch(10, timeout=10):
                got.append(msg.data.decode())
                await msg.ack_sync()  # waits for the server to confirm
        assert got == [f"order {i}" for i in range(25)]
        info = await js.consumer_info(stream, "worker")
        assert info.num_ack_pending == 0
        assert info.num_pending == 0

        # A push subscription replays the stream from the start.
        push = await js.subscribe(f"{stream}.orders", ordered_consumer=True)
        replay = [(await push.next_msg(timeout=10)).data for _ in range(25)]
        assert replay == [f"order {i}".encode() for i in range(25)]
        await push.unsubscribe()

        # Key/value store on top of JetStream.
        kv = await js.create_key_value(bucket=_harness.unique("ta_kv"))
        revision = await kv.put("color", b"blue")
        await kv.update("color", b"green", last=revision)
        assert (await kv.get("color")).value == b"green"
        await js.delete_key_value(kv._name)
    finally:
        await js.delete_stream(stream)
        await nc.drain()


def test_request_reply(run, nats_server) -> None:
    run(scenario_request_reply, nats_server)


def test_jetstream(run, nats_server) -> None:
    run(scenario_jetstream, nats_server)


def test_trio_cancels_request(nats_server) -> None:
    """A request nobody answers, cancelled by a Trio timeout; the connection still works."""
    import trio

    from trio_asyncio import aio_as_trio

    slow = _harness.unique("ta.slow")
    fast = _harness.unique("ta.fast")

    async def setup():
        nc = await nats.connect(server_url(nats_server), connect_timeout=10)

        async def ignore(msg) -> None:
            pass

        async def echo(msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe(slow, cb=ignore)
        await nc.subscribe(fast, cb=echo)
        await nc.flush()
        return nc

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        nc = await aio_as_trio(setup)()
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(nc.request)(slow, b"hello?", timeout=30)
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                reply = await aio_as_trio(nc.request)(fast, b"still here", timeout=10)
            assert reply.data == b"still here"
        finally:
            await aio_as_trio(nc.drain)()

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_request_reply, _harness.service_address("nats"))


def test_imported_first(nats_server) -> None:
    _harness.check_imported_first("nats", "test_nats", "all_modes")
