"""Which trio-asyncio loop the current Trio task belongs to."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: The loop of the innermost ``open_loop()`` block around the current Trio
#: task (None outside one). Public, as in trio-asyncio 0.16:
#: ``trio_asyncio.current_loop.get()``.
current_loop: ContextVar[Any] = ContextVar("trio_aio_loop", default=None)

NO_LOOP = (
    "There is no trio-asyncio loop here. Run this inside "
    "'async with trio_asyncio.open_loop():' (or trio_asyncio.run()), or pass loop=."
)


def get_current_loop() -> Any:
    """The current loop, or RuntimeError saying how to get one."""
    loop = current_loop.get()
    if loop is None:
        raise RuntimeError(NO_LOOP)
    return loop
