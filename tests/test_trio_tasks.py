"""Trio work started from asyncio: ``TrioTaskFuture`` and the pool of Trio workers."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref

import pytest
import trio
import trio.testing

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def _double_later(x, delay=0):
    await trio.sleep(delay)
    return 2 * x


# ---- the future ------------------------------------------------------------------------


@pytest.mark.trio
async def test_run_trio_returns_an_asyncio_future_of_this_loop():
    async with trio_asyncio.open_loop() as loop:
        fut = loop.run_trio(_double_later, 4)
        assert isinstance(fut, asyncio.Future)
        assert fut.get_loop() is loop
        assert not fut.done()
        assert await fut == 8
        # Awaiting a finished one again, from Trio.
        assert await fut == 8
        assert fut.done() and fut.result() == 8


@pytest.mark.trio
async def test_run_trio_rejects_what_is_not_callable():
    async with trio_asyncio.open_loop() as loop:
        with pytest.raises(TypeError):
            loop.run_trio(42)


@pytest.mark.trio
async def test_cancel_only_requests_cancellation(autojump_clock):
    steps = []
    async with trio_asyncio.open_loop() as loop:

        async def slow_to_stop():
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(2)
                steps.append("trio done")

        async def scenario():
            fut = loop.run_trio(slow_to_stop)
            await asyncio.sleep(1)
            first, second = fut.cancel("stop please"), fut.cancel()
            steps.append(("after cancel", fut.done()))
            with pytest.raises(asyncio.CancelledError) as info:
                await fut
            steps.append(("cancelled", fut.cancelled(), info.value.args))
            return first, second, fut.cancel()

        # cancel() says True while the Trio task runs, False once it is done.
        assert await aio_as_trio(scenario)() == (True, True, False)
    assert steps == [
        ("after cancel", False),
        "trio done",
        ("cancelled", True, ("stop please",)),
    ]


@pytest.mark.trio
async def test_a_trio_task_raising_stopiteration_gives_a_runtimeerror():
    async with trio_asyncio.open_loop() as loop:

        async def bad():
            raise StopIteration

        async def scenario():
            try:
                await loop.run_trio(bad)
            except RuntimeError as exc:
                return exc

        error = await aio_as_trio(scenario)()
        assert "StopIteration" in str(error)
        assert isinstance(error.__cause__, StopIteration)


def _run_in_thread(fn, timeout=10):
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail("deadlock: trio.run() did not return")
    return result


def test_keyboardinterrupt_in_a_trio_job_reaches_the_awaiter_and_the_loops_owner():
    seen = []

    async def interrupt():
        await trio.sleep(0)
        raise KeyboardInterrupt

    async def main():
        async with trio_asyncio.open_loop() as loop:

            async def scenario():
                try:
                    await loop.run_trio(interrupt)
                except RuntimeError as exc:
                    seen.append(type(exc.__cause__).__name__)

            await aio_as_trio(scenario)()
            await trio.sleep_forever()

    outcome = _run_in_thread(lambda: trio.run(main))
    assert isinstance(outcome.get("error"), KeyboardInterrupt), outcome
    assert seen == ["KeyboardInterrupt"]


# ---- many jobs, reused workers ----------------------------------------------------------


@pytest.mark.trio
async def test_many_concurrent_jobs_all_complete(autojump_clock):
    async with trio_asyncio.open_loop():

        async def scenario():
            # More jobs than the pool keeps idle workers.
            futures = [trio_as_aio(_double_later)(i, (50 - i) / 10) for i in range(50)]
            return await asyncio.gather(*futures)

        assert await aio_as_trio(scenario)() == [2 * i for i in range(50)]
        # And again, now that workers are parked.
        assert await aio_as_trio(scenario)() == [2 * i for i in range(50)]


@pytest.mark.trio
async def test_a_cancelled_job_does_not_affect_later_jobs(autojump_clock):
    async with trio_asyncio.open_loop() as loop:

        async def shielded():
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
            return "ignored the cancel"

        async def scenario():
            results = []
            for proc in (trio.sleep_forever, shielded):
                fut = loop.run_trio(proc)
                await asyncio.sleep(0.5)
                fut.cancel()
                try:
                    results.append(await fut)
                except asyncio.CancelledError:
                    results.append("cancelled")
                # Let the worker park again before the next jobs.
                await asyncio.sleep(1)
                results.append(await loop.run_trio(_double_later, 5, 1))
                results.append(await trio_as_aio(_double_later)(6))
            return results

        assert await aio_as_trio(scenario)() == [
            "cancelled",
            10,
            12,
            "cancelled",
            10,
            12,
        ]


@pytest.mark.trio
async def test_a_failed_job_does_not_affect_later_jobs(autojump_clock):
    async with trio_asyncio.open_loop() as loop:

        async def fail():
            await trio.sleep(0)
            raise ValueError("job failed")

        async def scenario():
            with pytest.raises(ValueError):
                await loop.run_trio(fail)
            await asyncio.sleep(1)
            return await loop.run_trio(_double_later, 21, 1)

        assert await aio_as_trio(scenario)() == 42


@pytest.mark.trio
async def test_jobs_see_the_submitters_contextvars_and_changes_stay_local():
    async with trio_asyncio.open_loop():

        async def reader():
            await trio.sleep(0)
            return var.get()

        async def writer():
            await trio.sleep(0)
            var.set("written by Trio")
            return var.get()

        async def scenario():
            var.set("asyncio value")
            seen = await trio_as_aio(reader)()
            written = await trio_as_aio(writer)()
            return seen, written, var.get()

        assert await aio_as_trio(scenario)() == (
            "asyncio value",
            "written by Trio",
            "asyncio value",
        )


@pytest.mark.trio
async def test_a_contextvar_set_before_the_first_checkpoint_is_kept():
    async with trio_asyncio.open_loop():

        async def set_then_read():
            var.set("set by the job")
            await trio.sleep(0)
            return var.get()

        async def scenario():
            return await trio_as_aio(set_then_read)()

        assert await aio_as_trio(scenario)() == "set by the job"


@pytest.mark.trio
async def test_a_reused_worker_does_not_leak_contextvars_between_jobs(autojump_clock):
    async with trio_asyncio.open_loop():

        async def job_a():
            await trio.sleep(0)
            var.set("job A's secret")
            await trio.sleep(0)

        async def job_b():
            return var.get()  # no checkpoint before this

        async def scenario():
            await trio_as_aio(job_a)()
            await asyncio.sleep(1)  # job A's worker parks and is reused
            var.set("job B's caller")
            return await trio_as_aio(job_b)()

        assert await aio_as_trio(scenario)() == "job B's caller"


class _Payload:
    pass


@pytest.mark.trio
async def test_a_finished_job_does_not_keep_its_arguments_and_result_alive(autojump_clock):
    async with trio_asyncio.open_loop():

        async def job(arg):
            await trio.sleep(0)
            return _Payload()

        async def scenario():
            arg = _Payload()
            result = await trio_as_aio(job)(arg)
            refs = weakref.ref(arg), weakref.ref(result)
            del arg, result
            await asyncio.sleep(1)  # the worker is parked by now
            return refs

        refs = await aio_as_trio(scenario)()
        gc.collect()
        assert [ref() for ref in refs] == [None, None]


@pytest.mark.trio
async def test_current_loop_inside_a_job_is_the_submitting_loop():
    async with trio_asyncio.open_loop() as outer:
        async with trio_asyncio.open_loop() as inner:

            async def which():
                await trio.sleep(0)
                return trio_asyncio.current_loop.get()

            async def scenario():
                return await trio_as_aio(which)()

            assert await aio_as_trio(scenario, loop=outer)() is outer
            assert await aio_as_trio(scenario, loop=inner)() is inner


@pytest.mark.trio
async def test_trio_jobs_still_running_at_close_are_cancelled_and_awaited():
    log = []
    async with trio_asyncio.open_loop() as loop:

        async def forever(name):
            try:
                await trio.sleep_forever()
            finally:
                log.append(name)

        async def scenario():
            return [loop.run_trio(forever, f"job {i}") for i in range(3)]

        futures = await aio_as_trio(scenario)()
        await trio.testing.wait_all_tasks_blocked()
        assert log == []
    assert sorted(log) == ["job 0", "job 1", "job 2"]
    assert all(f.cancelled() for f in futures)
