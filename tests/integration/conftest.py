"""Fixtures for the integration tests: services, modes and a watchdog.

- ``run`` is parametrized over the modes: ``run(fn, *args)`` runs the asyncio
  coroutine function ``fn`` on our loop from Trio (``open_loop`` and
  ``aio_as_trio``), through ``run_until_complete`` and through
  ``asyncio.run``.
- ``postgres``, ``mariadb``, ``redis_server``, ``rabbitmq``, ``mqtt_broker``
  and ``nats_server`` give a service's ``(host, port)``. A service that does
  not answer skips the test with the reason, and fails it under CI.
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Callable, Iterator
from typing import Any

import _harness
import pytest

#: Seconds before a hung test dumps every thread's stack and ends the run.
WATCHDOG = 120


@pytest.fixture(autouse=True)
def _watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(WATCHDOG, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=_harness.MODES)
def run(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``run(fn, *args)``: the asyncio scenario ``fn(*args)`` in one mode."""
    return _harness.RUNNERS[request.param]


_problems: dict[str, str | None] = {}


def _service(name: str) -> tuple[str, int]:
    if name not in _problems:
        _problems[name] = _harness.service_problem(name)
    problem = _problems[name]
    if problem is not None:
        service = _harness.SERVICES[name]
        disabled = service.configured.lower() in _harness.DISABLED
        if _harness.in_ci() and not disabled:
            pytest.fail(f"CI: {problem}", pytrace=False)
        pytest.skip(problem)
    return _harness.service_address(name)


@pytest.fixture
def postgres() -> tuple[str, int]:
    return _service("postgres")


@pytest.fixture
def mariadb() -> tuple[str, int]:
    return _service("mariadb")


@pytest.fixture
def redis_server() -> tuple[str, int]:
    return _service("redis")


@pytest.fixture
def rabbitmq() -> tuple[str, int]:
    return _service("rabbitmq")


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    return _service("mqtt")


@pytest.fixture
def nats_server() -> tuple[str, int]:
    return _service("nats")


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> _harness.TLS:
    """A CA made at test time and a certificate for 127.0.0.1 and localhost."""
    return _harness.make_tls(tmp_path_factory.mktemp("tls"))
