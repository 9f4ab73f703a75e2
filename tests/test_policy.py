"""How asyncio finds our loops: the policy, asyncio.run(), asyncio.Runner and loop_factory.

Tests that change process-wide asyncio state (the policy, the current loop of
the main thread) run in a subprocess.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import warnings
from typing import Any

import pytest
import trio

import trio_asyncio
from trio_asyncio import SyncTrioEventLoop, TrioPolicy, trio_as_aio

SUBPROCESS_TIMEOUT = 60

needs_policies = pytest.mark.skipif(
    sys.version_info >= (3, 14), reason="event loop policies are deprecated from 3.14"
)


def run_python(source: str) -> list[str]:
    """Run *source* in a fresh interpreter; return its stdout lines (it must succeed)."""
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


async def loop_type_name() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__name__


async def trio_double(x: int) -> int:
    await trio.sleep(0)
    return 2 * x


# ---- the policy ---------------------------------------------------------------------------


@needs_policies
def test_importing_installs_the_policy() -> None:
    assert run_python(
        """
        import asyncio
        print(type(asyncio.get_event_loop_policy()).__name__)
        import trio_asyncio
        print(type(asyncio.get_event_loop_policy()).__name__)
        import trio_asyncio._policy
        trio_asyncio._policy.install()  # again: nothing changes
        print(type(asyncio.get_event_loop_policy()).__name__)
        """
    ) == ["_UnixDefaultEventLoopPolicy", "TrioPolicy", "TrioPolicy"]


@needs_policies
def test_importing_respects_a_policy_chosen_by_the_program() -> None:
    assert run_python(
        """
        import asyncio

        class Mine(asyncio.DefaultEventLoopPolicy):
            pass

        asyncio.set_event_loop_policy(Mine())
        import trio_asyncio
        print(type(asyncio.get_event_loop_policy()).__name__)
        loop = asyncio.new_event_loop()
        print(type(loop).__name__)
        loop.close()
        """
    ) == ["Mine", "_UnixSelectorEventLoop"]


@needs_policies
def test_policy_is_the_default_policy_making_our_loops() -> None:
    policy = TrioPolicy()
    assert isinstance(policy, asyncio.DefaultEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert type(loop) is SyncTrioEventLoop
    finally:
        loop.close()


@needs_policies
def test_asyncio_new_event_loop_gives_ours() -> None:
    assert type(asyncio.get_event_loop_policy()) is TrioPolicy
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is SyncTrioEventLoop
        assert loop.run_until_complete(loop.run_trio(trio_double, 4)) == 8
    finally:
        loop.close()


@needs_policies
def test_get_event_loop_outside_any_loop_creates_ours() -> None:
    """The implicit loop of the main thread (deprecated from 3.12, gone in 3.14)."""
    assert run_python(
        """
        import asyncio, warnings
        import trio_asyncio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = asyncio.get_event_loop()
            same = asyncio.get_event_loop()
        print(type(loop).__name__, same is loop)
        print(loop.run_until_complete(asyncio.sleep(0, "ran")))
        loop.close()
        asyncio.set_event_loop(None)
        """
    ) == ["SyncTrioEventLoop True", "ran"]


@needs_policies
def test_set_event_loop_then_get_event_loop() -> None:
    loop = trio_asyncio.new_event_loop()
    policy = asyncio.get_event_loop_policy()
    try:
        asyncio.set_event_loop(loop)
        assert asyncio.get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    # Other threads have no current loop, as with the stdlib's policy.
    seen: list[Any] = []

    def other_thread() -> None:
        try:
            policy.get_event_loop()
        except RuntimeError as exc:
            seen.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(SUBPROCESS_TIMEOUT)
    assert len(seen) == 1 and "no current event loop" in str(seen[0])


def test_get_event_loop_inside_open_loop_is_that_loop() -> None:
    results = {}

    async def asyncio_side() -> Any:
        return asyncio.get_event_loop()

    async def main() -> None:
        async with trio_asyncio.open_loop() as loop:
            results["loop"] = loop
            # From Trio code: the policy looks at trio_asyncio.current_loop.
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                results["trio side"] = asyncio.get_event_loop()
            results["asyncio side"] = await trio_asyncio.aio_as_trio(asyncio_side)()

            async def nested_task() -> None:
                results["child task"] = asyncio.get_event_loop()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: trio_asyncio.aio_as_trio(nested_task)())
                nursery.start_soon(_trio_child, results)

    trio.run(main)
    loop = results.pop("loop")
    assert isinstance(loop, trio_asyncio.TrioEventLoop)
    assert results == {
        "trio side": loop,
        "asyncio side": loop,
        "child task": loop,
        "trio child": loop,
    }


async def _trio_child(results: dict[str, Any]) -> None:
    await trio.sleep(0)
    results["trio child"] = asyncio.get_event_loop()


@needs_policies
def test_get_event_loop_after_open_loop_is_not_the_closed_loop() -> None:
    assert run_python(
        """
        import asyncio, warnings
        import trio, trio_asyncio

        async def main():
            async with trio_asyncio.open_loop() as loop:
                pass
            return loop

        closed = trio.run(main)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            current = asyncio.get_event_loop()
        print(current is closed, current.is_closed(), type(current).__name__)
        current.close()
        """
    ) == ["False False SyncTrioEventLoop"]


# ---- asyncio.run, asyncio.Runner and loop_factory -------------------------------------------


@needs_policies
def test_asyncio_run_gives_ours() -> None:
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        assert await trio_as_aio(trio_double)(21) == 42
        return loop

    loop = asyncio.run(main())
    assert type(loop) is SyncTrioEventLoop
    assert loop.is_closed()


@needs_policies
def test_asyncio_run_in_a_fresh_interpreter_gives_ours() -> None:
    assert run_python(
        """
        import asyncio
        import trio_asyncio

        async def main():
            return type(asyncio.get_running_loop()).__name__

        print(asyncio.run(main()))
        print(asyncio.run(main(), debug=True))
        """
    ) == ["SyncTrioEventLoop", "SyncTrioEventLoop"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_loop_factory() -> None:
    assert (
        asyncio.run(loop_type_name(), loop_factory=trio_asyncio.new_event_loop)  # type: ignore[call-arg]
        == "SyncTrioEventLoop"
    )
    # An explicit factory wins over the policy.
    assert (
        asyncio.run(loop_type_name(), loop_factory=asyncio.SelectorEventLoop)  # type: ignore[call-arg]
        == "_UnixSelectorEventLoop"
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
@pytest.mark.parametrize("factory", ["loop_factory", "policy"])
def test_asyncio_runner_keeps_one_loop_across_runs(factory: str) -> None:
    """Trio tasks started in one Runner.run() go on in the next, like asyncio tasks."""
    if factory == "policy" and sys.version_info >= (3, 14):  # pragma: no cover
        pytest.skip("no policy on 3.14+")
    kwargs: dict[str, Any] = {}
    if factory == "loop_factory":
        kwargs["loop_factory"] = trio_asyncio.new_event_loop
    go_on = trio.Event()

    async def trio_job() -> str:
        await go_on.wait()
        return "done"

    async def release() -> None:
        go_on.set()

    async def release_from_asyncio() -> None:
        await trio_as_aio(release)()

    async def start() -> Any:
        return asyncio.get_running_loop().run_trio(trio_job)  # type: ignore[attr-defined]

    async def wait(awaitable: Any) -> Any:
        return await awaitable  # Runner.run() takes coroutines only

    with asyncio.Runner(**kwargs) as runner:  # type: ignore[attr-defined]
        loop = runner.get_loop()
        assert type(loop) is SyncTrioEventLoop
        job = runner.run(start())
        assert runner.run(loop_type_name()) == "SyncTrioEventLoop"
        assert not job.done()
        runner.run(release_from_asyncio())
        assert runner.run(wait(job)) == "done"
    assert loop.is_closed()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
def test_asyncio_runner_cancels_leftover_trio_tasks_at_close() -> None:
    cancelled = []

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.append(True)

    async def start() -> None:
        asyncio.get_running_loop().run_trio(forever)  # type: ignore[attr-defined]
        await trio_as_aio(trio.sleep)(0)

    with asyncio.Runner(loop_factory=trio_asyncio.new_event_loop) as runner:  # type: ignore[attr-defined]
        runner.run(start())
        assert cancelled == []
    assert cancelled == [True]
