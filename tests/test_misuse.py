"""Misuse of the public API: every wrong call fails at once, with a clear error.

The table :data:`PROBES` lists wrong calls: ``None`` or an int where a
callable is expected, a coroutine function where a callback is expected,
invalid delays, non-socket and closed-socket arguments, a closed loop, the
wrong thread. Each probe runs on our loops (the sync loop and the Trio-hosted
loop) *and* on :class:`asyncio.SelectorEventLoop`, in the same test:

* ``compare="message"``: the same exception type and message as the stdlib;
* ``compare="type"``: the same exception type (the message names an object
  whose repr differs between loops, or ours adds advice to the stdlib's);
* ``compare="ours"``: a deliberate difference (``why`` says which): only our
  outcome is checked, against ``expect`` and ``match``.

To add a probe, append a ``Probe`` to the table. :func:`test_every_public_name_is_probed`
fails when a public method or function has no probe (or an entry in
``NOT_PROBED`` saying why).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import inspect
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio

# How long an awaited misuse may take before we call it "blocked".
BLOCKED_AFTER = 2.0
KINDS = ("sync", "trio")


# ---- outcomes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a call did: raised (type and message), returned, or blocked."""

    kind: str  # "raised", "returned", "blocked", "suspended"
    type: type[BaseException] | None = None
    message: str = ""

    def __str__(self) -> str:
        if self.kind == "raised":
            assert self.type is not None
            return f"{self.type.__name__}({self.message!r})"
        return self.kind


class Env:
    """What a probe may use: the loop, and fresh objects cleaned up afterwards."""

    def __init__(self, loop: Any, kind: str) -> None:
        self.loop = loop
        self.kind = kind
        self._closers: list[Callable[[], object]] = []

    def coro(self) -> Any:
        async def sleeper() -> None:
            await asyncio.sleep(0)

        coro = sleeper()
        self._closers.append(coro.close)
        return coro

    def socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, blocking: bool = False
    ) -> socket.socket:
        sock = socket.socket(family, type)
        sock.setblocking(blocking)
        self._closers.append(sock.close)
        return sock

    def closed_socket(self) -> socket.socket:
        sock = socket.socket()
        sock.close()
        return sock

    def socketpair(self) -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        for sock in (a, b):
            sock.setblocking(False)
            self._closers.append(sock.close)
        return a, b

    def text_file(self) -> Any:
        file = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by close()
        self._closers.append(file.close)
        return file

    def binary_file(self) -> Any:
        file = tempfile.TemporaryFile("w+b")  # noqa: SIM115 - closed by close()
        file.write(b"data")
        file.seek(0)
        self._closers.append(file.close)
        return file

    def pipe(self) -> tuple[Any, Any]:
        r, w = os.pipe()
        reader, writer = os.fdopen(r, "rb", 0), os.fdopen(w, "wb", 0)
        self._closers += [reader.close, writer.close]
        return reader, writer

    def later(self, closer: Callable[[], object]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()


def _capture(call: Callable[[], Any]) -> tuple[Outcome, Any]:
    try:
        value = call()
    except Exception as exc:
        return Outcome("raised", type(exc), str(exc)), None
    return Outcome("returned"), value


def _first_step(awaitable: Any) -> Outcome:
    """Outside a running loop: run a coroutine's first step (enough to reach its checks)."""
    if not asyncio.iscoroutine(awaitable):
        _dispose(awaitable)
        return Outcome("returned")
    try:
        awaitable.send(None)
    except StopIteration:
        return Outcome("returned")
    except Exception as exc:
        return Outcome("raised", type(exc), str(exc))
    awaitable.close()
    return Outcome("suspended")


def _dispose(value: Any) -> None:
    """Undo whatever a misuse that did not raise created."""
    if isinstance(value, (asyncio.Handle, asyncio.Future)):
        value.cancel()
    elif asyncio.iscoroutine(value):
        value.close()
    elif isinstance(value, tuple):
        for item in value:
            _dispose(item)
    elif hasattr(value, "close") and not isinstance(value, socket.socket):
        with contextlib.suppress(Exception):
            value.close()


async def _await_misuse(env: Env, call: Callable[[Env], Any]) -> Outcome:
    outcome, value = _capture(lambda: call(env))
    if outcome.kind != "returned" or not inspect.isawaitable(value):
        _dispose(value)
        return outcome
    task = asyncio.ensure_future(value)
    try:
        result = await asyncio.wait_for(asyncio.shield(task), BLOCKED_AFTER)
    except asyncio.TimeoutError:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return Outcome("blocked")
    except Exception as exc:
        return Outcome("raised", type(exc), str(exc))
    _dispose(result)
    return Outcome("returned")


def _in_thread(env: Env, call: Callable[[Env], Any]) -> Outcome:
    box: list[Outcome] = []

    def run() -> None:
        outcome, value = _capture(lambda: call(env))
        if outcome.kind == "returned" and inspect.isawaitable(value):
            outcome = _first_step(value)
        else:
            _dispose(value)
        box.append(outcome)

    thread = threading.Thread(target=run, name="misuse")
    thread.start()
    thread.join()
    return box[0]


def run_probe(probe: Probe, kind: str) -> Outcome:
    """Run *probe* on a fresh loop of *kind* ("stdlib", "sync" or "trio")."""
    if kind == "trio":
        return _run_probe_in_trio(probe)
    if kind == "stdlib":
        # The reference may damage the thread's state (3.13's run_forever() from a
        # wrong thread leaves the loop's async-generator hooks installed): undo it,
        # so that the leak guard judges only our loops.
        hooks = sys.get_asyncgen_hooks()
        try:
            return _run_probe_on(probe, kind)
        finally:
            sys.set_asyncgen_hooks(*hooks)
    return _run_probe_on(probe, kind)


def _run_probe_on(probe: Probe, kind: str) -> Outcome:
    loop = asyncio.SelectorEventLoop() if kind == "stdlib" else trio_asyncio.new_event_loop()
    env = Env(loop, kind)
    try:
        loop.set_debug(probe.debug)
        if probe.setup is not None:
            probe.setup(loop, kind)
        if probe.state == "closed":
            loop.close()
        if probe.state in ("closed", "stopped"):
            outcome, value = _capture(lambda: probe.call(env))
            if outcome.kind == "returned" and inspect.isawaitable(value):
                return _first_step(value)
            _dispose(value)
            return outcome

        async def main() -> Outcome:
            if probe.state == "other thread":
                return await loop.run_in_executor(None, _in_thread, env, probe.call)
            return await _await_misuse(env, probe.call)

        return loop.run_until_complete(main())
    finally:
        env.close()
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()


def _run_probe_in_trio(probe: Probe) -> Outcome:
    if probe.state == "closed":
        closed: list[Any] = []

        async def grab() -> None:
            async with trio_asyncio.open_loop() as loop:
                loop.set_debug(probe.debug)
                closed.append(loop)

        trio.run(grab)
        env = Env(closed[0], "trio")
        try:
            outcome, value = _capture(lambda: probe.call(env))
            if outcome.kind == "returned" and inspect.isawaitable(value):
                return _first_step(value)
            _dispose(value)
            return outcome
        finally:
            env.close()

    async def main() -> Outcome:
        async with trio_asyncio.open_loop() as loop:
            env = Env(loop, "trio")
            try:
                loop.set_debug(probe.debug)
                if probe.setup is not None:
                    probe.setup(loop, "trio")
                if probe.state == "other thread":
                    return await trio.to_thread.run_sync(_in_thread, env, probe.call)
                assert probe.state == "running", probe.state
                return await aio_as_trio(_await_misuse)(env, probe.call)
            finally:
                env.close()

    return trio.run(main)  # type: ignore[no-any-return]


# ---- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One wrong call. ``id`` starts with the probed name: ``"call_soon: None"``."""

    id: str
    call: Callable[[Env], Any]
    expect: type[BaseException] | None  # None: a control, which must not raise
    compare: str = "message"  # "message", "prefix", "type" or "ours"
    match: str | None = None  # a regex our message must contain
    state: str = "running"  # "running", "stopped", "closed" or "other thread"
    debug: bool = False
    kinds: tuple[str, ...] = KINDS
    why: str = ""  # why ours differs (compare="ours")
    bug: str | None = None  # a known bug: strict xfail
    hangs: bool = False  # with bug: too harmful to run (xfail, run=False)
    stdlib_since: tuple[int, int] = (3, 0)  # compare only from this Python on
    setup: Callable[[Any, str], None] | None = None  # setup(loop, kind) before the call

    @property
    def name(self) -> str:
        return self.id.split(":")[0]


def _noop() -> None:
    pass


async def _coro_fn() -> None:
    pass


PROBES: list[Probe] = []


def probe(id: str, call: Callable[[Env], Any], expect: Any, **kw: Any) -> None:
    PROBES.append(Probe(id, call, expect, **kw))


STRICTER = (
    "stricter than the stdlib, which checks the callback only in debug mode (the check "
    "costs one callable() here)"
)
ALWAYS_THREAD_CHECKED = (
    "documented difference: ours always check the thread while the loop runs, the stdlib "
    "only in debug mode"
)
WRONG_THREAD = (
    r"Non-thread-safe operation \w+\(\) invoked on an event loop other than the current one"
)
SOCK_REPR = r"<socket\.socket fd=\d+"
ctx = ssl.create_default_context()
PF = asyncio.Protocol
DPF = asyncio.DatagramProtocol
SPF = asyncio.SubprocessProtocol
LOCAL = ("127.0.0.1", 9)

# fmt: off

# -- scheduling: call_soon, call_soon_threadsafe, call_later, call_at
for method in ("call_soon", "call_soon_threadsafe"):

    def m(e: Env, method: str = method) -> Any:
        return getattr(e.loop, method)

    probe(f"{method}: None", lambda e, m=m: m(e)(None), TypeError, debug=True)
    probe(f"{method}: an int", lambda e, m=m: m(e)(42), TypeError, debug=True)
    probe(f"{method}: a coroutine", lambda e, m=m: m(e)(e.coro()), TypeError, debug=True)
    probe(f"{method}: a coroutine function", lambda e, m=m: m(e)(_coro_fn), TypeError, debug=True)
    probe(f"{method}: None, not in debug mode", lambda e, m=m: m(e)(None), TypeError, compare="ours", why=STRICTER, match=rf"a callable object was expected by {method}\(\), got None")
    probe(f"{method}: closed loop", lambda e, m=m: m(e)(_noop), RuntimeError, state="closed")
    probe(f"{method}: a coroutine function, not in debug mode", lambda e, m=m: m(e)(_coro_fn), None, why="accepted, as by the stdlib: the check would cost on the hot path")
probe("call_soon: wrong thread", lambda e: e.loop.call_soon(_noop), RuntimeError, state="other thread", debug=True, compare="type", match=WRONG_THREAD)
probe("call_soon: wrong thread, not in debug mode", lambda e: e.loop.call_soon(_noop), RuntimeError, state="other thread", compare="ours", why=ALWAYS_THREAD_CHECKED, match=WRONG_THREAD)
probe("call_soon: stopped loop, None", lambda e: e.loop.call_soon(None), TypeError, state="stopped", kinds=("sync",), debug=True)
probe("call_soon_threadsafe: wrong thread is fine", lambda e: e.loop.call_soon_threadsafe(_noop), None, state="other thread", debug=True)
probe("call_later: delay None", lambda e: e.loop.call_later(None, _noop), TypeError, stdlib_since=(3, 11))
probe("call_later: delay a str", lambda e: e.loop.call_later("1", _noop), TypeError)
probe("call_later: a negative delay is fine", lambda e: e.loop.call_later(-1, _noop), None)
probe("call_later: callback None", lambda e: e.loop.call_later(1, None), TypeError, debug=True)
probe("call_later: a coroutine function", lambda e: e.loop.call_later(1, _coro_fn), TypeError, debug=True)
probe("call_later: callback an int, not in debug mode", lambda e: e.loop.call_later(1, 42), TypeError, compare="ours", why=STRICTER)
probe("call_later: closed loop", lambda e: e.loop.call_later(1, _noop), RuntimeError, state="closed")
probe("call_later: wrong thread", lambda e: e.loop.call_later(1, _noop), RuntimeError, state="other thread", debug=True, compare="type", match=WRONG_THREAD)
probe("call_at: when None", lambda e: e.loop.call_at(None, _noop), TypeError, stdlib_since=(3, 11))
probe("call_at: callback None", lambda e: e.loop.call_at(1, None), TypeError, debug=True)
probe("call_at: callback an int, not in debug mode", lambda e: e.loop.call_at(1, 42), TypeError, compare="ours", why=STRICTER)
probe("call_at: closed loop", lambda e: e.loop.call_at(1, _noop), RuntimeError, state="closed")
probe("call_at: wrong thread", lambda e: e.loop.call_at(1, _noop), RuntimeError, state="other thread", debug=True, compare="type", match=WRONG_THREAD)

# -- tasks and futures
probe("create_task: None", lambda e: e.loop.create_task(None), TypeError)
probe("create_task: a coroutine function", lambda e: e.loop.create_task(_coro_fn), TypeError)
probe("create_task: an int", lambda e: e.loop.create_task(42), TypeError)
probe("create_task: closed loop", lambda e: e.loop.create_task(e.coro()), RuntimeError, state="closed")
probe("create_task: wrong thread", lambda e: e.loop.create_task(e.coro()), RuntimeError, state="other thread", debug=True, compare="type", match=r"Non-thread-safe operation create_task\(\)", setup=lambda loop, kind: _quiet_half_made_tasks(loop, kind))
probe("create_future: closed loop is fine", lambda e: e.loop.create_future(), None, state="closed")
probe("set_task_factory: an int", lambda e: e.loop.set_task_factory(42), TypeError)
probe("set_exception_handler: an int", lambda e: e.loop.set_exception_handler(42), TypeError)
probe("default_exception_handler: None", lambda e: e.loop.default_exception_handler(None), AttributeError)
probe("call_exception_handler: an int is logged, not raised", lambda e: e.loop.call_exception_handler(42), None)

# -- executors
probe("run_in_executor: func None", lambda e: e.loop.run_in_executor(None, None), TypeError, debug=True)
probe("run_in_executor: a coroutine function", lambda e: e.loop.run_in_executor(None, _coro_fn), TypeError, debug=True)
probe("run_in_executor: func None, not in debug mode", lambda e: e.loop.run_in_executor(None, None), TypeError, compare="ours", why=STRICTER + "; the stdlib fails later, in the worker thread", match="a callable object was expected")
probe("run_in_executor: executor an int", lambda e: e.loop.run_in_executor(42, _noop), TypeError, compare="ours", why="a TypeError naming the expected type, where the stdlib fails with AttributeError: 'int' object has no attribute 'submit'", match="executor must be an instance of concurrent.futures.Executor")
probe("run_in_executor: closed loop", lambda e: e.loop.run_in_executor(None, _noop), RuntimeError, state="closed")
probe("set_default_executor: an int", lambda e: e.loop.set_default_executor(42), TypeError, stdlib_since=(3, 11))
probe("set_default_executor: None", lambda e: e.loop.set_default_executor(None), TypeError, stdlib_since=(3, 11))
if sys.version_info >= (3, 11):  # 3.10 (stdlib and ours): accepted with a DeprecationWarning
    probe("set_default_executor: a process pool", lambda e: e.loop.set_default_executor(_process_pool(e)), TypeError)
probe("shutdown_default_executor: closed loop is fine", lambda e: e.loop.shutdown_default_executor(), None, state="closed")
probe("shutdown_asyncgens: closed loop is fine", lambda e: e.loop.shutdown_asyncgens(), None, state="closed")


def _quiet_half_made_tasks(loop: Any, kind: str) -> None:
    """The stdlib creates the task before call_soon() refuses the thread: keep it quiet.

    (Ours refuses before creating anything.)
    """
    if kind == "stdlib":
        loop.set_task_factory(_QuietTask)


class _QuietTask(asyncio.Task):  # type: ignore[type-arg]
    def __init__(self, loop: Any, coro: Any, **kwargs: Any) -> None:
        try:
            super().__init__(coro, loop=loop, **kwargs)
        except BaseException:
            self._log_destroy_pending = False
            raise


def _process_pool(env: Env) -> concurrent.futures.Executor:
    pool = concurrent.futures.ProcessPoolExecutor(1)
    env.later(pool.shutdown)
    return pool


# -- running and closing
probe("run_until_complete: an int", lambda e: e.loop.run_until_complete(42), TypeError, state="stopped", kinds=("sync",))
probe("run_until_complete: a future of another loop", lambda e: e.loop.run_until_complete(_foreign_future(e)), ValueError, state="stopped", kinds=("sync",))
probe("run_until_complete: running loop", lambda e: e.loop.run_until_complete(e.coro()), RuntimeError, compare="prefix")
probe("run_until_complete: closed loop", lambda e: e.loop.run_until_complete(e.coro()), RuntimeError, state="closed", kinds=("sync",))
probe("run_until_complete: closed Trio-hosted loop", lambda e: e.loop.run_until_complete(e.coro()), RuntimeError, state="closed", kinds=("trio",))
probe("run_until_complete: wrong thread", lambda e: e.loop.run_until_complete(e.coro()), RuntimeError, state="other thread", compare="prefix")
probe("run_forever: running loop", lambda e: e.loop.run_forever(), RuntimeError, compare="prefix")
probe("run_forever: closed loop", lambda e: e.loop.run_forever(), RuntimeError, state="closed", kinds=("sync",))
probe("run_forever: closed Trio-hosted loop", lambda e: e.loop.run_forever(), RuntimeError, state="closed", kinds=("trio",))
probe("run_forever: wrong thread", lambda e: e.loop.run_forever(), RuntimeError, state="other thread", compare="prefix")
probe("close: running loop", lambda e: e.loop.close(), RuntimeError, compare="prefix")
probe("close: wrong thread", lambda e: e.loop.close(), RuntimeError, state="other thread", compare="prefix")
probe("close: closed loop is fine", lambda e: e.loop.close(), None, state="closed")
probe("stop: closed loop is fine", lambda e: e.loop.stop(), None, state="closed")


def _foreign_future(env: Env) -> asyncio.Future[Any]:
    other = asyncio.SelectorEventLoop()
    env.later(other.close)
    return other.create_future()


# -- watching fds
for method in ("add_reader", "add_writer"):

    def m(e: Env, method: str = method) -> Any:
        return getattr(e.loop, method)

    probe(f"{method}: fd -1", lambda e, m=m: m(e)(-1, _noop), ValueError)
    probe(f"{method}: a str", lambda e, m=m: m(e)("x", _noop), ValueError)
    probe(f"{method}: None", lambda e, m=m: m(e)(None, _noop), ValueError)
    probe(f"{method}: a closed socket", lambda e, m=m: m(e)(e.closed_socket(), _noop), ValueError)
    probe(f"{method}: a regular file", lambda e, m=m: m(e)(e.binary_file(), _noop), PermissionError)
    probe(f"{method}: callback None", lambda e, m=m: m(e)(e.socket(), None), TypeError, compare="ours", why="the stdlib accepts it, and fails when the fd is ready", match=rf"a callable object was expected by {method}\(\)")
    probe(f"{method}: a coroutine function", lambda e, m=m: m(e)(e.socket(), _coro_fn), TypeError, compare="ours", why="the stdlib accepts it, even in debug mode", match=rf"coroutines cannot be used with {method}\(\)")
    probe(f"{method}: closed loop", lambda e, m=m: m(e)(e.socket(), _noop), RuntimeError, state="closed")
    probe(f"{method}: wrong thread", lambda e, m=m: m(e)(e.socket(), _noop), RuntimeError, state="other thread", debug=True, compare="ours", why="the stdlib does not check the thread here, even in debug mode", match=r"Non-thread-safe operation")
for method in ("remove_reader", "remove_writer"):

    def m(e: Env, method: str = method) -> Any:
        return getattr(e.loop, method)

    probe(f"{method}: a str", lambda e, m=m: m(e)("x"), ValueError)
    probe(f"{method}: fd -1", lambda e, m=m: m(e)(-1), ValueError)
    probe(f"{method}: closed loop is fine", lambda e, m=m: m(e)(e.socket()), None, state="closed")
    probe(f"{method}: wrong thread", lambda e, m=m: m(e)(e.socket()), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread here", match=r"Non-thread-safe operation")

# -- low-level socket operations
for method, args in [
    ("sock_recv", (10,)),
    ("sock_recv_into", (bytearray(10),)),
    ("sock_recvfrom", (10,)),
    ("sock_recvfrom_into", (bytearray(10),)),
    ("sock_sendall", (b"x",)),
    ("sock_sendto", (b"x", LOCAL)),
    ("sock_connect", (LOCAL,)),
    ("sock_accept", ()),
]:

    def m(e: Env, method: str = method) -> Any:
        return getattr(e.loop, method)

    since = (3, 11) if method in ("sock_recvfrom", "sock_recvfrom_into", "sock_sendto") else (3, 0)
    probe(f"{method}: an int", lambda e, m=m, args=args: m(e)(42, *args), AttributeError, compare="type", stdlib_since=since)
    probe(f"{method}: a closed socket", lambda e, m=m, args=args: m(e)(e.closed_socket(), *args), OSError, stdlib_since=since)
    probe(f"{method}: a blocking socket", lambda e, m=m, args=args: m(e)(e.socket(blocking=True), *args), ValueError, debug=True, stdlib_since=since)
probe("sock_recv: negative size", lambda e: e.loop.sock_recv(e.socketpair()[0], -1), ValueError)
probe("sock_recv: size a str", lambda e: e.loop.sock_recv(e.socketpair()[0], "x"), TypeError)
probe("sock_recv_into: bytes", lambda e: e.loop.sock_recv_into(e.socketpair()[0], b"xx"), TypeError)
probe("sock_recvfrom_into: None", lambda e: e.loop.sock_recvfrom_into(e.socket(type=socket.SOCK_DGRAM), None), TypeError, stdlib_since=(3, 11))
probe("sock_sendall: a str", lambda e: e.loop.sock_sendall(e.socketpair()[0], "str"), TypeError)
probe("sock_sendall: None", lambda e: e.loop.sock_sendall(e.socketpair()[0], None), TypeError)
probe("sock_sendto: address None", lambda e: e.loop.sock_sendto(e.socket(type=socket.SOCK_DGRAM), b"x", None), TypeError, stdlib_since=(3, 11))
probe("sock_connect: address None", lambda e: e.loop.sock_connect(e.socket(), None), TypeError)
probe("sock_connect: port out of range", lambda e: e.loop.sock_connect(e.socket(), ("127.0.0.1", 99999)), OverflowError)
probe("sock_accept: an unbound socket", lambda e: e.loop.sock_accept(e.socket()), OSError)
probe("sock_recv: closed loop", lambda e: e.loop.sock_recv(e.socketpair()[0], 1), RuntimeError, state="closed")
probe("sock_connect: closed loop", lambda e: e.loop.sock_connect(e.socket(), LOCAL), RuntimeError, state="closed")
probe("sock_recv: wrong thread", lambda e: e.loop.sock_recv(e.socketpair()[0], 1), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread", match=r"Non-thread-safe operation add_reader\(\)")
probe("sock_sendall: wrong thread", lambda e: e.loop.sock_sendall(e.socketpair()[0], bytes(10_000_000)), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread", match=r"Non-thread-safe operation add_writer\(\)")
probe("sock_sendfile: a text file", lambda e: e.loop.sock_sendfile(e.socketpair()[0], e.text_file()), ValueError)
probe("sock_sendfile: a UDP socket", lambda e: e.loop.sock_sendfile(e.socket(type=socket.SOCK_DGRAM), e.binary_file()), ValueError)
probe("sock_sendfile: offset -1", lambda e: e.loop.sock_sendfile(e.socketpair()[0], e.binary_file(), -1), ValueError)
probe("sock_sendfile: offset a str", lambda e: e.loop.sock_sendfile(e.socketpair()[0], e.binary_file(), "x"), TypeError)
probe("sock_sendfile: count 0", lambda e: e.loop.sock_sendfile(e.socketpair()[0], e.binary_file(), 0, 0), ValueError)
probe("sock_sendfile: count a str", lambda e: e.loop.sock_sendfile(e.socketpair()[0], e.binary_file(), 0, "x"), TypeError)
probe("sock_sendfile: a blocking socket", lambda e: e.loop.sock_sendfile(e.socket(blocking=True), e.binary_file()), ValueError, debug=True)

# -- DNS
probe("getaddrinfo: host an int", lambda e: e.loop.getaddrinfo(42, 80), TypeError)
probe("getaddrinfo: family a str", lambda e: e.loop.getaddrinfo("localhost", 80, family="x"), TypeError)
probe("getaddrinfo: closed loop", lambda e: e.loop.getaddrinfo("127.0.0.1", 80), RuntimeError, state="closed")
probe("getnameinfo: None", lambda e: e.loop.getnameinfo(None), TypeError)
probe("getnameinfo: a 1-tuple", lambda e: e.loop.getnameinfo(("127.0.0.1",)), TypeError)

# -- connections and servers
probe("create_connection: no address", lambda e: e.loop.create_connection(PF), ValueError)
probe("create_connection: address and sock", lambda e: e.loop.create_connection(PF, *LOCAL, sock=e.socket()), ValueError)
probe("create_connection: a UDP sock", lambda e: e.loop.create_connection(PF, sock=e.socket(type=socket.SOCK_DGRAM)), ValueError, compare="type", match="A Stream Socket was expected, got " + SOCK_REPR)
probe("create_connection: sock an int", lambda e: e.loop.create_connection(PF, sock=42), AttributeError)
probe("create_connection: a closed sock", lambda e: e.loop.create_connection(PF, sock=e.closed_socket()), OSError)
probe("create_connection: factory an int", lambda e: e.loop.create_connection(42, sock=e.socketpair()[0]), TypeError)
probe("create_connection: server_hostname without ssl", lambda e: e.loop.create_connection(PF, *LOCAL, server_hostname="x"), ValueError)
probe("create_connection: ssl_handshake_timeout without ssl", lambda e: e.loop.create_connection(PF, *LOCAL, ssl_handshake_timeout=1), ValueError)
probe("create_connection: ssl_shutdown_timeout without ssl", lambda e: e.loop.create_connection(PF, *LOCAL, ssl_shutdown_timeout=1), ValueError, stdlib_since=(3, 11))
probe("create_connection: ssl without a host name", lambda e: e.loop.create_connection(PF, sock=e.socketpair()[0], ssl=ctx), ValueError)
probe("create_connection: negative ssl_handshake_timeout", lambda e: e.loop.create_connection(PF, sock=e.socketpair()[0], ssl=ctx, server_hostname="x", ssl_handshake_timeout=-1), ValueError)
probe("create_connection: zero ssl_handshake_timeout", lambda e: e.loop.create_connection(PF, sock=e.socketpair()[0], ssl=ctx, server_hostname="x", ssl_handshake_timeout=0), ValueError)
probe("create_connection: local_addr a str", lambda e: e.loop.create_connection(PF, *LOCAL, local_addr="x"), ValueError)
probe("create_connection: closed loop", lambda e: e.loop.create_connection(PF, *LOCAL), RuntimeError, state="closed")
probe("create_connection: closed loop, a sock", lambda e: e.loop.create_connection(PF, sock=e.socketpair()[0]), RuntimeError, state="closed", compare="ours", why="the stdlib leaks its transport here", match="Event loop is closed")
probe("create_connection: wrong thread, a sock", lambda e: e.loop.create_connection(PF, sock=e.socketpair()[0]), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread", match=WRONG_THREAD)
probe("create_server: no address", lambda e: e.loop.create_server(PF), ValueError)
probe("create_server: address and sock", lambda e: e.loop.create_server(PF, "127.0.0.1", 0, sock=e.socket()), ValueError)
probe("create_server: a UDP sock", lambda e: e.loop.create_server(PF, sock=e.socket(type=socket.SOCK_DGRAM)), ValueError, compare="type", match="A Stream Socket was expected, got " + SOCK_REPR)
probe("create_server: sock an int", lambda e: e.loop.create_server(PF, sock=42), AttributeError)
probe("create_server: ssl_handshake_timeout without ssl", lambda e: e.loop.create_server(PF, "127.0.0.1", 0, ssl_handshake_timeout=1), ValueError)
probe("create_server: backlog a str", lambda e: e.loop.create_server(PF, "127.0.0.1", 0, backlog="x"), TypeError, compare="ours", why="the stdlib leaks the listening socket here", match="cannot be interpreted as an integer")
probe("create_server: port -1", lambda e: e.loop.create_server(PF, "127.0.0.1", -1), OverflowError)
probe("create_unix_connection: no path", lambda e: e.loop.create_unix_connection(PF), ValueError)
probe("create_unix_connection: path and sock", lambda e: e.loop.create_unix_connection(PF, "/tmp/x", sock=e.socket(socket.AF_UNIX)), ValueError)
probe("create_unix_connection: an inet sock", lambda e: e.loop.create_unix_connection(PF, sock=e.socket()), ValueError, compare="type", match="A UNIX Domain Stream Socket was expected, got " + SOCK_REPR)
probe("create_unix_connection: ssl without a host name", lambda e: e.loop.create_unix_connection(PF, "/nonexistent", ssl=ctx), ValueError)
probe("create_unix_connection: path an int", lambda e: e.loop.create_unix_connection(PF, 42), TypeError)
probe("create_unix_connection: no such path", lambda e: e.loop.create_unix_connection(PF, "/nonexistent/sock"), FileNotFoundError)
probe("create_unix_server: no path", lambda e: e.loop.create_unix_server(PF), ValueError)
probe("create_unix_server: path and sock", lambda e: e.loop.create_unix_server(PF, "/tmp/x", sock=e.socket(socket.AF_UNIX)), ValueError)
probe("create_unix_server: an inet sock", lambda e: e.loop.create_unix_server(PF, sock=e.socket()), ValueError, compare="type", match="A UNIX Domain Stream Socket was expected, got " + SOCK_REPR)
probe("create_unix_server: path an int", lambda e: e.loop.create_unix_server(PF, 42), TypeError)
probe("create_unix_server: ssl_handshake_timeout without ssl", lambda e: e.loop.create_unix_server(PF, "/nonexistent/x", ssl_handshake_timeout=1), ValueError)
probe("connect_accepted_socket: a UDP sock", lambda e: e.loop.connect_accepted_socket(PF, e.socket(type=socket.SOCK_DGRAM)), ValueError, compare="type", match="A Stream Socket was expected, got " + SOCK_REPR)
probe("connect_accepted_socket: an int", lambda e: e.loop.connect_accepted_socket(PF, 42), AttributeError)
probe("connect_accepted_socket: ssl_handshake_timeout without ssl", lambda e: e.loop.connect_accepted_socket(PF, e.socketpair()[0], ssl_handshake_timeout=1), ValueError)
probe("connect_accepted_socket: closed loop", lambda e: e.loop.connect_accepted_socket(PF, e.socketpair()[0]), RuntimeError, state="closed", compare="ours", why="the stdlib leaks its transport here", match="Event loop is closed")
probe("create_datagram_endpoint: no address", lambda e: e.loop.create_datagram_endpoint(DPF), ValueError)
probe("create_datagram_endpoint: a TCP sock", lambda e: e.loop.create_datagram_endpoint(DPF, sock=e.socket()), ValueError, compare="type", match="A (UDP|datagram) [Ss]ocket was expected, got " + SOCK_REPR)
probe("create_datagram_endpoint: sock and local_addr", lambda e: e.loop.create_datagram_endpoint(DPF, local_addr=("127.0.0.1", 0), sock=e.socket(type=socket.SOCK_DGRAM)), ValueError, compare="type", match="socket modifier keyword arguments can not be used when sock is specified")
probe("create_datagram_endpoint: local_addr a str", lambda e: e.loop.create_datagram_endpoint(DPF, local_addr="x"), TypeError)
probe("create_datagram_endpoint: a unix local_addr an int", lambda e: e.loop.create_datagram_endpoint(DPF, local_addr=42, family=socket.AF_UNIX), TypeError)
probe("create_datagram_endpoint: sock an int", lambda e: e.loop.create_datagram_endpoint(DPF, sock=42), AttributeError)
probe("create_datagram_endpoint: closed loop", lambda e: e.loop.create_datagram_endpoint(DPF, local_addr=("127.0.0.1", 0)), RuntimeError, state="closed", compare="ours", why="the stdlib leaks its socket and transport here")
probe("create_datagram_endpoint: wrong thread", lambda e: e.loop.create_datagram_endpoint(DPF, local_addr=("127.0.0.1", 0)), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread", match=r"Non-thread-safe operation create_datagram_endpoint\(\)")

# -- pipes and subprocesses
probe("connect_read_pipe: None", lambda e: e.loop.connect_read_pipe(PF, None), AttributeError)
probe("connect_read_pipe: a regular file", lambda e: e.loop.connect_read_pipe(PF, e.binary_file()), ValueError)
probe("connect_read_pipe: closed loop", lambda e: e.loop.connect_read_pipe(PF, e.pipe()[0]), RuntimeError, state="closed", compare="ours", why="the stdlib leaks its transport here", match="Event loop is closed")
probe("connect_read_pipe: wrong thread", lambda e: e.loop.connect_read_pipe(PF, e.pipe()[0]), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread", match=r"Non-thread-safe operation connect_read_pipe\(\)")
probe("connect_write_pipe: None", lambda e: e.loop.connect_write_pipe(PF, None), AttributeError)
probe("connect_write_pipe: a regular file", lambda e: e.loop.connect_write_pipe(PF, e.binary_file()), ValueError)
probe("connect_write_pipe: closed loop", lambda e: e.loop.connect_write_pipe(PF, e.pipe()[1]), RuntimeError, state="closed", compare="ours", why="the stdlib leaks its transport here", match="Event loop is closed")
probe("connect_write_pipe: wrong thread", lambda e: e.loop.connect_write_pipe(PF, e.pipe()[1]), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread", match=r"Non-thread-safe operation connect_write_pipe\(\)")
probe("subprocess_exec: shell=True", lambda e: e.loop.subprocess_exec(SPF, "true", shell=True), ValueError)
probe("subprocess_exec: bufsize=1", lambda e: e.loop.subprocess_exec(SPF, "true", bufsize=1), ValueError)
probe("subprocess_exec: text=True", lambda e: e.loop.subprocess_exec(SPF, "true", text=True), ValueError)
probe("subprocess_exec: universal_newlines=True", lambda e: e.loop.subprocess_exec(SPF, "true", universal_newlines=True), ValueError)
probe("subprocess_exec: an encoding", lambda e: e.loop.subprocess_exec(SPF, "true", encoding="utf-8"), ValueError)
probe("subprocess_exec: errors", lambda e: e.loop.subprocess_exec(SPF, "true", errors="strict"), ValueError)
probe("subprocess_exec: program an int", lambda e: e.loop.subprocess_exec(SPF, 42), TypeError)
probe("subprocess_exec: program None", lambda e: e.loop.subprocess_exec(SPF, None), TypeError)
probe("subprocess_exec: no such program", lambda e: e.loop.subprocess_exec(SPF, "/nonexistent/prog"), FileNotFoundError)
probe("subprocess_exec: wrong thread", lambda e: e.loop.subprocess_exec(SPF, "true"), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread, and starts the child", match=r"Non-thread-safe operation subprocess_exec\(\)")
probe("subprocess_shell: wrong thread", lambda e: e.loop.subprocess_shell(SPF, "true"), RuntimeError, state="other thread", compare="ours", why="the stdlib does not check the thread, and starts the child", match=r"Non-thread-safe operation subprocess_shell\(\)")
probe("subprocess_shell: cmd an int", lambda e: e.loop.subprocess_shell(SPF, 42), ValueError)
probe("subprocess_shell: cmd a list", lambda e: e.loop.subprocess_shell(SPF, ["true"]), ValueError)
probe("subprocess_shell: shell=False", lambda e: e.loop.subprocess_shell(SPF, "true", shell=False), ValueError)
probe("subprocess_shell: stdin a str", lambda e: e.loop.subprocess_shell(SPF, "true", stdin="x"), AttributeError)


async def _sendfile(e: Env, **kwargs: Any) -> Any:
    transport = await _transport(e)
    file = kwargs.pop("file", None) or e.binary_file()
    return await e.loop.sendfile(transport, file, **kwargs)


async def _start_tls(e: Env, context: Any, **kwargs: Any) -> Any:
    transport = await _transport(e)
    return await e.loop.start_tls(transport, transport.get_protocol(), context, **kwargs)


async def _transport(e: Env) -> Any:
    transport, _ = await e.loop.create_connection(PF, sock=e.socketpair()[0])
    e.later(transport.close)
    return transport


probe("sendfile: transport None", lambda e: e.loop.sendfile(None, e.binary_file()), AttributeError)
probe("sendfile: a text file", lambda e: _sendfile(e, file=e.text_file()), ValueError)
probe("sendfile: offset -1", lambda e: _sendfile(e, offset=-1), ValueError)
probe("sendfile: count 0", lambda e: _sendfile(e, count=0), ValueError)
probe("sendfile: count a str", lambda e: _sendfile(e, count="x"), TypeError)
probe("start_tls: transport None", lambda e: e.loop.start_tls(None, PF(), ctx), TypeError)
probe("start_tls: sslcontext an int", lambda e: _start_tls(e, 42), TypeError)
probe("start_tls: negative ssl_handshake_timeout", lambda e: _start_tls(e, ctx, server_hostname="x", ssl_handshake_timeout=-1), ValueError)
probe("start_tls: zero ssl_shutdown_timeout", lambda e: _start_tls(e, ctx, server_hostname="x", ssl_shutdown_timeout=0), ValueError, stdlib_since=(3, 11))

# -- signals (the main thread only)
probe("add_signal_handler: signal 0", lambda e: e.loop.add_signal_handler(0, _noop), ValueError)
probe("add_signal_handler: signal 999", lambda e: e.loop.add_signal_handler(999, _noop), ValueError)
probe("add_signal_handler: a str", lambda e: e.loop.add_signal_handler("x", _noop), TypeError)
probe("add_signal_handler: SIGKILL", lambda e: e.loop.add_signal_handler(signal.SIGKILL, _noop), RuntimeError)
probe("add_signal_handler: a coroutine function", lambda e: e.loop.add_signal_handler(signal.SIGUSR1, _coro_fn), TypeError)
probe("add_signal_handler: closed loop", lambda e: e.loop.add_signal_handler(signal.SIGUSR1, _noop), RuntimeError, state="closed")
probe("add_signal_handler: wrong thread", lambda e: e.loop.add_signal_handler(signal.SIGUSR1, _noop), RuntimeError, state="other thread")
probe("remove_signal_handler: signal 0", lambda e: e.loop.remove_signal_handler(0), ValueError)
probe("remove_signal_handler: a str", lambda e: e.loop.remove_signal_handler("x"), TypeError)
probe("remove_signal_handler: SIGKILL is just not handled", lambda e: e.loop.remove_signal_handler(signal.SIGKILL), None)


# fmt: on


# ---- running the table ---------------------------------------------------------------------


def _params() -> list[Any]:
    params = []
    for p in PROBES:
        for kind in p.kinds:
            marks = []
            if p.bug is not None:
                marks.append(pytest.mark.xfail(reason=p.bug, strict=True, run=not p.hangs))
            params.append(pytest.param(p, kind, id=f"{p.id} [{kind}]", marks=marks))
    return params


@pytest.mark.parametrize(("p", "kind"), _params())
def test_loop_misuse(p: Probe, kind: str) -> None:
    ours = run_probe(p, kind)
    gc.collect()  # what the misuse leaked is reported here, not in a later test
    compare = p.compare if sys.version_info >= p.stdlib_since else "ours"
    if compare == "ours":
        assert p.why or sys.version_info < p.stdlib_since, f"{p.id}: say why ours differs"
    else:
        reference = run_probe(p, "stdlib")
        expected_kind = "returned" if p.expect is None else "raised"
        assert reference.kind == expected_kind, f"the stdlib: {reference} (the table is wrong)"
        assert ours.type is reference.type, f"ours: {ours}, the stdlib: {reference}"
        if compare == "message":
            assert ours.message == reference.message
        elif compare == "prefix":
            assert ours.message.startswith(reference.message), f"ours: {ours}, stdlib: {reference}"
    if p.expect is None:
        assert ours.kind == "returned", f"ours: {ours}"
        return
    assert ours.kind == "raised", f"ours: {ours}"
    if compare == "ours" or sys.version_info >= (3, 11):  # the table speaks of 3.11+
        assert ours.type is p.expect, f"ours: {ours}"
    if p.match is not None:
        assert re.search(p.match, ours.message), f"ours: {ours}"


# ---- the functions of trio_asyncio and the loops' own methods ------------------------------


async def _aio_fn() -> str:
    await asyncio.sleep(0)
    return "aio"


async def _trio_fn() -> str:
    await trio.sleep(0)
    return "trio"


def _sync_fn() -> int:
    return 1


def in_trio(fn: Callable[[Any], Any]) -> Any:
    """``await fn(loop)`` in Trio code inside ``open_loop()``."""

    async def main() -> Any:
        async with trio_asyncio.open_loop() as loop:
            return await fn(loop)

    return trio.run(main)


def in_trio_without_loop(fn: Callable[[Any], Any]) -> Any:
    async def main() -> Any:
        return await fn(None)

    return trio.run(main)


def in_asyncio(fn: Callable[[Any], Any]) -> Any:
    """``await fn(loop)`` in asyncio code on the Trio-hosted loop."""

    async def main() -> Any:
        async with trio_asyncio.open_loop() as loop:
            return await aio_as_trio(fn)(loop)

    return trio.run(main)


def in_sync_loop(fn: Callable[[Any], Any]) -> Any:
    """``await fn(loop)`` in asyncio code on a sync loop."""
    loop = trio_asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fn(loop))
    finally:
        loop.close()


def in_stdlib_loop(fn: Callable[[Any], Any]) -> Any:
    loop = asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(fn(loop))
    finally:
        loop.close()


def plain(fn: Callable[[Any], Any]) -> Any:
    """``fn(None)`` from plain synchronous code (it must not suspend)."""
    coro = fn(None)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the call suspended")


def in_trio_given_closed_loop(fn: Callable[[Any], Any]) -> Any:
    """``await fn(closed_loop)`` in Trio code inside another ``open_loop()``."""
    closed = _closed_loop()
    return in_trio(lambda loop: fn(closed))


def _closed_loop() -> Any:
    loops: list[Any] = []

    async def main() -> None:
        async with trio_asyncio.open_loop() as loop:
            loops.append(loop)

    trio.run(main)
    return loops[0]


async def _wait_for_foreign_future(wait: Callable[[Any], Any]) -> Any:
    other = asyncio.SelectorEventLoop()
    try:
        return await wait(other.create_future())
    finally:
        other.close()


async def _aio_as_trio_here() -> Any:
    return await _closing(_aio_fn(), aio_as_trio)


async def _in_other_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a new thread, while this loop keeps running; its result or error."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=run, name="misuse")
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.005)
    ok, value = box[0]
    if not ok:
        raise value
    _dispose(value)
    return value


async def _closing(coro: Any, call: Callable[[Any], Any]) -> Any:
    """``call(coro)``, awaited if need be. A call that fails must have closed *coro*.

    (An unclosed coroutine would only warn "never awaited", at some later GC.)
    """
    try:
        result = call(coro)
        if inspect.isawaitable(result):
            result = await result
        return result
    except BaseException:
        assert coro.cr_frame is None, f"the failing call left {coro!r} unclosed"
        raise
    finally:
        coro.close()


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _iterate(iterable: Any) -> None:
    async for _ in iterable:
        pass


async def _enter(manager: Any) -> None:
    async with manager:
        pass


async def _start_trio_task_and_wait(start: Callable[[], object]) -> None:
    start()
    await asyncio.sleep(0.05)


@dataclass(frozen=True)
class ApiProbe:
    """A wrong call of a trio_asyncio function or a loop's own method, in *where*."""

    id: str  # starts with the probed name
    where: Callable[[Callable[[Any], Any]], Any]
    call: Callable[[Any], Any]
    expect: type[BaseException]
    match: str
    bug: str | None = None
    hangs: bool = False  # with bug: too harmful to run (xfail, run=False)

    @property
    def name(self) -> str:
        return self.id.split(":")[0]


NOT_ASYNC = r"expects an async function"
PASS_THE_FUNCTION = r"got a coroutine object .*: pass the async function and its arguments"
OUTSIDE_TRIO = r"open_loop\(\) must be used in Trio code, inside trio\.run\(\)"
NO_LOOP_HERE = r"There is no trio-asyncio loop here"
# fmt: off
API_PROBES = [
    ApiProbe("aio_as_trio: None", in_trio, lambda loop: _await(aio_as_trio(None)), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("aio_as_trio: an int, called", in_trio, lambda loop: aio_as_trio(42)(), TypeError, "'int' object is not callable"),
    ApiProbe("aio_as_trio: a sync function", in_trio, lambda loop: _await(aio_as_trio(_sync_fn)()), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("aio_as_trio: no loop", in_trio_without_loop, lambda loop: aio_as_trio(_aio_fn)(), RuntimeError, NO_LOOP_HERE),
    ApiProbe("aio_as_trio: from asyncio code", in_sync_loop, lambda loop: aio_as_trio(_aio_fn)(), RuntimeError, "are for Trio code, but this is asyncio code"),
    ApiProbe("aio_as_trio: loop= a stdlib loop", in_trio, lambda loop: aio_as_trio(_aio_fn, loop=asyncio.get_event_loop_policy())(), TypeError, "loop must be a trio-asyncio loop"),
    ApiProbe("aio_as_trio: loop= an int", in_trio, lambda loop: aio_as_trio(_aio_fn, loop=42)(), TypeError, "loop must be a trio-asyncio loop"),
    ApiProbe("aio_as_trio: loop= a closed loop", in_trio_given_closed_loop, lambda loop: _closing(_aio_fn(), lambda coro: _await(aio_as_trio(coro, loop=loop))), RuntimeError, "Event loop is closed"),
    ApiProbe("aio_as_trio: a future of a stdlib loop", in_trio, lambda loop: _wait_for_foreign_future(lambda f: _await(aio_as_trio(f))), ValueError, "not to a trio-asyncio loop"),
    ApiProbe("aio_as_trio: an int as async iterator", in_trio, lambda loop: _iterate(aio_as_trio(42)), TypeError, "'int' object is not an async iterable"),
    ApiProbe("aio_as_trio: an int as async context manager", in_trio, lambda loop: _enter(aio_as_trio(42)), TypeError, "does not support the asynchronous context manager protocol"),
    ApiProbe("asyncio_as_trio: None", in_trio, lambda loop: _await(trio_asyncio.asyncio_as_trio(None)), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("trio_as_aio: None", in_asyncio, lambda loop: trio_as_aio(None)(), TypeError, r"run_trio\(\) expects an async function, got None"),
    ApiProbe("trio_as_aio: None, sync loop", in_sync_loop, lambda loop: trio_as_aio(None)(), TypeError, r"run_trio\(\) expects an async function, got None"),
    ApiProbe("trio_as_aio: a coroutine, called", in_asyncio, lambda loop: _closing(_trio_fn(), lambda coro: trio_as_aio(coro)()), TypeError, NOT_ASYNC),
    ApiProbe("trio_as_aio: a sync function", in_asyncio, lambda loop: trio_as_aio(_sync_fn)(), TypeError, "can't be used in 'await' expression"),
    ApiProbe("trio_as_aio: an asyncio function", in_asyncio, lambda loop: trio_as_aio(_aio_fn)(), TypeError, "unrecognized yield message"),
    ApiProbe("trio_as_aio: on a stdlib loop", in_stdlib_loop, lambda loop: trio_as_aio(_trio_fn)(), RuntimeError, r"trio_as_aio\(\) needs a trio-asyncio loop"),
    ApiProbe("trio_as_aio: no loop at all", plain, lambda loop: trio_as_aio(_trio_fn)(), RuntimeError, r"trio_as_aio\(\) must be used from asyncio code"),
    ApiProbe("trio_as_aio: an int as async iterator", in_asyncio, lambda loop: _iterate(trio_as_aio(42)), TypeError, "'int' object is not an async iterable"),
    ApiProbe("trio_as_aio: an int as async context manager", in_asyncio, lambda loop: _enter(trio_as_aio(42)), TypeError, "does not support the asynchronous context manager protocol"),
    ApiProbe("trio_as_asyncio: None", in_asyncio, lambda loop: trio_asyncio.trio_as_asyncio(None)(), TypeError, NOT_ASYNC),
    ApiProbe("run_aio_coroutine: None", in_trio, lambda loop: trio_asyncio.run_aio_coroutine(None), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("run_aio_coroutine: no loop", in_trio_without_loop, lambda loop: trio_asyncio.run_aio_coroutine(_aio_fn()), RuntimeError, NO_LOOP_HERE),
    ApiProbe("run_aio_future: an int", in_trio, lambda loop: trio_asyncio.run_aio_future(42), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("run_aio_future: a future of a stdlib loop", in_trio, lambda loop: _wait_for_foreign_future(trio_asyncio.run_aio_future), ValueError, "not to a trio-asyncio loop"),
    ApiProbe("run_aio_generator: an int", in_trio, lambda loop: _iterate(trio_asyncio.run_aio_generator(loop, 42)), TypeError, "'int' object is not an async iterable"),
    ApiProbe("run_trio: None", in_asyncio, lambda loop: _start_trio_task_and_wait(lambda: trio_asyncio.run_trio(None)), TypeError, r"run_trio\(\) expects an async function"),
    ApiProbe("run_trio: no loop", plain, lambda loop: trio_asyncio.run_trio(_trio_fn), RuntimeError, r"run_trio\(\) must be used from asyncio code"),
    ApiProbe("run_trio: on a stdlib loop", in_stdlib_loop, lambda loop: _start_trio_task_and_wait(lambda: trio_asyncio.run_trio(_trio_fn)), RuntimeError, r"run_trio\(\) needs a trio-asyncio loop"),
    ApiProbe("run_trio_task: None", in_asyncio, lambda loop: _start_trio_task_and_wait(lambda: trio_asyncio.run_trio_task(None)), TypeError, r"run_trio_task\(\) expects an async function"),
    ApiProbe("run_trio_task: None, sync loop", in_sync_loop, lambda loop: _start_trio_task_and_wait(lambda: trio_asyncio.run_trio_task(None)), TypeError, r"run_trio_task\(\) expects an async function"),
    ApiProbe("run_trio_task: no loop", plain, lambda loop: trio_asyncio.run_trio_task(_trio_fn), RuntimeError, r"run_trio_task\(\) must be used from asyncio code"),
    ApiProbe("run_aio_future (method): a future of a stdlib loop", in_trio, lambda loop: _wait_for_foreign_future(loop.run_aio_future), ValueError, ""),
    ApiProbe("aio_as_trio: in a Trio run of a worker thread that inherited the loop", in_trio, lambda loop: trio.to_thread.run_sync(trio.run, _aio_as_trio_here), RuntimeError, r"Non-thread-safe operation create_task\(\)"),
    ApiProbe("run_trio (method): wrong thread, sync loop", in_sync_loop, lambda loop: _in_other_thread(loop.run_trio, _trio_fn), RuntimeError, r"Non-thread-safe operation run_trio\(\)"),
    ApiProbe("run_trio_task (method): wrong thread, sync loop", in_sync_loop, lambda loop: _in_other_thread(loop.run_trio_task, _trio_fn), RuntimeError, r"Non-thread-safe operation run_trio_task\(\)"),
    ApiProbe("open_loop: in asyncio code without Trio", in_stdlib_loop, lambda loop: _enter(trio_asyncio.open_loop()), RuntimeError, OUTSIDE_TRIO),
    ApiProbe("open_loop: in asyncio code on a sync loop", in_sync_loop, lambda loop: _enter(trio_asyncio.open_loop()), RuntimeError, OUTSIDE_TRIO),
    ApiProbe("open_loop: in plain code", plain, lambda loop: _enter(trio_asyncio.open_loop()), RuntimeError, OUTSIDE_TRIO),
    ApiProbe("allow_asyncio: None", in_trio, lambda loop: trio_asyncio.allow_asyncio(None), TypeError, "'NoneType' object is not callable"),
    ApiProbe("allow_asyncio: a sync function", in_trio, lambda loop: trio_asyncio.allow_asyncio(_sync_fn), TypeError, r"allow_asyncio\(\) expects an async function"),
    ApiProbe("allow_asyncio: no loop", in_trio_without_loop, lambda loop: trio_asyncio.allow_asyncio(_aio_fn), RuntimeError, NO_LOOP_HERE),
    ApiProbe("open_loop: inside asyncio code", in_asyncio, lambda loop: _enter(trio_asyncio.open_loop()), RuntimeError, "Trio code was called from asyncio code"),
    ApiProbe("run: None", plain, lambda loop: trio_asyncio.run(None), TypeError, "'NoneType' object is not callable"),
    ApiProbe("run: a sync function", plain, lambda loop: trio_asyncio.run(_sync_fn), TypeError, "can't be used in 'await' expression"),
    ApiProbe("run: an asyncio function", plain, lambda loop: trio_asyncio.run(_aio_fn), TypeError, "unrecognized yield message"),
    ApiProbe("run: inside Trio", in_trio, lambda loop: _await_sync(trio_asyncio.run, _trio_fn), RuntimeError, r"Attempted to call run\(\) from inside a run\(\)"),
    ApiProbe("TrioExecutor: 0 workers", plain, lambda loop: trio_asyncio.TrioExecutor(0), ValueError, "max_workers must be greater than 0"),
    ApiProbe("TrioExecutor: -1 workers", plain, lambda loop: trio_asyncio.TrioExecutor(-1), ValueError, "max_workers must be greater than 0"),
    ApiProbe("TrioExecutor: func None", in_asyncio, lambda loop: _await(loop.run_in_executor(trio_asyncio.TrioExecutor(1), None)), TypeError, "a callable object was expected"),
    ApiProbe("new_event_loop: an argument", plain, lambda loop: trio_asyncio.new_event_loop(42), TypeError, "takes 0 positional arguments"),
    # The loops' own methods (not in asyncio.AbstractEventLoop).
    ApiProbe("run_trio (method): None", in_asyncio, lambda loop: _start_trio_task_and_wait(lambda: loop.run_trio(None)), TypeError, NOT_ASYNC),
    ApiProbe("run_trio (method): closed loop", plain, lambda loop: _closed_loop().run_trio(_trio_fn), RuntimeError, "Event loop is closed"),
    ApiProbe("trio_as_future: an int", in_asyncio, lambda loop: _start_trio_task_and_wait(lambda: loop.trio_as_future(42)), TypeError, NOT_ASYNC),
    ApiProbe("run_trio_task (method): closed loop", plain, lambda loop: _closed_loop().run_trio_task(_trio_fn), RuntimeError, "Event loop is closed"),
    ApiProbe("run_trio_task (method): None", in_asyncio, lambda loop: loop.run_trio_task(None), TypeError, r"run_trio_task\(\) expects an async function, got None"),
    ApiProbe("run_trio_task (method): a coroutine", in_asyncio, lambda loop: _closing(_trio_fn(), loop.run_trio_task), TypeError, PASS_THE_FUNCTION),
    ApiProbe("run_trio (method): a coroutine", in_asyncio, lambda loop: _closing(_trio_fn(), loop.run_trio), TypeError, PASS_THE_FUNCTION),
    ApiProbe("run_aio_coroutine (method): None", in_trio, lambda loop: loop.run_aio_coroutine(None), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("run_aio_future (method): None", in_trio, lambda loop: loop.run_aio_future(None), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("run_asyncio: None", in_trio, lambda loop: loop.run_asyncio(None), TypeError, "'NoneType' object is not callable"),
    ApiProbe("run_asyncio: a sync function", in_trio, lambda loop: loop.run_asyncio(_sync_fn), TypeError, "An asyncio.Future, a coroutine or an awaitable is required"),
    ApiProbe("synchronize: from asyncio code", in_asyncio, lambda loop: loop.synchronize(), RuntimeError, ""),
    ApiProbe("wait_stopped: from asyncio code", in_asyncio, lambda loop: loop.wait_stopped(), RuntimeError, "Trio code was called from asyncio code"),
    ApiProbe("autoclose: None", in_asyncio, lambda loop: _sync_call(loop.autoclose, None), ValueError, "Invalid file object: None"),
    ApiProbe("autoclose: fd -1", in_asyncio, lambda loop: _sync_call(loop.autoclose, -1), ValueError, "Invalid file descriptor: -1"),
    ApiProbe("no_autoclose: a str", in_asyncio, lambda loop: _sync_call(loop.no_autoclose, "x"), ValueError, "Invalid file object: 'x'"),
]
# fmt: on


async def _sync_call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


async def _await_sync(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


@pytest.mark.parametrize(
    "p",
    [
        pytest.param(
            p,
            id=p.id,
            marks=[pytest.mark.xfail(reason=p.bug, strict=True, run=not p.hangs)] if p.bug else [],
        )
        for p in API_PROBES
    ],
)
def test_api_misuse(p: ApiProbe) -> None:
    async def call(loop: Any) -> Any:
        result = p.call(loop)
        if inspect.isawaitable(result):
            return await result
        _dispose(result)
        return result

    with pytest.raises(p.expect) as info:
        p.where(call)
    assert re.search(p.match, str(info.value)), str(info.value)


# Error paths must not leave a coroutine they were given unclosed ("never awaited").


@pytest.mark.parametrize("method", ["run_trio", "run_trio_task"])
def test_run_trio_closes_a_coroutine_passed_by_mistake(method: str) -> None:
    async def scenario(loop: Any) -> bool:
        coro = _trio_fn()
        try:
            with pytest.raises(TypeError, match=rf"not {method}\(fn\(\*args\)\)"):
                getattr(loop, method)(coro)
            return coro.cr_frame is None
        finally:
            coro.close()

    assert in_asyncio(scenario)


def test_run_aio_coroutine_on_a_closed_loop_closes_the_coroutine() -> None:
    closed = _closed_loop()

    async def main() -> bool:
        coro = _aio_fn()
        try:
            with pytest.raises(RuntimeError, match="Event loop is closed"):
                await trio_asyncio.run_aio_coroutine(coro, loop=closed)
            return coro.cr_frame is None
        finally:
            coro.close()

    assert trio.run(main)


def test_run_aio_coroutine_without_a_loop_closes_the_coroutine() -> None:
    async def main() -> bool:
        coro = _aio_fn()
        try:
            with pytest.raises(RuntimeError, match=NO_LOOP_HERE):
                await trio_asyncio.run_aio_coroutine(coro)
            return coro.cr_frame is None
        finally:
            coro.close()

    assert trio.run(main)


def test_policy_misuse_matches_the_stdlib_policy() -> None:
    ours = _capture(lambda: trio_asyncio.TrioPolicy().set_event_loop(42))[0]
    reference = _capture(lambda: asyncio.DefaultEventLoopPolicy().set_event_loop(42))[0]
    assert (ours.type, ours.message) == (reference.type, reference.message)


# ---- every public name is probed -------------------------------------------------------------

NOT_PROBED = {
    # No argument to get wrong, and fine in every state.
    "get_debug": "takes no argument",
    "get_exception_handler": "takes no argument",
    "get_task_factory": "takes no argument",
    "is_closed": "takes no argument",
    "is_running": "takes no argument",
    "time": "takes no argument",
    "set_debug": "any value is converted with bool(), as in the stdlib",
    "create_future": "takes no argument (a closed loop is probed)",
    "current_loop": "a ContextVar, not a function",
    "TrioAsyncioDeprecationWarning": "a warning class",
    "BaseTrioEventLoop": "the base class of the loops probed above",
    "TrioEventLoop": "created by open_loop() (probed above)",
    "SyncTrioEventLoop": "created by new_event_loop() (probed above)",
    "TrioPolicy": "the stdlib's policy: test_policy_misuse_matches_the_stdlib_policy",
}


def _probed_names() -> set[str]:
    names = {p.name for p in PROBES} | {p.name for p in API_PROBES}
    return {name.replace(" (method)", "").split(" ")[0] for name in names}


def test_every_public_name_is_probed() -> None:
    loop_methods = {
        name
        for cls in (
            asyncio.AbstractEventLoop,
            trio_asyncio.SyncTrioEventLoop,
            trio_asyncio.TrioEventLoop,
        )
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }
    functions = {
        name for name in dir(trio_asyncio) if not name.startswith("_") and name != "__version__"
    }
    functions = {name for name in functions if not inspect.ismodule(getattr(trio_asyncio, name))}
    missing = sorted((loop_methods | functions) - _probed_names() - set(NOT_PROBED))
    assert missing == []
    assert set(NOT_PROBED) <= loop_methods | functions, "NOT_PROBED names something that is gone"
