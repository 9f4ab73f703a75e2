"""Helpers shared by the integration tests (and by their import-order subprocesses).

This module is imported by ``conftest.py`` and by the test modules, and also
by the subprocesses that check that a library imported *before*
``trio_asyncio`` still works. It therefore imports no third-party library
and does not import ``trio_asyncio`` at module level.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: Upper bound for one scenario. A hung loop is caught by the faulthandler
#: watchdog in conftest.py; this bound gives a readable error first.
SCENARIO_TIMEOUT = 60.0


def in_ci() -> bool:
    """Same rule as the Makefile: CI is on unless unset, empty, 0, false or no."""
    return os.environ.get("CI", "").strip() not in ("", "0", "false", "False", "FALSE", "no")


# -------------------------------------------------------------------- services


@dataclass(frozen=True)
class Service:
    name: str
    env_var: str
    default: str
    what: str

    @property
    def configured(self) -> str:
        return os.environ.get(self.env_var, self.default).strip()


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        Service(
            "postgres",
            "TRIO_ASYNCIO_TEST_POSTGRES",
            "127.0.0.1:5432",
            "PostgreSQL (trust auth, user postgres, database test)",
        ),
        Service(
            "mariadb",
            "TRIO_ASYNCIO_TEST_MARIADB",
            "127.0.0.1:3306",
            "MariaDB/MySQL (user root, empty password, database test)",
        ),
        Service("redis", "TRIO_ASYNCIO_TEST_REDIS", "127.0.0.1:6379", "Redis"),
        Service(
            "rabbitmq", "TRIO_ASYNCIO_TEST_RABBITMQ", "127.0.0.1:5672", "RabbitMQ (guest/guest)"
        ),
        Service("mqtt", "TRIO_ASYNCIO_TEST_MQTT", "127.0.0.1:1883", "an MQTT broker (Mosquitto)"),
        Service("nats", "TRIO_ASYNCIO_TEST_NATS", "127.0.0.1:4222", "NATS with JetStream"),
    )
}

#: Values of a service's variable that switch its tests off on purpose.
DISABLED = ("off", "skip", "none", "disabled")


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def service_problem(name: str) -> str | None:
    """``None`` if the service answers on TCP, else why it can't be used."""
    service = SERVICES[name]
    text = service.configured
    if text.lower() in DISABLED:
        return f"{service.what}: disabled by {service.env_var}={text}"
    try:
        host, port = parse_address(text)
    except ValueError as exc:
        return f"{service.what}: bad {service.env_var}: {exc}"
    try:
        with socket.create_connection((host, port), timeout=2.0):
            pass
    except OSError as exc:
        return (
            f"{service.what} not reachable at {host}:{port} ({exc}); "
            f"set {service.env_var}=host:port to point at one"
        )
    return None


def service_address(name: str) -> tuple[str, int]:
    """The address of a service, without checking it (subprocesses use this)."""
    return parse_address(SERVICES[name].configured)


def unique(prefix: str) -> str:
    """A name for a table, queue, key or stream that no other run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------ TLS


@dataclass(frozen=True)
class TLS:
    """Certificate files; each access to ``server`` or ``client`` makes a new context.

    New contexts, because libraries change the context they are given (httpx
    sets ALPN on it, for one).
    """

    cert_file: Path  #: the server's key and certificate chain (PEM)
    ca_file: Path  #: the CA's certificate (PEM)

    @property
    def server(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file)
        return context

    @property
    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls(directory: Path) -> TLS:
    """A CA and a server certificate for 127.0.0.1 and localhost, made now (trustme)."""
    try:
        import trustme
    except ImportError:
        import pytest

        pytest.skip("trustme is not installed (pip install -e '.[integration]')")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file = directory / "server.pem"
    ca_file = directory / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return TLS(cert_file, ca_file)


# ---------------------------------------------------------------------- modes

MODES = ("trio", "run_until_complete", "asyncio_run")


def _check_loop() -> None:
    import trio_asyncio

    loop = asyncio.get_running_loop()
    assert isinstance(loop, trio_asyncio.BaseTrioEventLoop), f"not our loop: {loop!r}"


async def _guarded(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    _check_loop()
    return await asyncio.wait_for(fn(*args), SCENARIO_TIMEOUT)


def run_trio_mode(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``fn(*args)`` called from Trio through ``aio_as_trio`` inside ``open_loop``."""
    import trio

    import trio_asyncio

    async def main() -> Any:
        with trio.fail_after(SCENARIO_TIMEOUT + 5):
            async with trio_asyncio.open_loop():
                return await trio_asyncio.aio_as_trio(_guarded)(fn, *args)

    return trio.run(main)


def run_sync_loop(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``fn(*args)`` through ``new_event_loop().run_until_complete``."""
    import trio_asyncio

    loop = trio_asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_guarded(fn, *args))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def run_asyncio_run(
    fn: Callable[..., Awaitable[Any]], *args: Any, loop_factory: bool = False
) -> Any:
    """``fn(*args)`` through ``asyncio.run`` (our policy, or ``loop_factory`` on 3.12+)."""
    import trio_asyncio

    if loop_factory:
        return asyncio.run(_guarded(fn, *args), loop_factory=trio_asyncio.new_event_loop)
    return asyncio.run(_guarded(fn, *args))


RUNNERS: dict[str, Callable[..., Any]] = {
    "trio": run_trio_mode,
    "run_until_complete": run_sync_loop,
    "asyncio_run": run_asyncio_run,
}


def run_trio(async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``trio.run(async_fn, loop, *args)`` with a loop open around it (Trio-side tests)."""
    import trio

    import trio_asyncio

    async def main() -> Any:
        with trio.fail_after(SCENARIO_TIMEOUT):
            async with trio_asyncio.open_loop() as loop:
                return await async_fn(loop, *args)

    return trio.run(main)


# ------------------------------------------------------- import order check


def all_runners() -> list[Callable[..., Any]]:
    """Every mode, plus ``asyncio.run(..., loop_factory=...)`` on 3.12+."""
    runners = list(RUNNERS.values())
    if sys.version_info >= (3, 12):
        runners.append(functools.partial(run_asyncio_run, loop_factory=True))
    return runners


def run_all_modes(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Used in the import-order subprocess: ``fn(*args)`` in every mode."""
    for runner in all_runners():
        runner(fn, *args)


def check_imported_first(library: str, test_module: str, function: str) -> None:
    """Run ``test_module.function()`` in a fresh interpreter that imported *library* first.

    The subprocess imports the library, checks that ``trio_asyncio`` (and
    ``trio``) are not loaded yet, then imports ``trio_asyncio`` and runs the
    scenario. A failure shows the subprocess's output.
    """
    script = "\n".join(
        [
            "import sys",
            f"import {library}",
            "assert 'trio_asyncio' not in sys.modules, 'library pulled in trio_asyncio'",
            "import trio_asyncio",
            f"sys.path.insert(0, {str(HERE)!r})",
            f"import {test_module}",
            f"{test_module}.{function}()",
            "print('IMPORT-FIRST-OK')",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT * 2,
        cwd=str(HERE),
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "IMPORT-FIRST-OK" in proc.stdout, output
