"""The churn: everything the soak creates and destroys over and over, on our loop.

Two threads churn at once until the deadline:

* the **main thread** runs one long ``trio.run`` with a *host* loop
  (``open_loop()``) whose echo servers take connections from everyone. In it,
  asyncio workers make connections of the four kinds, spawn subprocesses,
  run executor jobs (default executor and ``TrioExecutor``), call into Trio
  (``trio_as_aio``) and schedule timers; Trio tasks call into asyncio
  (``aio_as_trio``) and open and close nested ``open_loop()`` blocks, each
  with a little work inside;
* the **sync thread** creates sync-mode loops (``new_event_loop()``,
  ``run_until_complete``, the asyncio.run-style shutdown, ``close``), each
  starting echo servers of its own and making connections to them and to
  the host's, with executor jobs, an occasional subprocess and, every few
  loops, Trio work in the loop's guest run; between loops it sometimes runs
  a whole ``trio_asyncio.run()``.

Everything is paced (:class:`Pacer`), so that the load is the same from the
first minute to the last and on any machine fast enough: RSS is then
compared under the same load, and one kind of churn cannot starve another.
The host's connection workers, which do most of the work, share one pacer
whose rate is ``--connection-rate`` (0: as fast as they go).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

import trio_asyncio
from soak.echo import KINDS, EchoServers, Endpoints, connect_once, start_echo_servers
from soak.state import SoakState

# ---- how much of what (per second, at most) ----------------------------------

#: Concurrent connection workers per kind in the host loop.
HOST_CONNECTION_WORKERS = 6
#: Connections per second of those workers together (the --connection-rate
#: default). The short-lived loops add about 250/s of their own.
HOST_CONNECTION_RATE = 1000.0
#: Nested open_loop() blocks per second.
OPEN_LOOP_RATE = 25.0
#: Sync-mode loops per second, and concurrent clients in each.
SYNC_LOOP_RATE = 15.0
SYNC_CLIENTS = 4
#: Connections each sync-loop client makes (alternating its own servers and the host's).
SYNC_CONNECTIONS_PER_CLIENT = 4
#: Whole trio_asyncio.run() calls per second.
RUN_RATE = 4.0
#: Subprocesses per second from the host loop (sync loops add one every other loop).
SUBPROCESS_RATE = 4.0
#: Executor batches per second in the host loop (each: 4 default + 4 TrioExecutor jobs).
EXECUTOR_BATCH_RATE = 10.0
#: Cross-calls per second, each direction, in batches of CROSS_BATCH.
CROSS_CALL_RATE = 500.0
CROSS_BATCH = 25
#: Timer rounds per second (each: 20 call_later, half cancelled, and 20 call_soon).
TIMER_ROUND_RATE = 20.0

#: After the deadline, how long workers may take to finish what they are doing.
GRACE = 60.0
#: A sync loop whose work takes longer than this is stuck: an error.
SYNC_LOOP_TIMEOUT = 60.0


class Pacer:
    """At most *rate* operations per second: :meth:`delay` says how long to wait before the next.

    A pacer that has fallen behind (a busy machine) catches up by at most one
    second's worth of operations, not in a burst.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.n = 0

    def delay(self) -> float:
        self.n += 1
        now = time.monotonic()
        due = self.start + self.n / self.rate
        if due < now - 1.0:
            self.start = now - 1.0 - self.n / self.rate
            due = now - 1.0
        return max(0.0, due - now)


# ---- small operations shared by both drivers --------------------------------

_TRUE = shutil.which("true")
_ECHO = shutil.which("echo")


def _job(x: int) -> int:
    """An executor job: a short sleep, so that several run at once and need several threads."""
    time.sleep(0.0005)
    return x * 2


async def _trio_noop(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x


async def _aio_noop(x: int) -> int:
    return x


async def spawn_once(state: SoakState, i: int) -> None:
    """One subprocess: ``true`` with no pipes, or ``echo`` read through a pipe, in turn."""
    if i % 2 == 0 or _ECHO is None:
        argv = [_TRUE] if _TRUE else [sys.executable, "-c", "pass"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        returncode = await proc.wait()
        out = b"soak\n"
    else:
        proc = await asyncio.create_subprocess_exec(
            _ECHO, "soak", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate()
        returncode = proc.returncode  # type: ignore[assignment]
    if returncode != 0 or out != b"soak\n":
        raise RuntimeError(f"subprocess: exit status {returncode}, output {out!r}")
    state.add("subprocesses")


async def executor_jobs(state: SoakState, n: int, trio_executor: bool) -> None:
    """*n* jobs at once on the default executor, and *n* on a new TrioExecutor if asked."""
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(None, _job, k) for k in range(n)]
    executor = trio_asyncio.TrioExecutor(max_workers=2) if trio_executor else None
    if executor is not None:
        futures += [loop.run_in_executor(executor, _job, k) for k in range(n)]
    try:
        results = await asyncio.gather(*futures)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
    if results != [k * 2 for k in range(n)] * (2 if trio_executor else 1):
        raise RuntimeError(f"executor jobs: wrong results {results!r}")
    state.add("exec_default", n)
    if trio_executor:
        state.add("exec_trio", n)


async def timer_round(state: SoakState, n: int = 20) -> None:
    """*n* timers over the next 20 ms (half of them cancelled) and a chain of *n* call_soon."""
    loop = asyncio.get_running_loop()
    handles = [loop.call_later(random.uniform(0.0, 0.02), _ignore) for _ in range(n)]
    for handle in handles[::2]:
        handle.cancel()
    done: asyncio.Future[None] = loop.create_future()

    def step(left: int) -> None:
        if left:
            loop.call_soon(step, left - 1)
        else:
            _resolve(done)

    loop.call_soon(step, n - 1)
    await done
    state.add("timers", n)
    state.add("call_soon", n)


def _ignore() -> None:
    pass


def _resolve(future: asyncio.Future[None]) -> None:
    """Resolve *future* unless its waiter was cancelled meanwhile (at the deadline's grace end)."""
    if not future.done():
        future.set_result(None)


async def little_work(state: SoakState, endpoints: Endpoints, i: int) -> None:
    """What a short-lived loop does in its life (asyncio side): a bit of everything.

    A call_soon; every other loop a connection to the host's servers; every
    8th loop a default-executor job (so that the loop creates, and on
    closing shuts down, an executor of its own); every 4th a cross-call into
    Trio.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.call_soon(_resolve, done)
    await done
    state.add("call_soon")
    if i % 2 == 0:
        kind = KINDS[(i // 2) % len(KINDS)]
        await connect_once(kind, endpoints)
        state.add(f"conn_{kind}")
    if i % 8 == 0:
        await executor_jobs(state, 1, trio_executor=False)
    if i % 4 == 0:
        await trio_asyncio.trio_as_aio(_trio_noop)(i)
        state.add("cross_trio_as_aio")


# ---- the Trio-hosted churn (main thread) ---------------------------------------


async def _aio_repeat(
    state: SoakState,
    where: str,
    operation: Callable[[int], Awaitable[None]],
    rate: float | None = None,
) -> None:
    """asyncio side: ``await operation(i)`` until the deadline, recording failures."""
    pacer = Pacer(rate) if rate else None
    i = 0
    while state.keep_going():
        try:
            await operation(i)
        except Exception as exc:
            state.record_error(where, exc)
            await asyncio.sleep(0.1)  # no error storm
        i += 1
        if pacer is not None:
            await asyncio.sleep(pacer.delay())


async def _trio_repeat(
    state: SoakState,
    where: str,
    operation: Callable[[int], Awaitable[None]],
    rate: float,
) -> None:
    """Trio side: ``await operation(i)`` until the deadline, paced, recording failures."""
    pacer = Pacer(rate)
    i = 0
    while state.keep_going():
        try:
            await operation(i)
        except Exception as exc:
            state.record_error(where, exc)
            await trio.sleep(0.1)
        i += 1
        await trio.sleep(pacer.delay())


async def _connection_worker(
    state: SoakState, kind: str, endpoints: Endpoints, pacer: Pacer | None
) -> None:
    async def one(i: int) -> None:
        if pacer is not None:
            await asyncio.sleep(pacer.delay())
        await connect_once(kind, endpoints)
        state.add(f"conn_{kind}")

    await _aio_repeat(state, f"host {kind} connection", one)


async def _trio_as_aio_calls(i: int, state: SoakState) -> None:
    call = trio_asyncio.trio_as_aio(_trio_noop)
    for k in range(CROSS_BATCH):
        if await call(k) != k:
            raise RuntimeError("trio_as_aio: wrong result")
    state.add("cross_trio_as_aio", CROSS_BATCH)


async def _aio_as_trio_calls(i: int, state: SoakState) -> None:
    call = trio_asyncio.aio_as_trio(_aio_noop)
    for k in range(CROSS_BATCH):
        if await call(k) != k:
            raise RuntimeError("aio_as_trio: wrong result")
    state.add("cross_aio_as_trio", CROSS_BATCH)


async def _nested_open_loop(i: int, state: SoakState, endpoints: Endpoints) -> None:
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(state.exception_handler("nested open_loop"))
        await trio_asyncio.aio_as_trio(little_work)(state, endpoints, i)
    state.add("loops_open_loop")


async def _host_workers(state: SoakState, endpoints: Endpoints, connection_rate: float) -> None:
    """Start every worker of the host loop and wait until they have all stopped."""
    aio = trio_asyncio.aio_as_trio
    # One pacer for all the connection workers (they all run in the host loop).
    pacer = Pacer(connection_rate) if connection_rate > 0 else None

    def repeat(where: str, op: Callable[[int], Awaitable[None]], rate: float) -> Any:
        return aio(_aio_repeat)(state, where, op, rate)

    async with trio.open_nursery() as nursery:
        for kind in KINDS:
            for _ in range(HOST_CONNECTION_WORKERS):
                nursery.start_soon(aio(_connection_worker), state, kind, endpoints, pacer)
        nursery.start_soon(
            repeat, "host subprocess", lambda i: spawn_once(state, i), SUBPROCESS_RATE
        )
        nursery.start_soon(
            repeat,
            "host executor",
            lambda i: executor_jobs(state, 4, trio_executor=True),
            EXECUTOR_BATCH_RATE,
        )
        nursery.start_soon(repeat, "host timers", lambda i: timer_round(state), TIMER_ROUND_RATE)
        nursery.start_soon(
            repeat,
            "trio_as_aio",
            lambda i: _trio_as_aio_calls(i, state),
            CROSS_CALL_RATE / CROSS_BATCH,
        )
        nursery.start_soon(
            _trio_repeat,
            state,
            "aio_as_trio",
            lambda i: _aio_as_trio_calls(i, state),
            CROSS_CALL_RATE / CROSS_BATCH,
        )
        nursery.start_soon(
            _trio_repeat,
            state,
            "nested open_loop",
            lambda i: _nested_open_loop(i, state, endpoints),
            OPEN_LOOP_RATE,
        )


async def trio_hosted_churn(
    state: SoakState,
    socket_dir: str,
    connection_rate: float,
    start_sync_thread: Callable[[Endpoints], threading.Thread],
) -> None:
    """The main thread's ``trio.run`` body: the host loop, its workers, and the sync thread.

    The sync thread is started once the host's servers listen (it connects to
    them), and the servers are closed only after it has stopped.
    """
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(state.exception_handler("host loop"))
        servers: EchoServers = await trio_asyncio.aio_as_trio(start_echo_servers)(
            socket_dir, "host"
        )
        sync_thread = start_sync_thread(servers.endpoints)
        try:
            with trio.move_on_after(state.remaining() + GRACE) as scope:
                await _host_workers(state, servers.endpoints, connection_rate)
            if scope.cancelled_caught:
                state.record_error(
                    "host loop", message=f"workers still busy {GRACE:.0f} s after the deadline"
                )
            with trio.move_on_after(GRACE):
                while sync_thread.is_alive():
                    await trio.sleep(0.05)
        finally:
            await trio_asyncio.aio_as_trio(servers.close)()


# ---- the sync-mode churn (its own thread) ---------------------------------------


async def _sync_loop_body(state: SoakState, host: Endpoints, socket_dir: str, i: int) -> None:
    """The work of one sync-mode loop."""
    loop = asyncio.get_running_loop()
    own = await start_echo_servers(socket_dir, f"sync{i}")
    try:

        async def client(c: int) -> None:
            for r in range(SYNC_CONNECTIONS_PER_CLIENT):
                n = (i * SYNC_CLIENTS + c) * SYNC_CONNECTIONS_PER_CLIENT + r
                kind = KINDS[n % len(KINDS)]
                target = own.endpoints if (n // len(KINDS)) % 2 == 0 else host
                try:
                    await connect_once(kind, target)
                except Exception as exc:
                    state.record_error(f"sync {kind} connection", exc)
                else:
                    state.add(f"conn_{kind}")
                    state.add("conn_from_sync")

        await asyncio.gather(*(client(c) for c in range(SYNC_CLIENTS)))
        await executor_jobs(state, 2, trio_executor=i % 4 == 0)
        if i % 2 == 0:
            await spawn_once(state, i // 2)
        if i % 4 == 2:
            # Trio work in the loop's guest run (started on first use).
            await little_work(state, host, 4 * i)
        done: asyncio.Future[None] = loop.create_future()
        loop.call_soon(_resolve, done)
        await done
        state.add("call_soon")
    finally:
        await own.close()


def _one_sync_loop(state: SoakState, host: Endpoints, socket_dir: str, i: int) -> None:
    """One sync-mode loop, from new_event_loop() to close(), as asyncio.run() would run it.

    Every other one goes through ``asyncio.Runner`` (3.11+) with our loop factory.
    """
    body = _sync_loop_body(state, host, socket_dir, i)
    if i % 2 == 1 and sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=_sync_loop_factory(state)) as runner:
            runner.run(asyncio.wait_for(body, SYNC_LOOP_TIMEOUT))
        state.add("loops_sync")
        return
    loop = _sync_loop_factory(state)()
    try:
        loop.run_until_complete(asyncio.wait_for(body, SYNC_LOOP_TIMEOUT))
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
    state.add("loops_sync")


def _sync_loop_factory(state: SoakState) -> Callable[[], asyncio.AbstractEventLoop]:
    def factory() -> asyncio.AbstractEventLoop:
        loop = trio_asyncio.new_event_loop()
        loop.set_exception_handler(state.exception_handler("sync loop"))
        return loop

    return factory


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


async def _run_body(state: SoakState, host: Endpoints, i: int) -> None:
    """The Trio function of one whole ``trio_asyncio.run()``."""
    await trio_asyncio.aio_as_trio(_little_work_handled)(state, host, i, "run() loop")


async def _little_work_handled(state: SoakState, host: Endpoints, i: int, where: str) -> None:
    asyncio.get_running_loop().set_exception_handler(state.exception_handler(where))
    await little_work(state, host, i)


def sync_churn(state: SoakState, host: Endpoints, socket_dir: str) -> None:
    """The sync thread's body: sync-mode loops, and now and then a whole trio_asyncio.run()."""
    loop_pacer = Pacer(SYNC_LOOP_RATE)
    run_pacer = Pacer(RUN_RATE)
    next_run = time.monotonic()
    i = 0
    while state.keep_going():
        try:
            _one_sync_loop(state, host, socket_dir, i)
        except Exception as exc:
            state.record_error("sync loop", exc)
        if time.monotonic() >= next_run and state.keep_going():
            try:
                trio_asyncio.run(_run_body, state, host, i)
            except Exception as exc:
                state.record_error("trio_asyncio.run", exc)
            else:
                state.add("loops_run")
            next_run = time.monotonic() + run_pacer.delay()
        i += 1
        time.sleep(loop_pacer.delay())


def run_churn(
    state: SoakState, socket_dir: str, connection_rate: float = HOST_CONNECTION_RATE
) -> None:
    """Churn until the state's deadline (both threads), then return once all has stopped.

    *connection_rate* caps the host's connection workers (0: no cap).
    """
    threads: list[threading.Thread] = []

    def start_sync_thread(host: Endpoints) -> threading.Thread:
        def body() -> None:
            try:
                sync_churn(state, host, socket_dir)
            except BaseException as exc:  # pragma: no cover - recorded, then the run fails
                state.record_error("sync thread", exc)
                state.stop.set()

        thread = threading.Thread(target=body, name="soak sync churn")
        thread.start()
        threads.append(thread)
        return thread

    try:
        trio.run(trio_hosted_churn, state, socket_dir, connection_rate, start_sync_thread)
    except BaseException:
        state.stop.set()
        raise
    finally:
        for thread in threads:
            thread.join()
