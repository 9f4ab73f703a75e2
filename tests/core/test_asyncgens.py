"""Async-generator hooks: asyncio generators belong to the loop, Trio's stay Trio's."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest
import sniffio
import trio
import trio.testing

import trio_asyncio


def _asyncio_agen(log):
    async def agen():
        try:
            yield 1
            yield 2
        finally:
            # asyncio semantics: the clean-up runs as an asyncio task.
            log.append(("finally", sniffio.current_async_library()))
            await asyncio.sleep(0)
            log.append(("after await", asyncio.current_task() is not None))

    return agen()


async def _first_item_then_drop(log):
    gen = _asyncio_agen(log)
    async for _ in gen:
        break
    del gen
    gc.collect()
    # The finalizer schedules aclose() as a task: give it a few iterations.
    for _ in range(4):
        await asyncio.sleep(0)
    return list(log)


def test_an_abandoned_asyncio_generator_is_finalized_by_its_loop(aio_run):
    log = []
    assert aio_run(_first_item_then_drop, log) == [
        ("finally", "asyncio"),
        ("after await", True),
    ]


@pytest.mark.trio
async def test_an_asyncio_generator_first_iterated_from_trio_belongs_to_the_loop():
    log = []
    async with trio_asyncio.open_loop():
        gen = _asyncio_agen(log)
        assert await trio_asyncio.aio_as_trio(gen.__anext__)() == 1
        del gen
        gc.collect()

        async def settle():
            for _ in range(4):
                await asyncio.sleep(0)

        await trio_asyncio.aio_as_trio(settle)()
        assert log == [("finally", "asyncio"), ("after await", True)]


@pytest.mark.trio
async def test_a_suspended_asyncio_generator_is_closed_when_the_loop_closes():
    log = []
    kept = []
    async with trio_asyncio.open_loop():

        async def start():
            gen = _asyncio_agen(log)
            kept.append(gen)
            return await gen.__anext__()

        assert await trio_asyncio.aio_as_trio(start)() == 1
        assert log == []
    assert log == [("finally", "asyncio"), ("after await", True)]
    assert kept[0].ag_frame is None  # closed


@pytest.mark.trio
async def test_breaking_out_of_an_asyncio_generator_iterated_from_trio():
    log = []
    async with trio_asyncio.open_loop() as loop:
        async for item in trio_asyncio.aio_as_trio(_asyncio_agen(log)):
            assert item == 1
            break
        gc.collect()
        for _ in range(3):
            await loop.synchronize()
        assert log == [("finally", "asyncio"), ("after await", True)]


def test_shutdown_asyncgens_closes_suspended_generators(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        log = []
        gens = [_asyncio_agen(log), _asyncio_agen(log)]
        for gen in gens:
            await gen.__anext__()
        await loop.shutdown_asyncgens()
        return log, [gen.ag_frame is None for gen in gens]

    assert aio_run(scenario) == (
        [("finally", "asyncio")] * 2 + [("after await", True)] * 2,
        [True, True],
    )


def test_a_generator_failing_to_close_is_reported_to_the_handler(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        contexts = []
        loop.set_exception_handler(lambda loop, context: contexts.append(context))

        async def stubborn():
            try:
                yield 1
            finally:
                raise OSError("cannot close")

        gen = stubborn()
        await gen.__anext__()
        await loop.shutdown_asyncgens()
        loop.set_exception_handler(None)
        [context] = contexts
        return (
            sorted(context),
            context["message"].startswith("an error occurred during closing of asynchronous"),
            context["asyncgen"] is gen,
            repr(context["exception"]),
        )

    assert aio_run(scenario) == (
        ["asyncgen", "exception", "message"],
        True,
        True,
        "OSError('cannot close')",
    )


@pytest.mark.trio
async def test_a_trio_generator_in_trio_code_is_still_trios():
    log = []

    async def trio_gen():
        try:
            yield 1
        finally:
            log.append(("finally", sniffio.current_async_library()))
            try:
                await trio.sleep(0)
            except trio.Cancelled:
                # Trio semantics: no async work while finalizing.
                log.append("trio.sleep cancelled")

    async with trio_asyncio.open_loop():
        gen = trio_gen()
        async for _ in gen:
            break
        # Trio's own hook claims it: it warns, as it does for Trio code...
        with pytest.warns(ResourceWarning, match="trio_gen"):
            del gen
            gc.collect()
        # ...and closes it in a Trio system task.
        await trio.testing.wait_all_tasks_blocked()
        assert log == [("finally", "trio"), "trio.sleep cancelled"]


@pytest.mark.trio
async def test_an_exhausted_trio_generator_inside_asyncio_context_is_harmless():
    async def numbers():
        for i in range(3):
            await trio.sleep(0)
            yield i

    async with trio_asyncio.open_loop():

        async def collect():
            return [x async for x in trio_asyncio.trio_as_aio(numbers())]

        assert await trio_asyncio.aio_as_trio(collect)() == [0, 1, 2]


@pytest.mark.trio
async def test_the_threads_hooks_are_restored_after_the_loops_close():
    before = sys.get_asyncgen_hooks()
    async with trio_asyncio.open_loop():
        async with trio_asyncio.open_loop():
            pass
    assert sys.get_asyncgen_hooks() == before

    # Side by side, closing in either order.
    async def one_loop(task_status=trio.TASK_STATUS_IGNORED):
        async with trio_asyncio.open_loop():
            task_status.started()
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        await nursery.start(one_loop)
        await nursery.start(one_loop)
    assert sys.get_asyncgen_hooks() == before


@pytest.mark.trio
async def test_each_loop_closes_its_own_generators():
    logs = {"a": [], "b": []}
    async with trio_asyncio.open_loop() as loop_a:
        async with trio_asyncio.open_loop() as loop_b:

            async def start(name):
                gen = _asyncio_agen(logs[name])
                await gen.__anext__()
                return gen

            gen_a = await trio_asyncio.aio_as_trio(start, loop=loop_a)("a")
            gen_b = await trio_asyncio.aio_as_trio(start, loop=loop_b)("b")
        # Closing loop_b closed only its own generator.
        assert gen_b.ag_frame is None
        assert gen_a.ag_frame is not None
        assert logs == {"a": [], "b": [("finally", "asyncio"), ("after await", True)]}
    assert gen_a.ag_frame is None
    assert logs["a"] == [("finally", "asyncio"), ("after await", True)]
