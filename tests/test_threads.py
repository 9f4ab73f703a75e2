"""Threads: many threads reaching one loop at once, and loops running in worker threads.

Two families of scenarios:

* **Many threads, one loop.** Several threads call ``call_soon_threadsafe``
  and ``asyncio.run_coroutine_threadsafe`` at the same moment (released by a
  barrier) while the loop is busy, or parked between calls. Nothing may be
  lost (every call is counted) and each thread's calls run in the order it
  made them. Each scenario also runs on the stdlib selector loop, which
  proves the expectation.
* **Loops in worker threads.** Several threads each run their own loop at
  the same time (sync loops; ``trio.run`` + ``open_loop``; both mixed), use
  asyncio and Trio inside it, and post work to each other's loops.

Plus a deterministic replay of a lost wake-up that stress alone rarely hits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sniffio
import trio

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio

THREADS = 8
CALLS_PER_THREAD = 2000
ROUND_TRIPS_PER_THREAD = 150
# Generous: two cores are shared with other jobs.
TIMEOUT = 60.0

LOOP_KINDS = ["stdlib", "sync", "trio"]

# ---- running a scenario on one loop kind -------------------------------------------------


def run_scenario(
    kind: str, scenario: Callable[[Any], Awaitable[Any]], *, trio_load: bool = True
) -> Any:
    """Run ``scenario(loop)`` as asyncio code on a fresh loop of *kind*; return its result.

    On the Trio-hosted loop, with *trio_load*, a Trio task keeps crossing into
    asyncio meanwhile, so Trio tasks "help" run callbacks while threads add more.
    """
    if kind == "trio":

        async def main() -> Any:
            async with trio_asyncio.open_loop() as loop:
                async with trio.open_nursery() as nursery:
                    if trio_load:
                        nursery.start_soon(_trio_side_load)
                    try:
                        return await aio_as_trio(scenario)(loop)
                    finally:
                        nursery.cancel_scope.cancel()

        return trio.run(main)
    loop = asyncio.SelectorEventLoop() if kind == "stdlib" else trio_asyncio.new_event_loop()
    try:
        return loop.run_until_complete(scenario(loop))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


async def _trio_side_load() -> None:
    while True:
        await aio_as_trio(asyncio.sleep)(0)
        await trio.sleep(0)


@contextlib.asynccontextmanager
async def asyncio_load(loop: Any) -> AsyncIterator[None]:
    """Keep the loop busy: tasks that yield, chains of call_soon, and Trio round trips."""
    stop = False

    async def yielder() -> None:
        while not stop:
            await asyncio.sleep(0)

    def chain() -> None:
        if not stop:
            loop.call_soon(chain)

    async def trio_pinger() -> None:
        while not stop:
            await trio_as_aio(trio.sleep)(0)

    tasks = [asyncio.ensure_future(yielder()) for _ in range(3)]
    if isinstance(loop, trio_asyncio.BaseTrioEventLoop):
        tasks.append(asyncio.ensure_future(trio_pinger()))
    for _ in range(3):
        loop.call_soon(chain)
    try:
        yield
    finally:
        stop = True
        await asyncio.gather(*tasks)


class Workers:
    """Threads started together (behind a barrier), whose errors are re-raised here."""

    def __init__(self, count: int, target: Callable[[int], None]) -> None:
        self.barrier = threading.Barrier(count)
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(target, i), name=f"worker-{i}")
            for i in range(count)
        ]

    def _run(self, target: Callable[[int], None], index: int) -> None:
        try:
            self.barrier.wait(TIMEOUT)
            target(index)
        except BaseException as exc:
            self.errors.append(exc)
            self.barrier.abort()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    async def join(self) -> None:
        """Wait (without blocking the loop) until every thread has ended."""
        deadline = time.monotonic() + TIMEOUT
        while any(thread.is_alive() for thread in self.threads):
            assert time.monotonic() < deadline, "worker threads did not finish"
            await asyncio.sleep(0.005)
        self.check()

    def join_blocking(self) -> None:
        for thread in self.threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), f"{thread.name} did not finish"
        self.check()

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]


def assert_in_order(received: dict[int, list[int]], threads: int, per_thread: int) -> None:
    total = sum(len(seqs) for seqs in received.values())
    assert total == threads * per_thread, f"{threads * per_thread - total} calls lost"
    for index in range(threads):
        assert received[index] == list(range(per_thread)), f"thread {index}: order broken"


# ---- many threads, one loop ----------------------------------------------------------------


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_call_soon_threadsafe_from_many_threads_on_a_busy_loop(kind):
    async def scenario(loop: Any) -> dict[int, list[int]]:
        received: dict[int, list[int]] = collections.defaultdict(list)
        total = THREADS * CALLS_PER_THREAD
        all_done = loop.create_future()

        def record(index: int, seq: int) -> None:
            received[index].append(seq)
            if seq == CALLS_PER_THREAD - 1 and sum(map(len, received.values())) == total:
                all_done.set_result(None)

        def call_many(index: int) -> None:
            for seq in range(CALLS_PER_THREAD):
                loop.call_soon_threadsafe(record, index, seq)
                if seq % 256 == 0:
                    time.sleep(0)  # let the others interleave differently

        async with asyncio_load(loop):
            workers = Workers(THREADS, call_many)
            workers.start()
            await workers.join()
            await asyncio.wait_for(all_done, TIMEOUT)
        return received

    received = run_scenario(kind, scenario)
    assert_in_order(received, THREADS, CALLS_PER_THREAD)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_call_soon_threadsafe_wakes_a_parked_loop_every_time(kind):
    # Each call waits for its callback before the next: the loop has nothing
    # else to do, so it parks between calls and every call must wake it.
    threads = 4

    async def scenario(loop: Any) -> dict[int, list[int]]:
        received: dict[int, list[int]] = collections.defaultdict(list)

        def record(index: int, seq: int, ran: threading.Event) -> None:
            received[index].append(seq)
            ran.set()

        def round_trips(index: int) -> None:
            for seq in range(ROUND_TRIPS_PER_THREAD):
                ran = threading.Event()
                loop.call_soon_threadsafe(record, index, seq, ran)
                assert ran.wait(TIMEOUT), f"call {seq} of thread {index} never ran: lost wake-up"

        workers = Workers(threads, round_trips)
        workers.start()
        # Parked with no timer at all: only the threads' calls can wake us.
        await asyncio.wrap_future(_when_all_end(workers.threads))
        workers.check()
        return received

    received = run_scenario(kind, scenario, trio_load=False)
    assert_in_order(received, threads, ROUND_TRIPS_PER_THREAD)


def _when_all_end(threads: list[threading.Thread]) -> Any:
    """A concurrent future done when every thread has ended (set from another thread)."""
    import concurrent.futures

    future: concurrent.futures.Future[None] = concurrent.futures.Future()

    def wait() -> None:
        for thread in threads:
            thread.join()
        future.set_result(None)

    threading.Thread(target=wait, name="joiner").start()
    return future


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_run_coroutine_threadsafe_from_many_threads(kind):
    per_thread = 300

    async def scenario(loop: Any) -> tuple[Any, Any]:
        started: dict[int, list[int]] = collections.defaultdict(list)
        results: dict[int, list[Any]] = {}
        ours = isinstance(loop, trio_asyncio.BaseTrioEventLoop)

        async def job(index: int, seq: int) -> tuple[int, int]:
            started[index].append(seq)
            await asyncio.sleep(0)
            if ours and seq % 50 == 0:
                await trio_as_aio(trio.sleep)(0)
            if seq % 97 == 13:
                raise KeyError(index, seq)
            return index, seq

        def submit_many(index: int) -> None:
            futures = []
            for seq in range(per_thread):
                future = asyncio.run_coroutine_threadsafe(job(index, seq), loop)
                futures.append(future)
                if seq % 25 == 0:  # sometimes wait for the answer right away
                    _outcome(future)
            results[index] = [_outcome(future) for future in futures]

        async with asyncio_load(loop):
            workers = Workers(THREADS, submit_many)
            workers.start()
            await workers.join()
        return started, results

    started, results = run_scenario(kind, scenario)
    assert_in_order(started, THREADS, per_thread)
    for index in range(THREADS):
        expected = [
            ("error", (index, seq)) if seq % 97 == 13 else ("value", (index, seq))
            for seq in range(per_thread)
        ]
        assert results[index] == expected


def _outcome(future: Any) -> tuple[str, Any]:
    try:
        return "value", future.result(TIMEOUT)
    except KeyError as exc:
        return "error", exc.args


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_threads_racing_with_loop_close_lose_nothing_silently(kind):
    # While the loop shuts down, every threadsafe call either runs or raises
    # "Event loop is closed"; a call that returned a handle before close()
    # may be dropped by close(), as in the stdlib, but never after close.
    threads = 4
    accepted_after_close: list[int] = []
    closed = threading.Event()

    def hammer(loop: Any) -> Callable[[int], None]:
        def run(index: int) -> None:
            while True:
                was_closed = closed.is_set()
                try:
                    loop.call_soon_threadsafe(_noop)
                except RuntimeError as exc:
                    assert "closed" in str(exc)
                    return
                if was_closed:
                    accepted_after_close.append(index)
                time.sleep(0)

        return run

    if kind == "trio":

        async def main() -> Workers:
            async with trio_asyncio.open_loop() as loop:
                workers = Workers(threads, hammer(loop))
                workers.start()
                await trio.sleep(0.05)
            closed.set()
            return workers

        workers = trio.run(main)
    else:
        loop = asyncio.SelectorEventLoop() if kind == "stdlib" else trio_asyncio.new_event_loop()
        workers = Workers(threads, hammer(loop))
        workers.start()
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()
        closed.set()
    workers.join_blocking()
    assert accepted_after_close == []


def _noop() -> None:
    pass


# ---- a lost wake-up in the sync loop's self-pipe ---------------------------------------------
#
# A wake-up racing with the drain of the self-pipe (its byte read by that same
# drain) once left the "armed" flag set over an empty pipe, and every later
# call_soon_threadsafe skipped its byte: the loop slept until a timer fired.


class _RecvRacer:
    """The self-pipe reader, with one wake-up from "another thread" during the drain."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._real = loop._self_reader
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def recv(self, size: int) -> bytes:
        data = self._real.recv(size)
        if data and not self.raced:
            # Exactly what call_soon_threadsafe does in another thread that
            # saw the loop about to park, interleaved at the worst moment.
            self.raced = True
            self._loop._write_to_self()
        return data


def test_sync_loop_self_pipe_wake_up_is_not_lost_after_a_racing_wake_up():
    loop = trio_asyncio.new_event_loop()
    try:
        racer = loop._self_reader = _RecvRacer(loop)

        async def scenario() -> bool:
            # One wake-up through the pipe, raced by the thread above ...
            await asyncio.wrap_future(_call_later_from_thread(loop, 0.05))
            assert racer.raced
            # ... then a plain one: the loop is parked with no timer, and only
            # this thread's call may wake it (the safety timer says it didn't).
            safety = loop.call_later(3.0, lambda: None)
            started = time.monotonic()
            await asyncio.wrap_future(_call_later_from_thread(loop, 0.05))
            safety.cancel()
            return time.monotonic() - started < 2.0

        assert loop.run_until_complete(scenario())
    finally:
        loop._self_reader = getattr(loop._self_reader, "_real", loop._self_reader)
        loop.close()


def _call_later_from_thread(loop: Any, delay: float) -> Any:
    """From a new thread, after *delay*: call_soon_threadsafe a callback; its future."""
    import concurrent.futures

    future: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        time.sleep(delay)
        loop.call_soon_threadsafe(future.set_result, None)

    thread = threading.Thread(target=run, name="late caller")
    thread.start()
    future.add_done_callback(lambda _: thread.join())
    return future


# ---- loops in worker threads ---------------------------------------------------------------


class Mesh:
    """Loops in several threads that post work to each other."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.loops: dict[int, Any] = {}
        self.registered = threading.Barrier(len(kinds))
        self.finished = threading.Barrier(len(kinds))
        self.reports: dict[int, dict[str, Any]] = {}
        self.errors: list[BaseException] = []

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._thread_main, args=(i,), name=f"loop-thread-{i}")
            for i in range(len(self.kinds))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 2)
            assert not thread.is_alive(), f"{thread.name} did not finish"
        if self.errors:
            raise self.errors[0]

    def _thread_main(self, index: int) -> None:
        try:
            if self.kinds[index] == "trio":
                trio.run(self._trio_main, index)
            else:
                loop = trio_asyncio.new_event_loop()
                try:
                    loop.run_until_complete(self._asyncio_main(index, loop, None))
                finally:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()
        except BaseException as exc:
            self.errors.append(exc)
            self.registered.abort()
            self.finished.abort()

    async def _trio_main(self, index: int) -> None:
        async with trio_asyncio.open_loop() as loop:
            await aio_as_trio(self._asyncio_main)(index, loop, trio.lowlevel.current_trio_token())

    async def _wait_barrier(self, barrier: threading.Barrier) -> None:
        # In a thread, so our loop keeps serving the others meanwhile.
        await trio_as_aio(trio.to_thread.run_sync)(barrier.wait, TIMEOUT)

    async def _asyncio_main(self, index: int, loop: Any, outer_token: Any) -> None:
        report: dict[str, Any] = self.reports.setdefault(index, {})
        self.loops[index] = loop
        await self._wait_barrier(self.registered)

        # asyncio work, on this loop only.
        async def square(n: int) -> int:
            await asyncio.sleep(0.001)
            return n * n

        report["squares"] = await asyncio.gather(*(square(n) for n in range(20)))

        # Trio work: in this thread's Trio run, which knows this loop.
        async def in_trio() -> tuple[Any, ...]:
            await trio.sleep(0.001)
            return (
                sniffio.current_async_library(),
                trio_asyncio.current_loop.get() is loop,
                threading.get_ident(),
                trio.lowlevel.current_trio_token(),
            )

        flavour, right_loop, ident, token = await trio_as_aio(in_trio)()
        report["trio"] = (flavour, right_loop, ident == threading.get_ident())
        report["own trio run"] = outer_token is None or token is outer_token
        report["token"] = token

        # Post to every other loop, both ways, many times.
        async def where(n: int) -> tuple[int, int]:
            await asyncio.sleep(0)
            return n, threading.get_ident()

        answers = collections.defaultdict(list)
        for other, other_loop in self.loops.items():
            if other == index:
                continue
            futures = [
                asyncio.wrap_future(asyncio.run_coroutine_threadsafe(where(n), other_loop))
                for n in range(50)
            ]
            answers[other] = await asyncio.gather(*futures)
            arrived = loop.create_future()
            counter = [0]

            def count_back(counter: list[int] = counter, arrived: Any = arrived) -> None:
                counter[0] += 1
                if counter[0] == 50:
                    arrived.set_result(None)

            for _ in range(50):
                other_loop.call_soon_threadsafe(loop.call_soon_threadsafe, count_back)
            await asyncio.wait_for(arrived, TIMEOUT)
        report["answers"] = dict(answers)
        report["ident"] = threading.get_ident()
        await self._wait_barrier(self.finished)


@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param(["sync"] * 4, id="sync-loops"),
        pytest.param(["trio"] * 4, id="trio-loops"),
        pytest.param(["sync", "trio", "sync", "trio"], id="mixed"),
    ],
)
def test_loops_in_several_threads_at_once(kinds):
    mesh = Mesh(kinds)
    mesh.run()
    idents = {index: report["ident"] for index, report in mesh.reports.items()}
    assert len(set(idents.values())) == len(kinds)
    tokens = [report["token"] for report in mesh.reports.values()]
    assert len({id(token) for token in tokens}) == len(kinds), "a Trio run was shared"
    for index, report in mesh.reports.items():
        assert report["squares"] == [n * n for n in range(20)]
        assert report["trio"] == ("trio", True, True)
        assert report["own trio run"]
        for other, answers in report["answers"].items():
            assert answers == [(n, idents[other]) for n in range(50)]
        assert set(report["answers"]) == set(idents) - {index}


def test_sync_loops_in_threads_run_repeatedly_and_keep_their_trio_part():
    # Each thread runs its loop several times; the Trio guest run (and a Trio
    # task started in the first run) lives across runs, in its own thread.
    threads = 4
    runs = 5

    def thread_main(index: int) -> None:
        loop = trio_asyncio.new_event_loop()
        try:
            seen: list[int] = []
            box: dict[str, Any] = {}

            async def trio_counter() -> None:
                box["event"] = trio.Event()
                while True:
                    await box["event"].wait()
                    box["event"] = trio.Event()
                    seen.append(threading.get_ident())

            async def start() -> None:
                loop.run_trio_task(trio_counter)
                await trio_as_aio(trio.sleep)(0.01)

            async def poke() -> None:
                await trio_as_aio(_set_event)(box)
                await trio_as_aio(trio.sleep)(0.001)

            loop.run_until_complete(start())
            for _ in range(runs):
                loop.run_until_complete(poke())
                time.sleep(0.001)  # plain code between runs
                assert sniffio.thread_local.name is None
            assert seen == [threading.get_ident()] * runs
        finally:
            loop.close()

    workers = Workers(threads, thread_main)
    workers.start()
    workers.join_blocking()


async def _set_event(box: dict[str, Any]) -> None:
    box["event"].set()


# ---- Trio work submitted from a foreign thread ---------------------------------------------


@pytest.mark.parametrize("method", ["run_trio", "run_trio_task"])
def test_sync_loop_refuses_trio_work_from_a_foreign_thread(method: str) -> None:
    # While the loop runs, its Trio guest run belongs to the loop's thread:
    # started from another thread it would be abandoned half-way. The call
    # fails at once, and the loop (and its Trio part) work normally after.
    loop = trio_asyncio.new_event_loop()
    errors: list[BaseException] = []

    def from_other_thread() -> None:
        try:
            getattr(loop, method)(trio.sleep, 0)
        except BaseException as exc:
            errors.append(exc)

    async def main() -> str:
        await loop.run_in_executor(None, from_other_thread)
        return await trio_as_aio(_trio_identity)("still fine")

    try:
        assert loop.run_until_complete(main()) == "still fine"
    finally:
        loop.close()
    [error] = errors
    assert isinstance(error, RuntimeError)
    assert f"Non-thread-safe operation {method}()" in str(error)


async def _trio_identity(value: Any) -> Any:
    await trio.sleep(0)
    return value
