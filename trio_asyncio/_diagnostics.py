"""Clear errors for asyncio code called from Trio without an adapter.

asyncio code run directly in a Trio task (``await some_asyncio_fn()`` instead
of ``await aio_as_trio(some_asyncio_fn)()``) usually fails first in
``asyncio.get_running_loop()`` with a bare "no running event loop". We put a
wrapper in its place (module attributes of ``asyncio`` and ``asyncio.events``,
which asyncio's own modules call through) that adds what to do when the
caller is Trio code inside ``open_loop()``. The message is unchanged
elsewhere, and the error is still a RuntimeError.

The reverse direction (Trio code awaited from asyncio) is handled in
``_compat.hide_trio_task``.
"""

from __future__ import annotations

import asyncio
import asyncio.events as _events
from typing import Any

from . import _compat
from ._core._current import current_loop

_get_running_loop = _compat.get_running_loop_or_none

ASYNCIO_FROM_TRIO = (
    "no running event loop: this asyncio code was called from Trio code. Inside "
    "'async with trio_asyncio.open_loop()', call asyncio functions through "
    "trio_asyncio.aio_as_trio(fn)(*args) (or await trio_asyncio.aio_as_trio(awaitable))."
)


def get_running_loop() -> Any:
    """Return the running event loop in the current OS thread (asyncio's API)."""
    loop = _get_running_loop()
    if loop is None:
        if current_loop.get() is not None and _compat.sniffio_state.name == "trio":
            raise RuntimeError(ASYNCIO_FROM_TRIO)
        raise RuntimeError("no running event loop")
    return loop


def install() -> None:
    if getattr(_events.get_running_loop, "__module__", None) == __name__:
        return
    get_running_loop.__doc__ = _events.get_running_loop.__doc__
    _events.get_running_loop = get_running_loop
    asyncio.get_running_loop = get_running_loop
