"""redis.asyncio: commands, pipelines, pub/sub and blocking pops."""

from __future__ import annotations

import asyncio

import _harness
import pytest

redis_asyncio = pytest.importorskip("redis.asyncio")


def client(address: tuple[str, int]) -> redis_asyncio.Redis:
    host, port = address
    return redis_asyncio.Redis(host=host, port=port, decode_responses=True)


async def make_client(address: tuple[str, int]) -> redis_asyncio.Redis:
    return client(address)


async def scenario_commands(address: tuple[str, int]) -> None:
    prefix = _harness.unique("ta")
    r = client(address)
    try:
        assert await r.ping()
        await r.set(f"{prefix}:a", "1")
        assert await r.incrby(f"{prefix}:a", 41) == 42

        # A transaction (MULTI/EXEC) and a long plain pipeline.
        async with r.pipeline(transaction=True) as pipe:
            pipe.set(f"{prefix}:b", "x").append(f"{prefix}:b", "yz").get(f"{prefix}:b")
            assert await pipe.execute() == [True, 3, "xyz"]
        async with r.pipeline(transaction=False) as pipe:
            for i in range(2000):
                pipe.rpush(f"{prefix}:list", i)
            results = await pipe.execute()
        assert results == list(range(1, 2001))
        assert await r.lrange(f"{prefix}:list", 0, 4) == ["0", "1", "2", "3", "4"]

        # WATCH: a conflicting write aborts the transaction.
        async with r.pipeline(transaction=True) as pipe:
            await pipe.watch(f"{prefix}:a")
            await r.set(f"{prefix}:a", "changed")
            pipe.multi()
            pipe.set(f"{prefix}:a", "mine")
            with pytest.raises(redis_asyncio.WatchError):
                await pipe.execute()
        assert await r.get(f"{prefix}:a") == "changed"

        # Blocking pops: one that times out, then one served by a push.
        assert await r.blpop([f"{prefix}:q"], timeout=0.2) is None
        waiter = asyncio.ensure_future(r.blpop([f"{prefix}:q"], timeout=10))
        await r.rpush(f"{prefix}:q", "job1")
        assert list(await waiter) == [f"{prefix}:q", "job1"]
        popped = await asyncio.gather(
            *(r.brpop([f"{prefix}:q2"], timeout=10) for _ in range(3)),
            r.rpush(f"{prefix}:q2", "a", "b", "c"),
        )
        assert sorted(p[1] for p in popped[:3]) == ["a", "b", "c"]
    finally:
        keys = [k async for k in r.scan_iter(f"{prefix}:*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()


async def scenario_pubsub(address: tuple[str, int]) -> None:
    channel = _harness.unique("ta_chan")
    r = client(address)
    pubsub = r.pubsub()
    try:
        await pubsub.subscribe(channel)
        await pubsub.psubscribe(f"{channel}.*")
        # Both subscriptions are confirmed before anything is published.
        confirmations = [await pubsub.get_message(timeout=10) for _ in range(2)]
        assert [c["type"] for c in confirmations] == ["subscribe", "psubscribe"]

        for i in range(20):
            assert await r.publish(channel, f"m{i}") == 1
        assert await r.publish(f"{channel}.sub", "patterned") == 1

        got = []
        while len(got) < 21:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            assert message is not None, f"timed out after {got}"
            got.append((message["type"], message["data"]))
        assert got == [("message", f"m{i}") for i in range(20)] + [("pmessage", "patterned")]

        # listen() as an async iterator, fed by a concurrent publisher.
        async def publish_later() -> None:
            await r.publish(channel, "stop")

        publisher = asyncio.ensure_future(publish_later())
        async for message in pubsub.listen():
            if message["type"] == "message":
                assert message["data"] == "stop"
                break
        await publisher
        await pubsub.unsubscribe(channel)
        await pubsub.punsubscribe()
    finally:
        await pubsub.aclose()
        await r.aclose()


def test_commands(run, redis_server) -> None:
    run(scenario_commands, redis_server)


def test_pubsub(run, redis_server) -> None:
    run(scenario_pubsub, redis_server)


def test_trio_cancels_blpop(redis_server) -> None:
    """BLPOP cancelled by a Trio timeout: the client still works and the pop is gone."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        key = _harness.unique("ta_blpop")
        r = await aio_as_trio(make_client)(redis_server)
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(r.blpop)([key], timeout=0)
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                assert await aio_as_trio(r.ping)()
                # The cancelled BLPOP must not swallow the next item.
                await aio_as_trio(r.rpush)(key, "after")
                assert await aio_as_trio(r.lpop)(key) == "after"
                # A second BLPOP, served this time.
                async with trio.open_nursery() as nursery:
                    result = []

                    async def pop() -> None:
                        result.append(list(await aio_as_trio(r.blpop)([key], timeout=10)))

                    nursery.start_soon(pop)
                    await aio_as_trio(r.rpush)(key, "served")
                assert result == [[key, "served"]]
        finally:
            await aio_as_trio(r.delete)(key)
            await aio_as_trio(r.aclose)()

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_pubsub, _harness.service_address("redis"))


def test_imported_first(redis_server) -> None:
    _harness.check_imported_first("redis.asyncio", "test_redis", "all_modes")
