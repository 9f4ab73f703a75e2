"""aio-pika against RabbitMQ: publisher confirms, fanout, RPC."""

from __future__ import annotations

import asyncio

import _harness
import pytest

aio_pika = pytest.importorskip("aio_pika")
from aio_pika.patterns import RPC  # noqa: E402


def url(address: tuple[str, int]) -> str:
    host, port = address
    return f"amqp://guest:guest@{host}:{port}/"


async def scenario_confirms_fanout(address: tuple[str, int]) -> None:
    connection = await aio_pika.connect(url(address))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(_harness.unique("ta_q"), auto_delete=True)

        # Publisher confirms: every publish is acked by the broker.
        for i in range(50):
            confirmation = await channel.default_exchange.publish(
                aio_pika.Message(f"msg {i}".encode(), message_id=str(i)), routing_key=queue.name
            )
            assert type(confirmation).__name__ == "Ack", confirmation
        # Concurrent publishes are all confirmed too.
        confirmations = await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(f"msg {i}".encode()), routing_key=queue.name
                )
                for i in range(50, 100)
            )
        )
        assert {type(c).__name__ for c in confirmations} == {"Ack"}

        received = []
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    received.append(message.body.decode())
                if len(received) == 100:
                    break
        assert received[:50] == [f"msg {i}" for i in range(50)]
        assert sorted(received[50:]) == sorted(f"msg {i}" for i in range(50, 100))

        # Fanout: every bound queue gets every message, in order.
        exchange = await channel.declare_exchange(
            _harness.unique("ta_fanout"), aio_pika.ExchangeType.FANOUT, auto_delete=True
        )
        queues = [await channel.declare_queue(exclusive=True) for _ in range(3)]
        for q in queues:
            await q.bind(exchange)
        for i in range(5):
            await exchange.publish(aio_pika.Message(f"fan {i}".encode()), routing_key="")
        for q in queues:
            got = []
            for _ in range(5):
                message = await q.get(timeout=10)
                await message.ack()
                got.append(message.body.decode())
            assert got == [f"fan {i}" for i in range(5)]
            assert await q.get(fail=False) is None
            await q.delete(if_unused=False, if_empty=False)
        await exchange.delete()


async def scenario_rpc(address: tuple[str, int]) -> None:
    connection = await aio_pika.connect(url(address))
    async with connection:
        channel = await connection.channel()
        rpc = await RPC.create(channel)
        method = _harness.unique("ta_rpc")

        async def multiply(*, x: int, y: int) -> int:
            await asyncio.sleep(0)
            return x * y

        async def fail() -> None:
            raise ValueError("remote failure")

        await rpc.register(method, multiply, auto_delete=True)
        await rpc.register(method + "_fail", fail, auto_delete=True)
        results = await asyncio.gather(*(rpc.call(method, {"x": i, "y": 3}) for i in range(20)))
        assert results == [i * 3 for i in range(20)]
        with pytest.raises(ValueError, match="remote failure"):
            await rpc.call(method + "_fail")
        await rpc.close()


def test_confirms_fanout(run, rabbitmq) -> None:
    run(scenario_confirms_fanout, rabbitmq)


def test_rpc(run, rabbitmq) -> None:
    run(scenario_rpc, rabbitmq)


def test_trio_cancels_consume(rabbitmq) -> None:
    """Waiting for a message, cancelled by a Trio timeout; the channel still works."""
    import trio

    from trio_asyncio import aio_as_trio

    async def setup():
        connection = await aio_pika.connect(url(rabbitmq))
        channel = await connection.channel(publisher_confirms=True)
        # Not auto_delete: the cancelled consumer must not take the queue with it.
        queue = await channel.declare_queue(_harness.unique("ta_q"))
        return connection, channel, queue

    async def next_message(queue) -> str:
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    return message.body.decode()
        raise AssertionError("iterator ended")

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        connection, channel, queue = await aio_as_trio(setup)()
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(next_message)(queue)
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                await aio_as_trio(channel.default_exchange.publish)(
                    aio_pika.Message(b"after"), routing_key=queue.name
                )
                assert await aio_as_trio(next_message)(queue) == "after"
        finally:
            await aio_as_trio(queue.delete)()
            await aio_as_trio(connection.close)()

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_rpc, _harness.service_address("rabbitmq"))


def test_imported_first(rabbitmq) -> None:
    _harness.check_imported_first("aio_pika", "test_aio_pika", "all_modes")
