"""trio-asyncio: a complete asyncio event loop that runs on top of Trio.

Layers, each importing only from those below it (docs/design.rst):

1. ``_compat`` (private details of asyncio/Trio) and ``_core`` (scheduling,
   timers, tasks, errors, executors, async generators);
2. ``_io`` (fd watching, sockets, transports, TLS, pipes, subprocesses, signals);
3. the drivers: ``_loop_base`` (shared, with the Trio bridge),
   ``_async_loop`` (Trio-hosted: ``open_loop``) and ``_sync_loop``;
4. ``_adapters`` (``aio_as_trio``, ``trio_as_aio`` and friends);
5. this facade, which only re-exports.
"""

from ._adapters import (
    aio_as_trio as aio_as_trio,
    allow_asyncio as allow_asyncio,
    asyncio_as_trio as asyncio_as_trio,
    run_aio_coroutine as run_aio_coroutine,
    run_aio_future as run_aio_future,
    run_aio_generator as run_aio_generator,
    run_trio as run_trio,
    run_trio_task as run_trio_task,
    trio_as_aio as trio_as_aio,
    trio_as_asyncio as trio_as_asyncio,
)
from ._async_loop import TrioEventLoop as TrioEventLoop, open_loop as open_loop, run as run
from ._core._current import current_loop as current_loop
from ._core._executors import TrioExecutor as TrioExecutor
from ._deprecation import TrioAsyncioDeprecationWarning as TrioAsyncioDeprecationWarning
from ._diagnostics import install as _install_diagnostics
from ._loop_base import BaseTrioEventLoop as BaseTrioEventLoop
from ._policy import TrioPolicy as TrioPolicy, install as _install_policy
from ._sync_loop import SyncTrioEventLoop as SyncTrioEventLoop, new_event_loop as new_event_loop
from ._version import __version__ as __version__

_install_policy()
_install_diagnostics()
