"""The pytest plugin (``trio_asyncio._pytest_plugin``): the ``trio_asyncio_loop`` fixture.

Each test writes a small test project to ``tmp_path`` and runs pytest on it in
a subprocess, with the plugin enabled as a user would enable it, and checks
the outcome counts. The projects' tests carry the real assertions.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pytest_trio")

TIMEOUT = 120
PLUGIN = "trio_asyncio._pytest_plugin"

INI = """\
[pytest]
filterwarnings =
    error
"""


def entry_point_registered() -> bool:
    return any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))


def run_project(
    tmp_path: Path,
    files: dict[str, str],
    *args: str,
    trio_mode: bool | None = False,
    enable: bool = True,
    python_prelude: str = "",
) -> tuple[dict[str, int], str]:
    """Run pytest on a project made of *files*; return outcome counts and the output."""
    ini = INI if trio_mode is None else f"{INI}trio_mode = {str(trio_mode).lower()}\n"
    (tmp_path / "pytest.ini").write_text(ini)
    for name, source in files.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    options = ["-p", "no:cacheprovider", "-p", "no:asyncio", "-rA", "-q", *args]
    if enable and not entry_point_registered():
        options[:0] = ["-p", PLUGIN]
    code = f"{python_prelude}\nimport sys, pytest\nsys.exit(pytest.main({options!r}))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = result.stdout + result.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    counts = {
        word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)
    }
    return counts, output


BASIC = """\
import asyncio
import time

import pytest
import trio

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio


@pytest.mark.trio
async def test_fixture_is_an_open_loop(trio_asyncio_loop):
    assert isinstance(trio_asyncio_loop, trio_asyncio.TrioEventLoop)
    assert trio_asyncio_loop.is_running()
    assert trio_asyncio.current_loop.get() is trio_asyncio_loop

    async def in_asyncio():
        assert asyncio.get_running_loop() is trio_asyncio_loop
        return await trio_as_aio(trio.sleep)(0) or "both ways"

    assert await aio_as_trio(in_asyncio)() == "both ways"


@pytest.mark.trio
async def test_autojump_makes_asyncio_sleep_instant(trio_asyncio_loop, autojump_clock):
    real_start = time.perf_counter()
    loop_start = trio_asyncio_loop.time()
    trio_start = trio.current_time()

    await aio_as_trio(asyncio.sleep)(3600)

    assert time.perf_counter() - real_start < 10
    assert trio_asyncio_loop.time() - loop_start >= 3600
    assert trio.current_time() - trio_start >= 3600


@pytest.mark.trio
async def test_asyncio_timeout_fires_with_autojump(trio_asyncio_loop, autojump_clock):
    async def wait_too_long():
        await asyncio.wait_for(asyncio.sleep(7200), timeout=60)

    start = trio_asyncio_loop.time()
    with pytest.raises(asyncio.TimeoutError):
        await aio_as_trio(wait_too_long)()
    assert 60 <= trio_asyncio_loop.time() - start < 7200


@pytest.mark.trio
async def test_trio_timeout_cancels_asyncio_with_autojump(trio_asyncio_loop, autojump_clock):
    with trio.move_on_after(30) as scope:
        await aio_as_trio(asyncio.sleep)(3600)
    assert scope.cancelled_caught
"""


def test_fixture_and_autojump_clock(tmp_path: Path) -> None:
    counts, output = run_project(tmp_path, {"test_basic.py": BASIC})
    assert counts == {"passed": 4}, output


def test_trio_mode_needs_no_marker(tmp_path: Path) -> None:
    source = """\
    import asyncio

    from trio_asyncio import aio_as_trio


    async def test_unmarked(trio_asyncio_loop, autojump_clock):
        assert await aio_as_trio(asyncio.sleep)(1000, result="slept") == "slept"
    """
    counts, output = run_project(tmp_path, {"test_mode.py": source}, trio_mode=True)
    assert counts == {"passed": 1}, output


FIXTURES = """\
import asyncio

import pytest
import trio

from trio_asyncio import aio_as_trio

leftover_tasks = []


@pytest.fixture
async def echo_server(trio_asyncio_loop):
    # A user's Trio fixture that starts an asyncio server on the test's loop.
    async def handle(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await aio_as_trio(asyncio.start_server)(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        with trio.CancelScope(shield=True):
            server.close()
            await aio_as_trio(server.wait_closed)()


@pytest.mark.trio
async def test_uses_asyncio_server_from_fixture(echo_server):
    async with await trio.open_tcp_stream("127.0.0.1", echo_server) as stream:
        await stream.send_all(b"ping\\n")
        reply = b""
        while chunk := await stream.receive_some():
            reply += chunk
    assert reply == b"ping\\n"


@pytest.mark.trio
async def test_leaves_a_task_running(trio_asyncio_loop):
    leftover_tasks.append(trio_asyncio_loop.create_task(asyncio.sleep(3600)))


def test_the_task_was_cancelled_at_teardown():
    [task] = leftover_tasks
    assert task.cancelled()
    assert task.get_loop().is_closed()


@pytest.mark.trio
async def test_each_test_gets_a_new_loop(trio_asyncio_loop):
    assert trio_asyncio_loop is not leftover_tasks[0].get_loop()
"""


def test_fixture_lifetime_and_use_from_other_fixtures(tmp_path: Path) -> None:
    counts, output = run_project(tmp_path, {"test_fixtures.py": FIXTURES}, "-p", "no:randomly")
    assert counts == {"passed": 4}, output


def test_errors_in_asyncio_callbacks_fail_the_test(tmp_path: Path) -> None:
    source = """\
    import pytest
    import trio


    def explode():
        raise ZeroDivisionError("from an asyncio callback")


    @pytest.mark.trio
    async def test_callback_error(trio_asyncio_loop):
        trio_asyncio_loop.call_soon(explode)
        await trio.sleep(1)
    """
    counts, output = run_project(tmp_path, {"test_error.py": source})
    assert counts == {"failed": 1}, output
    assert "ZeroDivisionError: from an asyncio callback" in output


def test_sync_test_cannot_use_the_fixture(tmp_path: Path) -> None:
    source = """\
    def test_sync(trio_asyncio_loop):
        pass
    """
    counts, output = run_project(tmp_path, {"test_sync.py": source})
    assert counts == {"error": 1}, output
    assert "Trio fixtures can only be used by Trio tests" in output


# Shadows the installed pytest_trio with a module that cannot be imported, as
# if pytest-trio were not installed. (A meta path finder would not do: pytest
# puts its assertion-rewriting importer first, and it handles pytest plugins.)
SHADOW_PYTEST_TRIO = """\
raise ModuleNotFoundError("No module named 'pytest_trio'", name="pytest_trio")
"""


def test_without_pytest_trio(tmp_path: Path) -> None:
    """The plugin loads without pytest-trio, and the fixture says what is missing."""
    source = """\
    def test_plain():
        pass


    def test_wants_loop(trio_asyncio_loop):
        pass
    """
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pytest_trio.py").write_text(SHADOW_PYTEST_TRIO)
    counts, output = run_project(
        tmp_path,
        {"test_no_trio.py": source},
        "-p",
        "no:trio",
        trio_mode=None,  # an unknown option without pytest-trio
        python_prelude=f"import sys; sys.path.insert(0, {str(shadow)!r})",
    )
    assert counts == {"passed": 1, "error": 1}, output
    assert "the trio_asyncio_loop fixture needs pytest-trio" in output


def test_works_as_an_entry_point_plugin(tmp_path: Path) -> None:
    """Loaded through a ``pytest11`` entry point, as an installed plugin is.

    If this installation registers none, a stand-in distribution on
    ``sys.path`` declares one.
    """
    source = """\
    import pytest


    @pytest.mark.trio
    async def test_loop(trio_asyncio_loop):
        assert trio_asyncio_loop.is_running()
    """
    prelude = ""
    if not entry_point_registered():
        dist_info = tmp_path / "site" / "trio_asyncio_plugin_stand_in-0.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: trio-asyncio-plugin-stand-in\nVersion: 0\n"
        )
        (dist_info / "entry_points.txt").write_text(f"[pytest11]\ntrio_asyncio = {PLUGIN}\n")
        prelude = f"import sys; sys.path.insert(0, {str(dist_info.parent)!r})"
    counts, output = run_project(
        tmp_path, {"test_ep.py": source}, enable=False, python_prelude=prelude
    )
    assert counts == {"passed": 1}, output
