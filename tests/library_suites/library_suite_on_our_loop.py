"""pytest plugin: run a third-party asyncio test suite on trio-asyncio's loop.

Loaded with ``-p library_suite_on_our_loop`` (``run.py`` puts this
directory on ``sys.path``). With ``LIBRARY_SUITE_LOOP=ours`` it imports
trio_asyncio, whose policy makes ``asyncio.new_event_loop()`` (and so
``asyncio.run()``, ``asyncio.Runner``, pytest-asyncio, aiohttp's and
anyio's runners) give our sync loop. With ``LIBRARY_SUITE_LOOP=stdlib`` it
imports nothing: the reference run.

Either way it counts the loops created, by kind, and writes them as JSON to
``$LIBRARY_SUITE_COUNTS.<pid>`` at the end of the session (one file per
pytest-xdist worker), so that the runner can prove where the tests ran.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

_counts = {"ours": 0, "stdlib": 0}


def _count_stdlib_loops() -> None:
    init = asyncio.BaseEventLoop.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        _counts["stdlib"] += 1
        init(self, *args, **kwargs)

    asyncio.BaseEventLoop.__init__ = counting_init  # type: ignore[method-assign]


def _count_our_loops() -> None:
    import trio_asyncio  # noqa: F401  (installs the policy)
    from trio_asyncio._loop_base import BaseTrioEventLoop

    init = BaseTrioEventLoop.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        _counts["ours"] += 1
        init(self, *args, **kwargs)

    BaseTrioEventLoop.__init__ = counting_init  # type: ignore[method-assign]


_count_stdlib_loops()
if os.environ.get("LIBRARY_SUITE_LOOP", "ours") == "ours":
    _count_our_loops()


def pytest_sessionfinish(session: Any) -> None:
    path = os.environ.get("LIBRARY_SUITE_COUNTS")
    if path:
        with open(f"{path}.{os.getpid()}", "w") as file:
            json.dump(_counts, file)
