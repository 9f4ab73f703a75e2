"""``run_in_executor`` for any executor, the default executor, and ``TrioExecutor``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import trio


class TrioExecutor(concurrent.futures.ThreadPoolExecutor):
    """An executor whose jobs, on a trio-asyncio loop, run in Trio's worker threads.

    ``loop.run_in_executor(TrioExecutor(limit), fn, *args)`` runs ``fn`` with
    :func:`trio.to_thread.run_sync`, at most *max_workers* at a time, so the
    job is a Trio task: it is cancelled and awaited when the loop closes.
    Outside a trio-asyncio loop it behaves as a plain thread pool.
    """

    def __init__(self, max_workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(max_workers=max_workers, **kwargs)
        self._limiter = trio.CapacityLimiter(self._max_workers)


class ExecutorMixin:
    def __init__(self) -> None:
        self._default_executor: concurrent.futures.Executor | None = None
        self._executor_shutdown_called = False

    def set_default_executor(self, executor: concurrent.futures.Executor) -> None:
        # The default executor also runs getaddrinfo() and friends, so it
        # must be a thread pool: the stdlib refuses anything else from 3.11,
        # and 3.10's only warns. So do we there, for what can be an executor
        # at all (something with submit()); anything else is refused at once
        # rather than failing later, in run_in_executor() or close().
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            if sys.version_info >= (3, 11) or not callable(getattr(executor, "submit", None)):
                raise TypeError("executor must be ThreadPoolExecutor instance")
            warnings.warn(
                "Using the default executor that is not an instance of ThreadPoolExecutor "
                "is deprecated and will be prohibited in Python 3.9",
                DeprecationWarning,
                stacklevel=2,
            )
        self._default_executor = executor

    def run_in_executor(
        self, executor: concurrent.futures.Executor | None, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        """Run ``func(*args)`` in *executor* (or the default one); return an asyncio future."""
        self._check_closed()  # type: ignore[attr-defined]
        if asyncio.iscoroutine(func) or asyncio.iscoroutinefunction(func):
            raise TypeError("coroutines cannot be used with run_in_executor()")
        if not callable(func):
            raise TypeError(f"a callable object was expected by run_in_executor(), got {func!r}")
        if isinstance(executor, TrioExecutor):
            run_sync = self._run_sync_in_trio_thread  # type: ignore[attr-defined]
            return run_sync(func, args, executor._limiter)
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        elif not isinstance(executor, concurrent.futures.Executor):
            raise TypeError("executor must be an instance of concurrent.futures.Executor or None")
        return asyncio.wrap_future(executor.submit(func, *args), loop=self)  # type: ignore[arg-type]

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Shut the default executor down, waiting (in a thread) for its jobs.

        asyncio-flavoured. With *timeout*, warn and stop waiting after that long.
        """
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        future = self.create_future()  # type: ignore[attr-defined]

        def shut_down() -> None:
            try:
                executor.shutdown(wait=True)
            except BaseException as exc:  # pragma: no cover - reported to the awaiting task
                report: Any = (_set_exception_unless_done, future, exc)
            else:
                report = (_set_result_unless_done, future, None)
            try:
                self.call_soon_threadsafe(*report)  # type: ignore[attr-defined]
            except RuntimeError:
                pass  # the loop closed meanwhile (a timeout gave up on us)

        thread = threading.Thread(target=shut_down, name="trio-asyncio executor shutdown")
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            warnings.warn(
                f"The executor did not finish joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            executor.shutdown(wait=False)
        else:
            thread.join()

    def _shutdown_default_executor_now(self) -> None:
        """Synchronous last resort used by close(): don't wait for jobs."""
        executor = self._default_executor
        self._default_executor = None
        self._executor_shutdown_called = True
        if executor is not None:
            executor.shutdown(wait=False)


def _set_result_unless_done(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception_unless_done(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
