"""``trio`` mode: IsolatedAsyncioTestCase tests driven from a Trio program.

``IsolatedAsyncioTestCase`` (3.11+) runs each of a test's coroutines
(``asyncSetUp``, the test, ``asyncTearDown``, async clean-ups) through an
``asyncio.Runner``. Here a :class:`TrioHostedRunner` stands in for it: one
``trio.run()`` with ``trio_asyncio.open_loop()`` per test, in a helper thread,
and each coroutine is awaited from Trio with ``aio_as_trio``. So the test runs
on a Trio-hosted :class:`trio_asyncio.TrioEventLoop`, as asyncio code inside
a Trio program does, while unittest drives it from the main thread; the
test's synchronous parts (setUp, tearDown, clean-ups; not a synchronous
test method) are called in the loop's thread, between its callbacks.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from functools import partial
from typing import Any

import trio

import trio_asyncio


class TrioHostedRunner:
    """What IsolatedAsyncioTestCase needs of ``asyncio.Runner``: ``run()``,
    ``get_loop()`` and ``close()``, with the loop inside a Trio program."""

    def __init__(self, *, debug: bool = False) -> None:
        self._debug = debug
        self._loop: trio_asyncio.TrioEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, name="trio-asyncio conformance runner", daemon=True
        )
        self._thread.start()
        self._started.wait()
        if self._loop is None:
            self._thread.join()
            raise RuntimeError("the Trio program did not start") from self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        async with trio_asyncio.open_loop() as loop:
            loop.set_debug(self._debug)
            # As asyncio.Runner does: get_event_loop() in sync code (setUp...) finds it.
            asyncio.set_event_loop(loop)
            try:
                self._stop = trio.Event()
                self._token = trio.lowlevel.current_trio_token()
                self._loop = loop
                self._started.set()
                await self._stop.wait()
            finally:
                asyncio.set_event_loop(None)

    def get_loop(self) -> trio_asyncio.TrioEventLoop:
        assert self._loop is not None
        return self._loop

    def run(self, coro: Any, *, context: Any = None) -> Any:
        """Run *coro* as an asyncio task (in *context*) and return its result."""
        return trio.from_thread.run(self._call, coro, context, trio_token=self._token)

    async def _call(self, coro: Any, context: Any) -> Any:
        return await trio_asyncio.aio_as_trio(_in_context, loop=self._loop)(coro, context)

    def run_sync(self, func: Any, *args: Any) -> Any:
        """Call ``func(*args)`` in the loop's thread (between the loop's callbacks).

        The test's synchronous parts (setUp, tearDown, clean-ups) run there,
        so that what they do with the loop happens in its thread, as with
        asyncio.Runner, where the loop is not running at all meanwhile.
        """
        return trio.from_thread.run_sync(func, *args, trio_token=self._token)

    def close(self) -> None:
        """Leave ``open_loop()`` (which cancels what is left) and end the Trio program."""
        if self._token is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)  # type: ignore[union-attr]
            except trio.RunFinishedError:
                pass
            self._token = None
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error


async def _in_context(coro: Any, context: Any) -> Any:
    """The task that runs *coro* in *context* (as ``Runner.run(coro, context=...)`` does)."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(coro) if context is None else loop.create_task(coro, context=context)
    return await task


# The overrides of IsolatedAsyncioTestCase's private steps (3.11-3.13): the
# runner is ours, and the synchronous parts go to the loop's thread too.


def _setup_runner(self: Any) -> None:
    assert self._asyncioRunner is None, "asyncio runner is already initialized"
    self._asyncioRunner = TrioHostedRunner(debug=True)


def _teardown_runner(self: Any) -> None:
    self._asyncioRunner.close()


def _call_set_up(self: Any) -> None:
    self._asyncioRunner.run_sync(self._asyncioTestContext.run, self.setUp)
    self._callAsync(self.asyncSetUp)


def _call_tear_down(self: Any) -> None:
    self._callAsync(self.asyncTearDown)
    self._asyncioRunner.run_sync(self._asyncioTestContext.run, self.tearDown)


def _call_maybe_async(self: Any, func: Any, /, *args: Any, **kwargs: Any) -> Any:
    context = self._asyncioTestContext
    if inspect.iscoroutinefunction(func):
        return self._asyncioRunner.run(func(*args, **kwargs), context=context)
    if func == getattr(self, self._testMethodName, None):
        # A synchronous test method may run loops of its own (asyncio.run()...):
        # it stays in the main thread, as in a plain TestCase.
        return context.run(func, *args, **kwargs)
    return self._asyncioRunner.run_sync(partial(context.run, func, *args, **kwargs))


def trio_hosted_namespace() -> dict[str, Any]:
    """The overrides that make an IsolatedAsyncioTestCase run on a TrioHostedRunner."""
    return {
        "_setupAsyncioRunner": _setup_runner,
        "_tearDownAsyncioRunner": _teardown_runner,
        "_callSetUp": _call_set_up,
        "_callTearDown": _call_tear_down,
        "_callMaybeAsync": _call_maybe_async,
    }
