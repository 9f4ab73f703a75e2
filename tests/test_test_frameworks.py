"""Existing asyncio test suites on our loop: pytest-asyncio and IsolatedAsyncioTestCase.

pytest-asyncio is exercised in a subprocess, on a small test project written
to ``tmp_path``, in each of the ways a project can switch it to our loop:

* its ``pytest_asyncio_loop_factories`` hook (pytest-asyncio 1.3+; the
  mechanism it recommends);
* an ``event_loop_policy`` fixture returning ``trio_asyncio.TrioPolicy()``
  (deprecated by pytest-asyncio 1.x, policies by Python 3.14);
* nothing but ``import trio_asyncio`` in ``conftest.py``: pytest-asyncio's
  default ``event_loop_policy`` fixture returns the current policy, which the
  import replaced, and ``asyncio.Runner`` then asks it for a loop.

Each test in those projects proves where it runs by checking the type of the
running loop; a control run without trio-asyncio shows that the check fails
on the stdlib loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import unittest
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_asyncio
from trio_asyncio import trio_as_aio

SUBPROCESS_TIMEOUT = 120
OUR_LOOP = "SyncTrioEventLoop"

needs_policies = pytest.mark.skipif(
    sys.version_info >= (3, 14), reason="event loop policies are deprecated from 3.14"
)


# ---- pytest-asyncio ---------------------------------------------------------------------

pytest_asyncio = pytest.importorskip("pytest_asyncio")


def _has_loop_factories_hook() -> bool:
    from pytest_asyncio import plugin

    specs = getattr(plugin, "PytestAsyncioSpecs", None)
    return hasattr(specs, "pytest_asyncio_loop_factories")


INI = """\
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error::ResourceWarning
    error::pytest.PytestUnraisableExceptionWarning
    ignore:Overriding the "event_loop_policy" fixture is deprecated:DeprecationWarning
"""

# Proves the loop without importing trio_asyncio (so an import in conftest.py
# is the only thing that can switch the loop).
TEST_PROOF = f"""\
import asyncio

import pytest


@pytest.mark.asyncio
async def test_runs_on_trio_asyncio():
    assert type(asyncio.get_running_loop()).__name__ == "{OUR_LOOP}"
"""

TEST_WITH_TRIO = f"""\
import asyncio

import pytest
import pytest_asyncio
import trio

import trio_asyncio

module_loops = []


@pytest_asyncio.fixture
async def fixture_loop():
    # An async fixture runs on the test's loop.
    loop = asyncio.get_running_loop()
    yield loop
    assert asyncio.get_running_loop() is loop


async def trio_double(x):
    await trio.sleep(0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0)
    return 2 * x


@pytest.mark.asyncio
async def test_trio_code_inside(fixture_loop):
    loop = asyncio.get_running_loop()
    assert type(loop).__name__ == "{OUR_LOOP}"
    assert fixture_loop is loop
    assert await trio_asyncio.trio_as_aio(trio_double)(21) == 42
    assert await loop.run_trio(trio_double, 2) == 4


@pytest.mark.asyncio(loop_scope="module")
async def test_module_scoped_loop_first():
    module_loops.append(asyncio.get_running_loop())
    assert type(module_loops[-1]).__name__ == "{OUR_LOOP}"


@pytest.mark.asyncio(loop_scope="module")
async def test_module_scoped_loop_second():
    assert asyncio.get_running_loop() is module_loops[0]
    assert await trio_asyncio.trio_as_aio(trio_double)(1) == 2
"""

CONFTESTS = {
    "hook": """\
import trio_asyncio


def pytest_asyncio_loop_factories(config, item):
    return {"trio_asyncio": trio_asyncio.new_event_loop}
""",
    "policy fixture": """\
import pytest

import trio_asyncio


@pytest.fixture(scope="session")
def event_loop_policy():
    return trio_asyncio.TrioPolicy()
""",
    "import only": """\
import trio_asyncio  # noqa: F401
""",
    "control": """\
# No trio-asyncio here: the stdlib loop.
""",
}


def run_pytest_project(tmp_path: Path, conftest: str, tests: dict[str, str]) -> tuple[int, str]:
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "conftest.py").write_text(conftest)
    for name, source in tests.items():
        (tmp_path / name).write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return result.returncode, result.stdout + result.stderr


def outcome_counts(output: str) -> dict[str, int]:
    summary = output.strip().splitlines()[-1]
    return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", summary)}


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(
            "hook",
            marks=pytest.mark.skipif(
                not _has_loop_factories_hook(),
                reason="this pytest-asyncio has no pytest_asyncio_loop_factories hook",
            ),
        ),
        pytest.param("policy fixture", marks=needs_policies),
        pytest.param("import only", marks=needs_policies),
    ],
)
def test_pytest_asyncio_runs_tests_on_our_loop(tmp_path: Path, how: str) -> None:
    tests = {"test_proof.py": TEST_PROOF}
    if how != "import only":
        # This module imports trio_asyncio itself, which would hide whether
        # the conftest import alone is enough.
        tests["test_with_trio.py"] = TEST_WITH_TRIO
    returncode, output = run_pytest_project(tmp_path, CONFTESTS[how], tests)
    assert returncode == 0, output
    expected = {"test_proof.py": 1, "test_with_trio.py": 3}
    assert outcome_counts(output) == {"passed": sum(expected[name] for name in tests)}, output


def test_pytest_asyncio_control_run_is_on_the_stdlib_loop(tmp_path: Path) -> None:
    """Without trio-asyncio, the proof fails: it really tells the loops apart."""
    returncode, output = run_pytest_project(
        tmp_path, CONFTESTS["control"], {"test_proof.py": TEST_PROOF}
    )
    assert returncode == 1, output
    assert outcome_counts(output) == {"failed": 1}, output
    assert "_UnixSelectorEventLoop" in output


# ---- unittest.IsolatedAsyncioTestCase ---------------------------------------------------


async def trio_double(x: int) -> int:
    await trio.sleep(0)
    return 2 * x


def isolated_case(**class_attributes: Any) -> type[unittest.IsolatedAsyncioTestCase]:
    class Case(unittest.IsolatedAsyncioTestCase):
        seen: dict[str, Any]

        async def asyncSetUp(self) -> None:
            self.seen["setUp"] = asyncio.get_running_loop()

        async def test_runs_on_our_loop(self) -> None:
            loop = asyncio.get_running_loop()
            self.seen["test"] = loop
            assert type(loop).__name__ == OUR_LOOP
            assert await trio_as_aio(trio_double)(21) == 42
            self.addAsyncCleanup(self.cleanup)

        async def cleanup(self) -> None:
            self.seen["cleanup"] = asyncio.get_running_loop()
            assert await trio_as_aio(trio_double)(1) == 2

        async def asyncTearDown(self) -> None:
            self.seen["tearDown"] = asyncio.get_running_loop()

    for name, value in class_attributes.items():
        setattr(Case, name, value)
    Case.seen = {}
    return Case


def run_case(case: type[unittest.TestCase]) -> None:
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
    problems = [text for _, text in result.errors + result.failures]
    assert result.wasSuccessful(), "\n".join(problems)
    assert result.testsRun == 1


def check_one_loop(seen: dict[str, Any]) -> None:
    loops = {id(loop) for loop in seen.values()}
    assert len(loops) == 1, seen
    loop = seen["test"]
    assert type(loop) is trio_asyncio.SyncTrioEventLoop
    assert loop.is_closed()
    assert set(seen) == {"setUp", "test", "cleanup", "tearDown"}


@needs_policies
def test_isolated_asyncio_test_case_through_the_policy() -> None:
    case = isolated_case()
    run_case(case)
    check_one_loop(case.seen)


@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="IsolatedAsyncioTestCase.loop_factory is 3.13+"
)
@pytest.mark.parametrize(
    "factory",
    [
        trio_asyncio.SyncTrioEventLoop,
        # A plain function would become a method of the test case.
        staticmethod(trio_asyncio.new_event_loop),
    ],
    ids=["class", "function"],
)
def test_isolated_asyncio_test_case_with_loop_factory(factory: Any) -> None:
    case = isolated_case(loop_factory=factory)
    run_case(case)
    check_one_loop(case.seen)


UNITTEST_MODULE = f"""\
import asyncio
import unittest
{{import_line}}

class Case(unittest.IsolatedAsyncioTestCase):
    async def test_loop(self):
        self.assertEqual(type(asyncio.get_running_loop()).__name__, "{OUR_LOOP}")
"""


@pytest.mark.parametrize(
    "import_line",
    [pytest.param("import trio_asyncio", marks=needs_policies), "# control: no trio_asyncio"],
    ids=["import only", "control"],
)
def test_python_m_unittest(tmp_path: Path, import_line: str) -> None:
    (tmp_path / "test_case.py").write_text(
        textwrap.dedent(UNITTEST_MODULE.format(import_line=import_line))
    )
    result = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", "test_case"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    if import_line.startswith("#"):
        assert result.returncode == 1, result.stderr
        assert "_UnixSelectorEventLoop" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "test_loop (test_case.Case" in result.stderr
