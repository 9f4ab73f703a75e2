"""aiomqtt against Mosquitto: QoS 1 and 2, delivered in order."""

from __future__ import annotations

import asyncio

import _harness
import pytest

aiomqtt = pytest.importorskip("aiomqtt")

N = 30


def make_client(address: tuple[str, int], **kw: object) -> aiomqtt.Client:
    host, port = address
    return aiomqtt.Client(host, port, identifier=_harness.unique("ta_client"), **kw)


async def scenario_qos(address: tuple[str, int]) -> None:
    prefix = _harness.unique("ta")
    async with make_client(address) as subscriber, make_client(address) as publisher:
        await subscriber.subscribe(f"{prefix}/#", qos=2)

        expected = []
        for i in range(N):
            qos = 1 + i % 2
            topic = f"{prefix}/qos{qos}"
            payload = f"{i}".encode()
            # publish() returns once the broker acknowledged it (PUBACK, PUBCOMP).
            await publisher.publish(topic, payload, qos=qos)
            expected.append((topic, payload, qos))

        received = []
        async for message in subscriber.messages:
            received.append((str(message.topic), message.payload, message.qos))
            if len(received) == N:
                break
        # MQTT orders messages per topic and QoS level (not across levels).
        assert sorted(received) == sorted(expected)
        for qos in (1, 2):
            assert [m for m in received if m[2] == qos] == [m for m in expected if m[2] == qos]

        # A retained message reaches a later subscriber; clearing it afterwards.
        await publisher.publish(f"{prefix}/retained", b"kept", qos=1, retain=True)
        async with make_client(address) as late:
            await late.subscribe(f"{prefix}/retained", qos=1)
            message = await anext(aiter(late.messages))
            assert (message.payload, message.retain) == (b"kept", True)
        await publisher.publish(f"{prefix}/retained", b"", qos=1, retain=True)
        await subscriber.unsubscribe(f"{prefix}/#")


def test_qos(run, mqtt_broker) -> None:
    run(scenario_qos, mqtt_broker)


def test_trio_cancels_wait(mqtt_broker) -> None:
    """Waiting for a message, cancelled by a Trio timeout; the client still works."""
    import trio

    from trio_asyncio import aio_as_trio

    topic = _harness.unique("ta") + "/t"

    async def connected():
        client = make_client(mqtt_broker)
        await client.__aenter__()
        await client.subscribe(topic, qos=1)
        return client

    async def next_payload(client: aiomqtt.Client) -> bytes:
        return (await anext(aiter(client.messages))).payload

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        client = await aio_as_trio(connected)()
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(next_payload)(client)
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                await aio_as_trio(client.publish)(topic, b"after", qos=1)
                assert await aio_as_trio(next_payload)(client) == b"after"
        finally:
            await aio_as_trio(client.__aexit__)(None, None, None)

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_qos, _harness.service_address("mqtt"))


def test_imported_first(mqtt_broker) -> None:
    _harness.check_imported_first("aiomqtt", "test_aiomqtt", "all_modes")
