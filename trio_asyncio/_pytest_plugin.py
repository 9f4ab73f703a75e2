"""pytest plugin: the ``trio_asyncio_loop`` fixture, for tests run by pytest-trio.

Installed with the package and registered through the ``pytest11`` entry point
named ``trio_asyncio``, so there is nothing to configure: a Trio test (marked
``@pytest.mark.trio``, or any async test under pytest-trio's ``trio_mode``)
that asks for ``trio_asyncio_loop`` runs inside ``open_loop()``::

    @pytest.mark.trio
    async def test_something(trio_asyncio_loop):
        assert await trio_asyncio.aio_as_trio(asyncio_fn)() == 42

The loop is open for the whole test, including the other Trio fixtures that
depend on it, and is closed (its asyncio tasks cancelled) afterwards. With
pytest-trio's ``autojump_clock`` (or any ``trio.testing.MockClock``) the
loop's ``time()`` follows Trio's clock, so ``asyncio.sleep(3600)`` takes no
real time.

This module is imported by pytest in every session of an environment where
trio-asyncio is installed; it must not fail when pytest-trio is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._async_loop import TrioEventLoop, open_loop

try:
    from pytest_trio import trio_fixture as _fixture
except ImportError:  # pytest-trio is not installed
    _fixture = None


if _fixture is not None:

    @_fixture
    async def trio_asyncio_loop() -> AsyncIterator[TrioEventLoop]:
        """A trio-asyncio loop, open for the duration of a Trio test (pytest-trio)."""
        async with open_loop() as loop:
            yield loop

else:

    @pytest.fixture
    def trio_asyncio_loop() -> None:
        """A trio-asyncio loop, open for the duration of a Trio test (needs pytest-trio)."""
        pytest.fail(
            "the trio_asyncio_loop fixture needs pytest-trio to run Trio tests: "
            "pip install pytest-trio",
            pytrace=False,
        )
