"""anyio's asyncio backend on our loop: task groups, cancel scopes, sockets, threads, processes."""

from __future__ import annotations

import sys
import threading

import _harness
import pytest

anyio = pytest.importorskip("anyio")
import sniffio  # noqa: E402

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


class Boom(Exception):
    pass


async def scenario_anyio() -> None:
    assert sniffio.current_async_library() == "asyncio"

    # A task group with results passed through a memory object stream.
    send, receive = anyio.create_memory_object_stream[int](10)

    async def produce(sender, n: int) -> None:
        async with sender:
            for i in range(n):
                await sender.send(i)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(produce, send.clone(), 10)
        send.close()
        async with receive:
            got = sorted([item async for item in receive])
    assert got == sorted(list(range(10)) * 3)

    # Cancel scopes: a timeout, a failing child cancelling its siblings, shielding.
    with anyio.move_on_after(0.05) as scope:
        await anyio.sleep(30)
    assert scope.cancelled_caught
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await anyio.sleep(30)

    cancelled = anyio.Event()

    async def sleeper() -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async def failer(task_status=anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started("ready")
        raise Boom

    with pytest.raises(ExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            assert await tg.start(failer) == "ready"
    assert info.group_contains(Boom)
    assert cancelled.is_set()

    with anyio.CancelScope() as outer:
        outer.cancel()
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.01)  # not cancelled
        await anyio.sleep(30)  # cancelled here
    assert outer.cancelled_caught

    # TCP: a listener served by a task group, a client.
    async def echo(stream) -> None:
        async with stream:
            async for data in stream:
                await stream.send(data[::-1])

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            for word in (b"hello", b"world"):
                await client.send(word)
                assert await client.receive() == word[::-1]
        tg.cancel_scope.cancel()
    await listener.aclose()

    # Worker threads, and calls back into the loop from them.
    def in_thread() -> str:
        assert anyio.from_thread.run_sync(sniffio.current_async_library) == "asyncio"
        return threading.current_thread().name

    name = await anyio.to_thread.run_sync(in_thread)
    assert name != threading.current_thread().name
    limiter = anyio.CapacityLimiter(2)
    results = []
    async with anyio.create_task_group() as tg:
        for i in range(6):

            async def job(i: int = i) -> None:
                results.append(await anyio.to_thread.run_sync(lambda: i * i, limiter=limiter))

            tg.start_soon(job)
    assert sorted(results) == [i * i for i in range(6)]

    # A subprocess.
    result = await anyio.run_process([sys.executable, "-c", "print('from child')"])
    assert result.stdout.strip() == b"from child"
    async with await anyio.open_process(
        [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"]
    ) as process:
        await process.stdin.send(b"shout")
        await process.stdin.aclose()
        assert await process.stdout.receive() == b"SHOUT"
    assert process.returncode == 0


def test_anyio(run) -> None:
    run(scenario_anyio)


def all_modes() -> None:
    _harness.run_all_modes(scenario_anyio)


def test_imported_first() -> None:
    _harness.check_imported_first("anyio", "test_anyio", "all_modes")
