"""``python -m trio_asyncio``: programs, modules and the REPL, in subprocesses.

Where it makes sense, a program is also run with plain ``python`` (on the
stdlib loop) and both runs are compared: the runner must change the loop and
nothing else.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

PROGRAMS = Path(__file__).parent / "sync_programs"
SUBPROCESS_TIMEOUT = 60
OUR_LOOP = "SyncTrioEventLoop"
STDLIB_LOOP = "_UnixSelectorEventLoop"


def python(*args: str, cwd: Path = PROGRAMS, stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def ours(*args: str, cwd: Path = PROGRAMS, stdin: str | None = None) -> Any:
    return python("-m", "trio_asyncio", *args, cwd=cwd, stdin=stdin)


def report_of(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout.splitlines()[0])


# ---- usage ----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    result = ours(flag)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m trio_asyncio")
    for words in ("-m module", "program", "REPL", "SyncTrioEventLoop"):
        assert words in result.stdout


def test_version() -> None:
    import trio_asyncio

    result = ours("--version")
    assert result.returncode == 0
    assert result.stdout == f"trio-asyncio {trio_asyncio.__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frobnicate"], "unknown option --frobnicate"),
        (["-m"], "-m needs a module name"),
        (["--"], "a program is needed after --"),
        (["no_such_program.py"], "can't open file 'no_such_program.py'"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = ours(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_unknown_module() -> None:
    result = ours("-m", "no_such_module_here")
    assert result.returncode == 1
    assert result.stderr == "python -m trio_asyncio: No module named no_such_module_here\n"


# ---- programs ---------------------------------------------------------------------------


def test_program_sees_what_python_program_would(tmp_path: Path) -> None:
    """argv, __name__, sys.path[0] and __main__ as for `python program.py`; our loop."""
    program = str(PROGRAMS / "show_context.py")
    ran = ours(program, "a", "--b", "-m", cwd=tmp_path)
    plain = python(program, "a", "--b", "-m", cwd=tmp_path)
    assert ran.returncode == plain.returncode == 0, ran.stderr + plain.stderr
    report, expected = report_of(ran), report_of(plain)
    assert report["loop"] == OUR_LOOP
    assert expected["loop"] == STDLIB_LOOP
    expected["loop"] = OUR_LOOP
    assert report == expected
    assert report["name"] == "__main__"
    assert report["argv"] == [program, "a", "--b", "-m"]
    assert report["path0"] == str(PROGRAMS.resolve())
    assert report["main_module"] is True


def test_relative_program_path(tmp_path: Path) -> None:
    ran = ours("show_context.py", "x")
    plain = python("show_context.py", "x")
    assert report_of(ran)["argv"] == report_of(plain)["argv"] == ["show_context.py", "x"]
    assert report_of(ran)["path0"] == report_of(plain)["path0"]


def test_double_dash_ends_our_options() -> None:
    result = ours("--", "show_context.py", "--help")
    assert result.returncode == 0, result.stderr
    assert report_of(result)["argv"] == ["show_context.py", "--help"]


@pytest.mark.parametrize(
    "how",
    [["exit", "0"], ["exit", "3"], ["exit-message", "goodbye"], ["raise"], ["interrupt"]],
    ids=lambda how: "-".join(how),
)
def test_exit_status_is_the_programs(how: list[str]) -> None:
    ran = ours("show_context.py", *how)
    plain = python("show_context.py", *how)
    assert ran.returncode == plain.returncode
    assert report_of(ran)["loop"] == OUR_LOOP
    if how[0] == "exit-message":
        assert ran.returncode == 1
        assert ran.stderr == plain.stderr == "goodbye\n"
    if how == ["interrupt"]:
        assert ran.returncode == -signal.SIGINT
    if how[0] in ("raise", "interrupt"):
        # The traceback is the program's, without the runner's frames.
        assert ran.stderr.startswith("Traceback (most recent call last):\n")
        assert 'show_context.py", line' in ran.stderr
        last = plain.stderr.strip().splitlines()[-1]
        assert ran.stderr.strip().splitlines()[-1] == last
    if how[0] == "raise":
        assert "_runner.py" not in ran.stderr
        assert "runpy" not in ran.stderr
        assert ran.returncode == 1


def test_program_using_trio_and_asyncio_run(tmp_path: Path) -> None:
    program = tmp_path / "uses_trio.py"
    program.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            import sniffio, trio, trio_asyncio

            async def trio_part(x):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trio.sleep, 0.001)
                return sniffio.current_async_library(), await trio.to_thread.run_sync(abs, x)

            async def main():
                library, value = await trio_asyncio.trio_as_aio(trio_part)(-7)
                return type(asyncio.get_running_loop()).__name__, library, value

            print(*asyncio.run(main()))
            loop = asyncio.new_event_loop()
            print(type(loop).__name__, loop.run_until_complete(loop.run_trio(trio_part, -2))[1])
            loop.close()
            """
        )
    )
    result = ours(str(program), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{OUR_LOOP} trio 7", f"{OUR_LOOP} 2"]


def test_directory_program(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(
        "import asyncio, sys\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__name__\n"
        "print(__name__, sys.path[0], asyncio.run(main()))\n"
    )
    result = ours("app", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["__main__", "app", OUR_LOOP]


def test_legacy_program_same_transcript_as_on_the_stdlib() -> None:
    """tests/sync_programs/legacy_reuse.py: one loop, many runs, reused objects."""
    ran = ours("legacy_reuse.py")
    plain = python("legacy_reuse.py")
    assert ran.returncode == plain.returncode == 0, ran.stderr + plain.stderr
    assert ran.stderr == ""
    *transcript, loop_line = ran.stdout.splitlines()
    *expected, stdlib_line = plain.stdout.splitlines()
    assert transcript == expected
    assert (loop_line, stdlib_line) == (f"loop: {OUR_LOOP}", f"loop: {STDLIB_LOOP}")


# ---- modules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "module_file", "spec"),
    [
        (["-m", "cli_pkg.mod"], "mod.py", "cli_pkg.mod"),
        (["-mcli_pkg.mod"], "mod.py", "cli_pkg.mod"),
        (["-m", "cli_pkg"], "__main__.py", "cli_pkg.__main__"),
    ],
    ids=["module", "attached", "package"],
)
def test_module_sees_what_python_m_would(args: list[str], module_file: str, spec: str) -> None:
    ran = ours(*args, "x", "-y")
    plain = python("-m", args[-1].removeprefix("-m"), "x", "-y")
    assert ran.returncode == plain.returncode == 0, ran.stderr + plain.stderr
    report, expected = report_of(ran), report_of(plain)
    assert (report["loop"], expected["loop"]) == (OUR_LOOP, STDLIB_LOOP)
    expected["loop"] = OUR_LOOP
    assert report == expected
    assert report["name"] == "__main__"
    assert report["spec"] == spec
    assert report["argv"] == [str(PROGRAMS / "cli_pkg" / module_file), "x", "-y"]
    assert report["path0"] == str(PROGRAMS)
    assert report["main_module"] is True


def test_module_exit_status() -> None:
    result = ours("-m", "cli_pkg.mod", "exit", "5")
    assert result.returncode == 5
    assert report_of(result)["loop"] == OUR_LOOP


# ---- Python 3.14+: without a policy -----------------------------------------------------


def test_route_new_event_loop_without_a_policy() -> None:
    """What the runner does on 3.14+, checked here with the stdlib's policy put back."""
    result = python(
        "-c",
        textwrap.dedent(
            """
            import asyncio, sys, warnings
            from trio_asyncio import _runner

            warnings.simplefilter("ignore", DeprecationWarning)
            if sys.version_info < (3, 14):
                asyncio.set_event_loop_policy(None)  # the stdlib's own policy
            loop = asyncio.new_event_loop()
            print(type(loop).__name__)
            loop.close()
            _runner.route_new_event_loop()
            _runner.route_new_event_loop()  # a second time changes nothing

            async def main():
                return type(asyncio.get_running_loop()).__name__

            loop = asyncio.new_event_loop()
            print(type(loop).__name__, asyncio.new_event_loop.__name__)
            loop.close()
            print(asyncio.run(main()))
            if sys.version_info >= (3, 11):
                with asyncio.Runner() as runner:
                    print(runner.run(main()))
            else:
                print("SyncTrioEventLoop")
            """
        ),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        STDLIB_LOOP,
        f"{OUR_LOOP} new_event_loop",
        OUR_LOOP,
        OUR_LOOP,
    ]


# ---- the REPL ---------------------------------------------------------------------------


def repl_output(text: str) -> list[str]:
    """Lines of REPL output, without the prompts."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^((>>>|\.\.\.) ?)+", "", line)
        if line:
            lines.append(line)
    return lines


def test_repl_session() -> None:
    result = ours(
        stdin=(
            "import asyncio\n"
            "await asyncio.sleep(0)\n"
            "type(asyncio.get_running_loop()).__name__\n"
            "1+1\n"
            "exit()\n"
        )
    )
    assert result.returncode == 0, result.stderr
    assert repl_output(result.stdout) == [f"'{OUR_LOOP}'", "2"]
    banner = result.stderr.splitlines()[0]
    assert "trio-asyncio" in banner
    assert OUR_LOOP in banner
    assert "await" in result.stderr
    assert result.stderr.endswith("exiting trio-asyncio REPL...\n")


def test_repl_trio_errors_and_definitions() -> None:
    result = ours(
        stdin=textwrap.dedent(
            """\
            import pickle, sniffio
            await trio_asyncio.trio_as_aio(trio.sleep)(0.001)
            x = await asyncio.sleep(0, 5)
            x * 2
            sniffio.current_async_library()
            async def double_in_trio(n):
                await trio.sleep(0)
                return 2 * n

            await trio_asyncio.trio_as_aio(double_in_trio)(21)
            1/0
            class Point:
                pass

            type(pickle.loads(pickle.dumps(Point()))).__qualname__
            __name__
            raise SystemExit(4)
            """
        )
    )
    assert result.returncode == 4, result.stderr
    assert repl_output(result.stdout) == ["10", "'asyncio'", "42", "'Point'", "'__main__'"]
    # The traceback shows the input only, not the machinery around it.
    assert (
        'Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\n'
        "ZeroDivisionError: division by zero\n"
    ) in result.stderr


def test_repl_end_of_input_exits() -> None:
    result = ours(stdin="40 + 2\n")
    assert result.returncode == 0, result.stderr
    assert repl_output(result.stdout) == ["42"]


def test_repl_exit_cancels_leftover_tasks() -> None:
    result = ours(
        stdin=textwrap.dedent(
            """\
            async def forever():
                try:
                    await asyncio.sleep(3600)
                finally:
                    print("cancelled at exit", flush=True)

            task = asyncio.ensure_future(forever())
            await asyncio.sleep(0)
            exit()
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert repl_output(result.stdout) == ["cancelled at exit"]


class Child:
    """A subprocess whose stdout lines are read as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=PROGRAMS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False)),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: Any, into: list[str], announce: bool) -> None:
        for line in stream:
            into.append(line)
            if announce:
                self.lines.put(line)
        stream.close()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def wait_for(self, marker: str) -> None:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no {marker!r} from the child: {self.output()}")
            if marker in line:
                return

    def finish(self) -> tuple[int, str, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            returncode = self.proc.wait(SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the child did not exit: {self.output()}")
        for reader in self.readers:
            reader.join(SUBPROCESS_TIMEOUT)
        return returncode, "".join(self.out), "".join(self.err)

    def kill(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait(SUBPROCESS_TIMEOUT)
        for reader in self.readers:
            reader.join(SUBPROCESS_TIMEOUT)

    def output(self) -> str:
        return f"stdout:\n{''.join(self.out)}\nstderr:\n{''.join(self.err)}"


REPL_WAITS = {
    # Each prints "ready" once it is blocked, then waits 5 s unless interrupted.
    "await": (
        'handle = asyncio.get_running_loop().call_soon(lambda: print("ready", flush=True)); '
        'await asyncio.sleep(5); print("not interrupted")\n'
    ),
    "synchronous code": (
        'print("ready", flush=True); deadline = time.monotonic() + 5; '
        'any(time.monotonic() > deadline for _ in iter(int, 1)); print("not interrupted")\n'
    ),
    "trio": textwrap.dedent(
        """\
        async def trio_wait():
            say = functools.partial(print, "ready", flush=True)
            trio_asyncio.current_loop.get().call_soon_threadsafe(say)
            await trio.sleep(5)

        await trio_asyncio.trio_as_aio(trio_wait)(); print("not interrupted")
        """
    ),
}


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
    reason="SIGINT is ignored here, and would be in the REPL",
)
@pytest.mark.parametrize(
    "waiting_in",
    [
        "await",
        "synchronous code",
        "trio",
    ],
)
def test_repl_ctrl_c_interrupts_the_input_and_the_repl_goes_on(waiting_in: str) -> None:
    child = Child("-m", "trio_asyncio")
    child.send("import functools, time\n")
    child.send(REPL_WAITS[waiting_in])
    child.wait_for("ready")
    child.proc.send_signal(signal.SIGINT)
    child.send("'after' + '!'\nexit()\n")
    returncode, out, err = child.finish()
    assert returncode == 0, err
    assert repl_output(out) == ["ready", "'after!'"], err
    assert "\nKeyboardInterrupt\n" in err


def test_repl_uses_its_own_main_module(tmp_path: Path) -> None:
    """Input runs in a fresh __main__, not in trio_asyncio.__main__."""
    result = ours(stdin="sorted(k for k in globals() if not k.startswith('__'))\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert repl_output(result.stdout) == ["['asyncio', 'trio', 'trio_asyncio']"]
    assert os.listdir(tmp_path) == []
