"""The programs in examples/ run, print what they promise and exit cleanly.

Each runs as a subprocess, as a user would run it, with a timeout. "Cleanly"
means exit status 0 and nothing at all on stderr: no traceback, no "Exception
ignored", no ResourceWarning (made an error) for a socket left open.

Examples that need aiohttp or asyncpg are skipped when those are not
installed. The asyncpg example also needs PostgreSQL (``TRIO_ASYNCIO_PG_DSN``,
by default ``postgresql://postgres@127.0.0.1:5432/test``): without it the test
is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60
PYTHON = [sys.executable, "-W", "error::ResourceWarning"]

needs_aiohttp = pytest.mark.skipif(
    importlib.util.find_spec("aiohttp") is None, reason="aiohttp is not installed"
)
needs_asyncpg = pytest.mark.skipif(
    importlib.util.find_spec("asyncpg") is None, reason="asyncpg is not installed"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run examples/*name* with *args*; check that it exits cleanly; return its stdout."""
    result = subprocess.run(
        [*PYTHON, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout


def test_every_example_is_tested() -> None:
    tested = {
        "aiohttp_server.py",
        "asyncpg_from_trio.py",
        "demo.py",
        "legacy_asyncio_calls_trio.py",
        "len_prefixed_protocol.py",
    }
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


# ---- aiohttp -----------------------------------------------------------------------------


@needs_aiohttp
def test_aiohttp_server() -> None:
    out = run_example("aiohttp_server.py")
    assert re.search(r"^server: listening on http://127\.0\.0\.1:\d+$", out, re.M), out
    for n in (2, 3, 4):
        assert f"client: {n} squared is {n * n}\n" in out
    assert "server: stopped\n" in out
    beats = re.search(r"^heartbeat: a Trio task beat (\d+) times while the server ran$", out, re.M)
    assert beats is not None and int(beats.group(1)) > 0, out
    assert out.endswith("done\n")


@needs_aiohttp
def test_demo() -> None:
    out = run_example("demo.py")
    steps = re.findall(r"^(\d)\. ", out, re.M)
    assert steps == ["1", "2", "3", "4", "5", "6", "7"], out
    # sniffio's answer labels each line: both sides must have spoken.
    assert "[   trio] main() is running" in out
    assert "[asyncio] aiohttp's on_startup hook runs" in out
    assert "[asyncio] the aiohttp handler got GET /hello?name=Trio" in out
    assert "[   trio] the Trio helper looks up 'Trio'" in out
    assert "got 200 {'greeting': 'Hello, Trio!', 'handler ran under': 'asyncio'}" in out
    for name in ("Ann", "Bob", "Cy"):
        assert f"got 200 'Hello, {name}!'" in out
    assert "[asyncio] asyncio.sleep was cancelled" in out
    assert "[   trio] cancelled: True" in out
    assert "[   trio] aiohttp server stopped" in out
    assert out.rstrip().endswith("Done: the demo exits with status 0.")


# ---- asyncpg -----------------------------------------------------------------------------


def postgres_address(dsn: str) -> tuple[str, int]:
    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def postgres_reachable(dsn: str) -> str | None:
    """None if something accepts TCP connections at the DSN's address, else why not."""
    address = postgres_address(dsn)
    try:
        with socket.create_connection(address, timeout=5):
            return None
    except OSError as exc:
        return f"PostgreSQL is not reachable at {address[0]}:{address[1]}: {exc}"


@needs_asyncpg
def test_asyncpg_from_trio() -> None:
    dsn = os.environ.get("TRIO_ASYNCIO_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    problem = postgres_reachable(dsn)
    if problem is not None:
        if in_ci():
            pytest.fail(f"{problem} (CI=true: a database is required)")
        pytest.skip(f"{problem}; set TRIO_ASYNCIO_PG_DSN to use another database")
    out = run_example("asyncpg_from_trio.py", env={**os.environ, "TRIO_ASYNCIO_PG_DSN": dsn})
    assert out.startswith("connected: PostgreSQL ")
    assert "row: apple costs 0.5\nrow: banana costs 0.25\nrow: cherry costs 3\n" in out
    assert "timeout: the slow query was cancelled: True\n" in out
    assert "after the timeout: SELECT 1 gives 1\n" in out
    assert "pool: five concurrent Trio tasks got [10, 20, 30, 40, 50]\n" in out
    assert out.endswith("done\n")


@needs_asyncpg
def test_asyncpg_example_reports_an_unreachable_database() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        env = {**os.environ, "TRIO_ASYNCIO_PG_DSN": f"postgresql://postgres@127.0.0.1:{port}/test"}
        result = subprocess.run(
            [*PYTHON, str(EXAMPLES / "asyncpg_from_trio.py")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach PostgreSQL" in result.stderr


# ---- a legacy asyncio program ----------------------------------------------------------------


@pytest.mark.parametrize("style", ["run_until_complete", "asyncio.run"])
def test_legacy_asyncio_program_calls_trio(style: str) -> None:
    args = ["--asyncio-run"] if style == "asyncio.run" else []
    out = run_example("legacy_asyncio_calls_trio.py", *args)
    checksums = re.findall(r"^checksum blob-(\d): [0-9a-f]{12}$", out, re.M)
    assert checksums == ["0", "1", "2", "3"], out
    assert "countdown 3\ncountdown 2\ncountdown 1\n" in out
    assert "timeout: asyncio.wait_for cancelled the Trio task\n" in out
    assert "asyncio.gather: [0, 1, 2]\n" in out
    assert "loop: SyncTrioEventLoop\n" in out
    assert out.endswith("done\n")


# ---- an asyncio.Protocol server run from Trio --------------------------------------------------

TEXTS = ["hello world", "trio", "asyncio", "😀 unicode"]


def test_protocol_server_and_client_in_one_program() -> None:
    out = run_example("len_prefixed_protocol.py")
    for text in TEXTS:
        assert f"server: received {text!r}\n" in out
        assert f"client: sent {text!r}, got 'ok'\n" in out
    assert out.index("server: received 'trio'") < out.index("client: sent 'trio'")
    assert "server: connection closed\nserver: closed\ndone\n" in out


def restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_protocol_server_and_client_as_separate_programs() -> None:
    server = subprocess.Popen(
        [*PYTHON, str(EXAMPLES / "len_prefixed_protocol.py"), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell may start us with SIGINT ignored, which the child would
        # inherit: then Python installs no KeyboardInterrupt handler.
        preexec_fn=restore_sigint,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.fullmatch(r"server: serving on 127\.0\.0\.1:(\d+)\n", first)
        assert match is not None, first + server.stderr.read()  # type: ignore[union-attr]
        out = run_example("len_prefixed_protocol.py", "send", match.group(1), "one", "two words")
        assert out == "client: sent 'one', got 'ok'\nclient: sent 'two words', got 'ok'\ndone\n"
        server.send_signal(signal.SIGINT)  # Ctrl+C
        rest, errors = server.communicate(timeout=TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, errors
    assert errors == ""
    assert "server: received 'one'\nserver: received 'two words'\n" in rest
    assert rest.endswith("server: closed\nserver: exit\ndone\n"), rest
