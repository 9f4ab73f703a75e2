"""How asyncio finds our loops without being told: the event loop policy.

For compatibility with trio-asyncio 0.16, importing ``trio_asyncio`` makes
``asyncio.new_event_loop()`` (and so ``asyncio.run()`` and
``asyncio.get_event_loop()`` outside Trio) return a :class:`SyncTrioEventLoop`,
and makes ``asyncio.get_event_loop()`` inside an ``open_loop()`` block return
that block's loop, even from Trio code.

Policies are deprecated from Python 3.14; there, nothing is installed and
programs pass ``loop_factory=trio_asyncio.new_event_loop`` to
``asyncio.run()`` / ``asyncio.Runner`` instead (which works from 3.11/3.12).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from ._core._current import current_loop
from ._sync_loop import SyncTrioEventLoop

POLICIES_SUPPORTED = sys.version_info < (3, 14)

_DefaultPolicy: Any = asyncio.DefaultEventLoopPolicy if POLICIES_SUPPORTED else object


class TrioPolicy(_DefaultPolicy):  # type: ignore[misc,valid-type]
    """The stdlib's default policy, but making trio-asyncio loops."""

    def new_event_loop(self) -> SyncTrioEventLoop:
        return SyncTrioEventLoop()

    def get_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = current_loop.get()
        if loop is not None and not loop.is_closed():
            return loop  # type: ignore[no-any-return]
        return super().get_event_loop()  # type: ignore[no-any-return]


def install() -> None:
    """Install :class:`TrioPolicy` unless the program chose another policy already."""
    if not POLICIES_SUPPORTED:
        return
    current = asyncio.get_event_loop_policy()
    if type(current) is asyncio.DefaultEventLoopPolicy:
        asyncio.set_event_loop_policy(TrioPolicy())
