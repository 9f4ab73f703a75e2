"""Cross-calls: ``aio_as_trio`` (asyncio seen from Trio) and ``trio_as_aio`` (the reverse).

Layer 4. Each wrapper accepts a callable (so it works as a decorator,
including on methods), or an awaitable, future, async iterator or async
context manager, and makes it usable from the other side. Exceptions,
cancellation and contextvars cross as described in ``BaseTrioEventLoop``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import inspect
import sys
import types
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

from . import _compat
from ._core._current import NO_LOOP, current_loop, get_current_loop
from ._loop_base import BaseTrioEventLoop, _close_unstarted

T = TypeVar("T")


def _trio_side_loop(loop: BaseTrioEventLoop | None) -> BaseTrioEventLoop:
    if loop is not None:
        if not isinstance(loop, BaseTrioEventLoop):
            raise TypeError(f"loop must be a trio-asyncio loop, got {loop!r}")
        return loop
    found = current_loop.get()
    if found is not None:
        return found  # type: ignore[no-any-return]
    running = _compat.get_running_loop_or_none()
    if running is not None and _compat.sniffio_state.name == "asyncio":
        raise RuntimeError(
            "aio_as_trio() and run_aio_*() are for Trio code, but this is asyncio code "
            f"(running on {running!r}): await the asyncio code directly."
        )
    raise RuntimeError(NO_LOOP)


def _asyncio_side_loop(
    loop: BaseTrioEventLoop | None, what: str = "trio_as_aio()"
) -> BaseTrioEventLoop:
    if loop is not None:
        if not isinstance(loop, BaseTrioEventLoop):
            raise TypeError(f"loop must be a trio-asyncio loop, got {loop!r}")
        return loop
    running = _compat.get_running_loop_or_none()
    if isinstance(running, BaseTrioEventLoop):
        return running
    if running is None:
        found = current_loop.get()
        if found is not None:
            return found  # type: ignore[no-any-return]
        raise RuntimeError(f"{what} must be used from asyncio code running on a trio-asyncio loop")
    raise RuntimeError(
        f"{what} needs a trio-asyncio loop, but the running loop is {running!r}. "
        "Use trio_asyncio.open_loop(), trio_asyncio.run() or "
        "trio_asyncio.new_event_loop()."
    )


def _check_async_cm(obj: Any) -> None:
    if not hasattr(type(obj), "__aenter__") or not hasattr(type(obj), "__aexit__"):
        raise TypeError(
            f"{type(obj).__name__!r} object does not support the asynchronous "
            "context manager protocol"
        )


class AsyncioAsTrio(Generic[T]):
    """asyncio code, made awaitable (and iterable, and enterable) from Trio.

    Made by :func:`aio_as_trio`.
    """

    __slots__ = ("_is_coro_function", "_iterator", "_loop", "_proc")

    def __init__(self, proc: Any, loop: BaseTrioEventLoop | None = None) -> None:
        self._proc = proc
        self._loop = loop
        self._iterator: Any = None
        self._is_coro_function = inspect.iscoroutinefunction(proc)

    def __repr__(self) -> str:
        return f"<aio_as_trio {self._proc!r}>"

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Decorating a method: bind it like a function would be bound.
        if instance is None:
            return self
        return AsyncioAsTrio(types.MethodType(self._proc, instance), self._loop)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        loop = _trio_side_loop(self._loop)
        if self._is_coro_function:
            # Calling only builds the coroutine; nothing runs yet.
            return loop.run_aio_coroutine(self._proc(*args, **kwargs))
        saved = loop._enter_asyncio()
        try:
            result = self._proc(*args, **kwargs)
        finally:
            loop._leave_asyncio(saved)
        if asyncio.iscoroutine(result):
            return loop.run_aio_coroutine(result)
        return AsyncioAsTrio(result, loop)

    def __await__(self) -> Any:
        loop = _trio_side_loop(self._loop)
        # run_aio_future() refuses a future that this Trio run cannot wait for.
        return loop.run_aio_future(self._proc).__await__()

    async def __aenter__(self) -> Any:
        loop = _trio_side_loop(self._loop)
        _check_async_cm(self._proc)
        return await loop.run_aio_coroutine(_call_in(loop, self._proc.__aenter__))

    async def __aexit__(self, *exc_info: Any) -> Any:
        loop = _trio_side_loop(self._loop)
        # Clean-up always starts, even in a cancelled Trio scope; a
        # cancellation then reaches it as one asyncio cancel.
        return await loop._start_and_wait(
            _call_in(loop, self._proc.__aexit__, *exc_info), cleanup=True
        )

    def __aiter__(self) -> AsyncioAsTrio[T]:
        loop = _trio_side_loop(self._loop)
        saved = loop._enter_asyncio()
        try:
            iterator = aiter(self._proc)
        finally:
            loop._leave_asyncio(saved)
        wrapper: AsyncioAsTrio[T] = AsyncioAsTrio(self._proc, loop)
        wrapper._iterator = iterator
        return wrapper

    async def __anext__(self) -> T:
        loop = _trio_side_loop(self._loop)
        iterator = self._iterator
        if iterator is None:
            raise TypeError("call aiter() on the wrapper before anext()")
        return await loop.run_aio_coroutine(_next_item(iterator))  # type: ignore[no-any-return]


async def _call_in(loop: BaseTrioEventLoop, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await fn(*args)


async def _next_item(iterator: Any) -> Any:
    return await iterator.__anext__()


def aio_as_trio(proc: Any, *, loop: BaseTrioEventLoop | None = None) -> Any:
    """Make asyncio code callable from Trio.

    *proc* may be an asyncio coroutine function (``await aio_as_trio(fn)(*args)``;
    also a decorator, on functions and methods), a coroutine, future or other
    awaitable (``await aio_as_trio(fut)``), an async iterator
    (``async for x in aio_as_trio(it)``) or an async context manager
    (``async with aio_as_trio(cm) as v``). The asyncio side runs as tasks on
    *loop*, by default the loop of the enclosing ``open_loop()``.
    """
    if isinstance(proc, AsyncioAsTrio):
        return proc
    return AsyncioAsTrio(proc, loop)


asyncio_as_trio = aio_as_trio


class TrioAsAsyncio(Generic[T]):
    """Trio code, made awaitable (and iterable, and enterable) from asyncio.

    Made by :func:`trio_as_aio`.
    """

    __slots__ = ("_held", "_iterator", "_loop", "_proc")

    def __init__(self, proc: Any, loop: BaseTrioEventLoop | None = None) -> None:
        self._proc = proc
        self._loop = loop
        self._iterator: Any = None
        self._held: _HeldContext | None = None

    def __repr__(self) -> str:
        return f"<trio_as_aio {self._proc!r}>"

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return TrioAsAsyncio(types.MethodType(self._proc, instance), self._loop)

    def __call__(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        loop = _asyncio_side_loop(self._loop)
        proc = functools.partial(self._proc, **kwargs) if kwargs else self._proc
        return loop.run_trio(proc, *args)

    def __await__(self) -> Any:
        loop = _asyncio_side_loop(self._loop)
        return loop.run_trio(_await_it, self._proc).__await__()

    async def __aenter__(self) -> Any:
        # Trio context managers (locks, cancel scopes, nurseries) must be
        # entered and exited by the same Trio task: one job holds the whole
        # block and waits for the exit signal.
        loop = _asyncio_side_loop(self._loop)
        _check_async_cm(self._proc)
        if self._held is not None:
            raise RuntimeError(f"{self!r} is already entered")
        held = self._held = _HeldContext(loop)
        return await held.enter(self._proc)

    async def __aexit__(self, *exc_info: Any) -> Any:
        held, self._held = self._held, None
        if held is None:
            raise RuntimeError(f"{self!r} was not entered")
        return await held.exit(exc_info)

    def __aiter__(self) -> TrioAsAsyncio[T]:
        wrapper: TrioAsAsyncio[T] = TrioAsAsyncio(self._proc, self._loop)
        wrapper._iterator = aiter(self._proc)
        return wrapper

    async def __anext__(self) -> T:
        loop = _asyncio_side_loop(self._loop)
        if self._iterator is None:
            raise TypeError("call aiter() on the wrapper before anext()")
        return await loop.run_trio(self._iterator.__anext__)  # type: ignore[no-any-return]


class _HeldContext:
    """A Trio async context manager held open by one Trio job for asyncio code."""

    def __init__(self, loop: BaseTrioEventLoop) -> None:
        self._loop = loop
        self._entered: asyncio.Future[Any] = loop.create_future()
        self._exit_info: tuple[Any, ...] = (None, None, None)
        self._exit_event: Any = None
        self._job: asyncio.Future[Any] | None = None

    async def enter(self, manager: Any) -> Any:
        job = self._job = self._loop.run_trio(self._hold, manager)
        try:
            await asyncio.wait([self._entered, job], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled while entering. As with any Trio call, asyncio code
            # resumes only once the Trio side has finished (and left the
            # manager, if it got in); an error that it ended with wins.
            job.cancel()
            await _wait_until_done(job)
            if not job.cancelled() and job.exception() is not None:
                job.result()  # raises that error
            raise
        if self._entered.done():
            return self._entered.result()
        self._entered.cancel()
        return self._job.result()  # entering failed: raise its error

    async def exit(self, exc_info: tuple[Any, ...]) -> Any:
        self._exit_info = exc_info
        if self._exit_event is not None:
            self._loop._call_in_trio(self._exit_event.set)
        assert self._job is not None
        return await self._job

    async def _hold(self, manager: Any) -> Any:
        self._exit_event = trio.Event()
        value = await manager.__aenter__()
        self._loop._complete_from_trio(_set_result_unless_done, self._entered, value)
        try:
            await self._exit_event.wait()
        except BaseException:
            exc = sys.exc_info()
            if not await manager.__aexit__(*exc):
                raise
            return None
        return await manager.__aexit__(*self._exit_info)


async def _wait_until_done(future: asyncio.Future[Any]) -> None:
    """Wait for *future*, whose cancellation was requested, even if cancelled again."""
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            pass  # the caller raises a cancellation (or the future's error) afterwards


def _set_result_unless_done(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


async def _await_it(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def trio_as_aio(proc: Any, *, loop: BaseTrioEventLoop | None = None) -> Any:
    """Make Trio code callable from asyncio.

    *proc* may be a Trio async function (``await trio_as_aio(fn)(*args)``;
    also a decorator), a Trio awaitable, async iterator or async context
    manager. Each call runs as a new Trio task of the loop; from asyncio it
    is a future whose cancellation cancels the Trio task.
    """
    if isinstance(proc, TrioAsAsyncio):
        return proc
    return TrioAsAsyncio(proc, loop)


trio_as_asyncio = trio_as_aio


# ---- function-style entry points (trio-asyncio 0.16 names) ----------------


async def run_aio_coroutine(coro: Awaitable[T], *, loop: BaseTrioEventLoop | None = None) -> T:
    """Await an asyncio coroutine from Trio. Trio-flavoured."""
    try:
        target = _trio_side_loop(loop)
    except BaseException:
        _close_unstarted(coro)  # no "never awaited" warning on top of the error
        raise
    return await target.run_aio_coroutine(coro)  # type: ignore[no-any-return]


async def run_aio_future(future: Awaitable[T], *, loop: BaseTrioEventLoop | None = None) -> T:
    """Await an asyncio future from Trio; cancelling the caller cancels it. Trio-flavoured."""
    try:
        target = _trio_side_loop(loop)
    except BaseException:
        _close_unstarted(future)
        raise
    return await target.run_aio_future(future)  # type: ignore[no-any-return]


async def run_aio_generator(loop: BaseTrioEventLoop | None, async_generator: Any) -> Any:
    """Iterate an asyncio async generator from Trio: ``async for x in run_aio_generator(loop, agen)``.

    Trio-flavoured async generator.
    """
    loop = _trio_side_loop(loop)
    iterator = AsyncioAsTrio(async_generator, loop).__aiter__()
    while True:
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            return
        yield item


def run_trio(proc: Callable[..., Awaitable[T]], *args: Any) -> asyncio.Future[T]:
    """Start Trio code from asyncio (or sync code on the loop); return an asyncio future."""
    return _asyncio_side_loop(None, "run_trio()").run_trio(proc, *args)


def run_trio_task(proc: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Start a Trio task from asyncio whose errors end the enclosing ``open_loop()``."""
    _asyncio_side_loop(None, "run_trio_task()").run_trio_task(proc, *args)


async def allow_asyncio(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args)`` in this Trio task, letting it await Trio *and* asyncio objects.

    Trio-flavoured. An asyncio future that the coroutine awaits is waited
    for through the current loop; everything else it yields goes to Trio.
    """
    loop = get_current_loop()
    coro = fn(*args, **kwargs)
    if not isinstance(coro, collections.abc.Coroutine):
        _close_unstarted(coro)
        raise TypeError(f"allow_asyncio() expects an async function, but {fn!r} returned {coro!r}")
    send: Any = None
    throw: BaseException | None = None
    while True:
        saved = _compat.get_running_loop_or_none()
        _compat.set_running_loop(loop)
        try:
            if throw is not None:
                exc, throw = throw, None
                yielded = coro.throw(exc)
            else:
                yielded = coro.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            _compat.set_running_loop(saved)
        try:
            if isinstance(yielded, asyncio.Future):
                send = await loop.run_aio_future(yielded)
            elif yielded is None:
                # asyncio's bare yield ("let others run once"), e.g. sleep(0).
                await _trio_checkpoint()
                send = None
            else:
                send = await _yield_to_trio(yielded)
        except BaseException as exc:
            throw = exc
            send = None


async def _trio_checkpoint() -> None:
    await trio.lowlevel.checkpoint()


@types.coroutine
def _yield_to_trio(message: Any) -> Any:
    return (yield message)


__all__ = [
    "AsyncioAsTrio",
    "TrioAsAsyncio",
    "aio_as_trio",
    "allow_asyncio",
    "asyncio_as_trio",
    "run_aio_coroutine",
    "run_aio_future",
    "run_aio_generator",
    "run_trio",
    "run_trio_task",
    "trio_as_aio",
    "trio_as_asyncio",
]
