"""Subprocesses: subprocess_exec/shell, asyncio.subprocess on top, child reaping.

Scenarios run on both the stdlib selector loop and ours (``aio_run``) with the
same assertions; ``trio_aio_run`` is for our internals (reaping at loop close,
the thread fallback) and deliberate differences. Every test checks that its
children were reaped and that no fd leaked. Synchronisation is by futures.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
from asyncio.subprocess import DEVNULL, PIPE, STDOUT
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from _children import assert_reaped
from _drivers import EVERY_DRIVER

import trio_asyncio
from trio_asyncio._io import _child_watching
from trio_asyncio._io._child_watching import ChildReaper
from trio_asyncio._io._subprocess import SubprocessTransport

PY = sys.executable
BIG = 20 * 1024 * 1024


@pytest.fixture
def aio_run(aio_run_every_driver: Callable[..., Any]) -> Callable[..., Any]:
    """Overrides the conftest's: the stdlib loop and *both* our drivers."""
    return aio_run_every_driver


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def join_reaper_threads() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("trio-asyncio"):
            thread.join(10)
            assert not thread.is_alive()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[list[int]]:
    """Yield a list to put child pids in; check they were reaped and no fd leaked."""
    pids: list[int] = []
    gc.collect()
    before = open_fds()
    yield pids
    join_reaper_threads()
    gc.collect()
    for pid in pids:
        assert_reaped(pid)
    assert open_fds() == before


class Recorder(asyncio.SubprocessProtocol):
    """Records every protocol call; ``lost`` resolves at connection_lost."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.events: list[Any] = []
        self.data: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.transport: Any = None
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipe_lost: dict[int, asyncio.Future[BaseException | None]] = {
            fd: loop.create_future() for fd in (0, 1, 2)
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert not self.events
        self.events.append("made")
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.events.append(("data", fd))
        self.data[fd] += data  # type: ignore[operator]

    def pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self.events.append(("pipe_lost", fd))
        self.pipe_lost[fd].set_result(exc)

    def process_exited(self) -> None:
        self.events.append("exited")
        self.exited.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


# ---- asyncio.subprocess -----------------------------------------------------------


def test_echo_through_cat(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE, stderr=PIPE)
        no_leaks.append(proc.pid)
        assert proc.returncode is None
        out, err = await proc.communicate(b"hello, cat")
        assert (out, err) == (b"hello, cat", b"")
        assert proc.returncode == 0

    aio_run(main)


def test_line_by_line_dialogue(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        no_leaks.append(proc.pid)
        for word in (b"one", b"two", b"three"):
            proc.stdin.write(word + b"\n")
            await proc.stdin.drain()
            assert await proc.stdout.readline() == word + b"\n"
        proc.stdin.close()
        await proc.stdin.wait_closed()
        assert await proc.stdout.read() == b""
        assert await proc.wait() == 0

    aio_run(main)


def test_twenty_megabytes_of_stdout(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        code = f"import sys; sys.stdout.buffer.write(b'0123456789abcdef' * ({BIG} // 16))"
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE)
        no_leaks.append(proc.pid)
        out, err = await proc.communicate()
        assert err is None
        assert len(out) == BIG
        assert out == b"0123456789abcdef" * (BIG // 16)
        assert proc.returncode == 0

    aio_run(main)


def test_twenty_megabytes_through_cat(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    """Big stdin and big stdout at once: needs write flow control on stdin."""

    async def main() -> None:
        payload = os.urandom(1024) * (BIG // 1024)
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        no_leaks.append(proc.pid)
        out, _ = await proc.communicate(payload)
        assert out == payload
        assert proc.returncode == 0

    aio_run(main)


def test_stderr_separately_and_merged(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    code = (
        "import sys; print('out'); sys.stdout.flush(); print('err', file=sys.stderr); sys.exit(3)"
    )

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE, stderr=PIPE)
        no_leaks.append(proc.pid)
        assert await proc.communicate() == (b"out\n", b"err\n")
        assert proc.returncode == 3

        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE, stderr=STDOUT)
        no_leaks.append(proc.pid)
        assert proc.stderr is None
        assert await proc.communicate() == (b"out\nerr\n", None)
        assert proc.returncode == 3

        proc = await asyncio.create_subprocess_exec(
            PY, "-c", code, stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE
        )
        no_leaks.append(proc.pid)
        assert proc.stdin is None and proc.stdout is None
        assert await proc.stderr.read() == b"err\n"
        assert await proc.wait() == 3

    aio_run(main)


def test_shell(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_shell("echo $((6 * 7)); exit 5", stdout=PIPE)
        no_leaks.append(proc.pid)
        assert await proc.communicate() == (b"42\n", None)
        assert proc.returncode == 5

    aio_run(main)


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_codes(aio_run: Callable[..., Any], no_leaks: list[int], code: int) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(PY, "-c", f"import sys; sys.exit({code})")
        no_leaks.append(proc.pid)
        assert await proc.wait() == code
        assert proc.returncode == code

    aio_run(main)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1])
def test_killed_by_signal(aio_run: Callable[..., Any], no_leaks: list[int], sig: int) -> None:
    async def main() -> None:
        code = f"import os; os.kill(os.getpid(), {int(sig)})"
        proc = await asyncio.create_subprocess_exec(PY, "-c", code)
        no_leaks.append(proc.pid)
        assert await proc.wait() == -sig

    aio_run(main)


def test_kill_terminate_send_signal(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        for method, expected in [
            (lambda p: p.kill(), -signal.SIGKILL),
            (lambda p: p.terminate(), -signal.SIGTERM),
            (lambda p: p.send_signal(signal.SIGUSR2), -signal.SIGUSR2),
        ]:
            proc = await asyncio.create_subprocess_exec("sleep", "60", stdin=PIPE, stdout=PIPE)
            no_leaks.append(proc.pid)
            method(proc)
            assert await proc.wait() == expected
            # Once the process is gone (and wait() returned): ProcessLookupError.
            with pytest.raises(ProcessLookupError):
                proc.kill()
            with pytest.raises(ProcessLookupError):
                proc.terminate()
            with pytest.raises(ProcessLookupError):
                proc.send_signal(signal.SIGINT)

    aio_run(main)


def test_wait_from_two_tasks(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=DEVNULL)
        no_leaks.append(proc.pid)
        first = asyncio.ensure_future(proc.wait())
        second = asyncio.ensure_future(proc.wait())
        cancelled = asyncio.ensure_future(proc.wait())
        await asyncio.sleep(0)
        cancelled.cancel()
        assert not first.done() and not second.done()
        proc.stdin.close()  # cat sees EOF and exits
        assert await asyncio.gather(first, second) == [0, 0]
        assert cancelled.cancelled()
        assert await proc.wait() == 0

    aio_run(main)


def test_child_killed_while_we_write(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    """Writing to a dead child's stdin fails (no hang); communicate() ignores it."""

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec("sleep", "60", stdin=PIPE)
        no_leaks.append(proc.pid)
        proc.stdin.write(b"x" * (4 << 20))  # sleep never reads: mostly buffered
        proc.kill()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await proc.stdin.drain()
        assert await proc.wait() == -signal.SIGKILL

        # A child that exits without reading its input.
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass", stdin=PIPE, stdout=PIPE)
        no_leaks.append(proc.pid)
        assert await proc.communicate(b"y" * (4 << 20)) == (b"", None)
        assert proc.returncode == 0

    aio_run(main)


def test_program_not_found(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec(
                "/nonexistent/program", stdin=PIPE, stdout=PIPE, stderr=PIPE
            )

    aio_run(main)


def test_argument_checks(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        exec_cases = [
            ({"universal_newlines": True}, "universal_newlines must be False"),
            ({"shell": True}, "shell must be False"),
            ({"bufsize": 1}, "bufsize must be 0"),
            ({"text": True}, "text must be False"),
            ({"encoding": "utf-8"}, "encoding must be None"),
            ({"errors": "strict"}, "errors must be None"),
            ({"universal_newlines": True, "shell": True}, "universal_newlines must be False"),
        ]
        for kwargs, message in exec_cases:
            with pytest.raises(ValueError, match=f"^{message}$"):
                await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", **kwargs)
        shell_cases = [
            ({"universal_newlines": True}, "universal_newlines must be False"),
            ({"shell": False}, "shell must be True"),
            ({"bufsize": 1}, "bufsize must be 0"),
            ({"text": True}, "text must be False"),
            ({"encoding": "utf-8"}, "encoding must be None"),
            ({"errors": "strict"}, "errors must be None"),
        ]
        for kwargs, message in shell_cases:
            with pytest.raises(ValueError, match=f"^{message}$"):
                await loop.subprocess_shell(asyncio.SubprocessProtocol, "true", **kwargs)
        with pytest.raises(ValueError, match=r"^cmd must be a string$"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["true"])  # type: ignore[arg-type]

    aio_run(main)


# ---- the transport and its protocol -----------------------------------------------


def test_protocol_call_order(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        code = "import sys; sys.stdout.write('hi'); sys.stderr.write('ho')"
        transport, proto = await loop.subprocess_exec(Recorder, PY, "-c", code, stdin=DEVNULL)
        no_leaks.append(transport.get_pid())
        assert proto.events == ["made"]
        assert proto.transport is transport
        assert isinstance(transport, asyncio.SubprocessTransport)
        assert transport.get_pipe_transport(0) is None
        assert isinstance(transport.get_pipe_transport(1), asyncio.ReadTransport)
        assert isinstance(transport.get_pipe_transport(2), asyncio.ReadTransport)
        assert isinstance(transport.get_extra_info("subprocess"), subprocess.Popen)
        assert transport.get_extra_info("subprocess").pid == transport.get_pid()
        assert await proto.lost is None
        assert proto.events[0] == "made"
        assert proto.events[-1] == "lost"
        middle = proto.events[1:-1]
        assert middle.count("exited") == 1
        assert middle.count(("pipe_lost", 1)) == middle.count(("pipe_lost", 2)) == 1
        for fd in (1, 2):
            assert middle.index(("pipe_lost", fd)) > max(
                i for i, e in enumerate(middle) if e == ("data", fd)
            )
        assert bytes(proto.data[1]) == b"hi" and bytes(proto.data[2]) == b"ho"
        assert transport.get_returncode() == 0
        assert await transport._wait() == 0
        assert not transport.is_closing()
        transport.close()
        assert transport.is_closing()

    aio_run(main)


def test_close_kills_a_running_child(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(Recorder, "sleep", "60")
        no_leaks.append(transport.get_pid())
        assert transport.get_returncode() is None
        transport.close()
        transport.close()
        assert transport.is_closing()
        assert await proto.lost is None
        assert transport.get_returncode() == -signal.SIGKILL
        assert "exited" in proto.events
        for fd in (0, 1, 2):
            assert await proto.pipe_lost[fd] is None

    aio_run(main)


def test_close_kills_through_popen_kill(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    """As the stdlib: code that wraps the Popen's kill() sees close() call it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(Recorder, "sleep", "60")
        no_leaks.append(transport.get_pid())
        popen = transport.get_extra_info("subprocess")
        calls = []
        real_kill = popen.kill

        def kill() -> None:
            calls.append("kill")
            real_kill()

        popen.kill = kill
        transport.close()
        assert calls == ["kill"]
        assert await proto.lost is None
        assert transport.get_returncode() == -signal.SIGKILL

    aio_run(main)


@pytest.mark.parametrize("driver", ["trio_asyncio", "sync"])
def test_child_reaped_by_its_popen_keeps_its_exit_code(
    driver: str, no_leaks: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """Popen.wait() (or the poll() in close()) may reap first: its code is the one.

    Ours only: the stdlib's child watchers report 255 here.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            Recorder, sys.executable, "-c", "import sys; sys.exit(3)"
        )
        no_leaks.append(transport.get_pid())
        transport.get_extra_info("subprocess").wait()  # reaps it, behind the loop's back
        assert await proto.lost is None
        assert transport.get_returncode() == 3
        transport.close()

    EVERY_DRIVER[driver](main)
    assert "exit status already read" not in caplog.text


def test_signal_after_exit_before_pipes_close(
    aio_run: Callable[..., Any], no_leaks: list[int]
) -> None:
    """Exited but not finished (stdout still open): signalling does nothing."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            Recorder, PY, "-c", "print('x')", stdin=DEVNULL, stderr=DEVNULL
        )
        no_leaks.append(transport.get_pid())
        stdout = transport.get_pipe_transport(1)
        stdout.pause_reading()  # hold the pipe open: no EOF, no connection_lost
        await proto.exited
        assert transport.get_returncode() == 0
        transport.kill()
        transport.terminate()
        transport.send_signal(signal.SIGUSR1)
        assert not proto.lost.done()
        stdout.resume_reading()
        assert await proto.lost is None
        with pytest.raises(ProcessLookupError):
            transport.kill()
        transport.close()

    aio_run(main)


def test_stdin_flow_control_reaches_the_protocol(
    aio_run: Callable[..., Any], no_leaks: list[int]
) -> None:
    class FlowRecorder(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.resumed = asyncio.get_running_loop().create_future()

        def pause_writing(self) -> None:
            self.events.append("pause")

        def resume_writing(self) -> None:
            self.events.append("resume")
            self.resumed.set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            FlowRecorder, "cat", stdout=DEVNULL, stderr=DEVNULL
        )
        no_leaks.append(transport.get_pid())
        stdin = transport.get_pipe_transport(0)
        stdin.write(b"f" * (2 << 20))
        assert proto.events[-1] == "pause"
        await proto.resumed
        stdin.close()
        assert await proto.lost is None
        assert transport.get_returncode() == 0
        transport.close()

    aio_run(main)


def test_fast_exit_reported_after_connection_made(
    aio_run: Callable[..., Any], no_leaks: list[int]
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            Recorder, "true", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
        )
        no_leaks.append(transport.get_pid())
        assert await proto.lost is None
        assert proto.events == ["made", "exited", "lost"]
        transport.close()

    aio_run(main)


def test_extra_kwargs_reach_popen(aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import os; print(os.getcwd(), os.environ['TRIO_ASYNCIO_TEST'])",
            stdout=PIPE,
            cwd="/",
            env={"TRIO_ASYNCIO_TEST": "yes"},
        )
        no_leaks.append(proc.pid)
        assert await proc.communicate() == (b"/ yes\n", None)

    aio_run(main)


# ---- ours only: reaping, loop close, the thread fallback --------------------------


def test_transport_repr_and_class(trio_aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(Recorder, "cat")
        no_leaks.append(transport.get_pid())
        assert isinstance(transport, SubprocessTransport)
        text = repr(transport)
        assert f"pid={transport.get_pid()}" in text and "running" in text and "stdin=" in text
        transport.close()
        await proto.lost
        assert "returncode=-9" in repr(transport)

    trio_aio_run(main)


def test_loop_close_kills_and_reaps_running_children(
    trio_aio_run: Callable[..., Any], no_leaks: list[int]
) -> None:
    kept: list[Any] = []

    async def main() -> None:
        for _ in range(3):
            proc = await asyncio.create_subprocess_exec("sleep", "60", stdin=PIPE, stdout=PIPE)
            no_leaks.append(proc.pid)
            kept.append(proc)
        # Leave the open_loop() block with the children running.

    trio_aio_run(main)
    for proc in kept:
        assert proc.returncode == -signal.SIGKILL
        assert proc._transport._proc.returncode == -signal.SIGKILL  # the Popen knows
        # Never closed by their owner: still says so, but has nothing left to do.
        assert not proc._transport.is_closing()
        proc._transport.close()


def test_wait_cancelled_by_loop_close(
    trio_aio_run: Callable[..., Any], no_leaks: list[int]
) -> None:
    """open_loop() cancels a task blocked in wait(); the child dies with the loop."""
    kept: list[Any] = []

    async def waiter(proc: Any) -> None:
        await proc.wait()

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec("sleep", "60")
        no_leaks.append(proc.pid)
        kept.append(proc)
        asyncio.ensure_future(waiter(proc))
        await asyncio.sleep(0)

    trio_aio_run(main)
    assert kept[0].returncode == -signal.SIGKILL
    kept[0]._transport.close()


def test_unclosed_transport_warns_when_collected(trio_aio_run: Callable[..., Any]) -> None:
    pids: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(Recorder, "true")
        pids.append(transport.get_pid())
        await proto.lost

    with pytest.warns(ResourceWarning, match="unclosed transport"):
        trio_aio_run(main)
        gc.collect()
    assert_reaped(pids[0])


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make os.pidfd_open unavailable: the reaper falls back to waiter threads."""

    def unavailable(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", unavailable, raising=False)


@pytest.mark.usefixtures("no_pidfd")
def test_thread_fallback(trio_aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        no_leaks.append(proc.pid)
        reaper = asyncio.get_running_loop()._child_reaper
        assert isinstance(reaper._watches[proc.pid], _child_watching._ThreadWatch)
        assert await proc.communicate(b"threads") == (b"threads", None)
        proc = await asyncio.create_subprocess_exec("sleep", "60")
        no_leaks.append(proc.pid)
        proc.terminate()
        assert await proc.wait() == -signal.SIGTERM
        with pytest.raises(ProcessLookupError):
            proc.kill()

    trio_aio_run(main)


@pytest.mark.usefixtures("no_pidfd")
def test_thread_fallback_loop_close(trio_aio_run: Callable[..., Any], no_leaks: list[int]) -> None:
    kept: list[Any] = []

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec("sleep", "60")
        no_leaks.append(proc.pid)
        kept.append(proc)

    trio_aio_run(main)
    assert kept[0].returncode == -signal.SIGKILL
    kept[0]._transport.close()


def test_reaper_orphans_children_that_outlive_close(
    trio_aio_run: Callable[..., Any], no_leaks: list[int]
) -> None:
    """A child still alive when close() gives up is reaped by a thread later."""
    exits: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for use_pidfd in (True, False):
            proc = subprocess.Popen(["sleep", "60"])
            no_leaks.append(proc.pid)
            reaper = ChildReaper(loop)
            if use_pidfd:
                reaper.watch(proc.pid, exits.append)
            else:
                watch = _child_watching._ThreadWatch(reaper, proc.pid, exits.append)
                reaper._watches[proc.pid] = watch
            reaper.close(timeout=0)  # the child runs on: orphaned
            assert len(reaper) == 0
            assert exits == [-signal.SIGKILL] * (not use_pidfd)
            proc.kill()
            join_reaper_threads()
            proc.returncode = exits[-1]

    trio_aio_run(main)
    assert exits == [-signal.SIGKILL, -signal.SIGKILL]


def test_reaped_by_someone_else(
    trio_aio_run: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """If another waitpid() steals the exit status, the returncode is 255 (as the stdlib)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proc = subprocess.Popen(["true"])
        exits: list[int] = []
        done = loop.create_future()
        reaper = ChildReaper(loop)
        reaper.watch(proc.pid, lambda code: (exits.append(code), done.set_result(None)))
        proc.wait()  # steals it
        await done
        assert exits == [255]
        reaper.close()

    trio_aio_run(main)
    assert "will report returncode 255" in caplog.text


def test_subprocess_on_closed_loop_refused(no_leaks: list[int]) -> None:
    kept: list[Any] = []

    async def main() -> None:
        async with trio_asyncio.open_loop() as loop:
            kept.append(loop)

    trio.run(main)
    coro = kept[0].subprocess_exec(asyncio.SubprocessProtocol, "true")
    with pytest.raises(RuntimeError, match="closed"):
        coro.send(None)
    coro.close()
