"""Async-generator hooks that share the thread with Trio's.

Python has one pair of async-generator hooks per thread, and Trio installs
its own for the length of a run; it claims every generator first iterated
inside a Trio task. Our asyncio callbacks *are* run by a Trio task, so left
alone Trio would finalize asyncio generators with Trio semantics.

The dispatcher below sits on top of whatever hooks were installed before it
(usually Trio's). A generator first iterated while one of our loops runs a
batch of asyncio callbacks belongs to that loop: it is finalized with
``aclose()`` as an asyncio task, and ``shutdown_asyncgens`` closes it.
Every other generator is passed on to the previous hooks unchanged.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import weakref
from typing import Any

from .. import _compat

_state = threading.local()


class _Dispatcher:
    """The per-thread hook pair; installed while at least one loop needs it.

    One per thread, for good: hooks installed on top of it (a sync loop's
    Trio guest run) keep a reference to it and may put it back later.
    """

    def __init__(self) -> None:
        self.users = 0
        self.previous = sys.get_asyncgen_hooks()
        # id(agen) -> owning loop. Safe to key by id: firstiter rewrites or
        # drops the entry before any new generator with that id can be finalized.
        self.owners: dict[int, tuple[Any, weakref.ref[Any]]] = {}
        self._prune_at = 64

    def firstiter(self, agen: Any) -> None:
        loop = _compat.get_running_loop_or_none()
        if isinstance(loop, AsyncGenMixin) and _compat.sniffio_state.name == "asyncio":
            self.owners[id(agen)] = (loop, weakref.ref(agen))
            loop._asyncgens.add(agen)
            if len(self.owners) > self._prune_at:
                self._prune()
            return
        # Not ours: forget a stale entry of an exhausted generator of ours
        # that had this id, or finalizer() would hand this one to that loop.
        self.owners.pop(id(agen), None)
        hook = self.previous.firstiter
        if hook is not None:
            hook(agen)

    def finalizer(self, agen: Any) -> None:
        entry = self.owners.pop(id(agen), None)
        if entry is not None:
            entry[0]._finalize_asyncgen(agen)
            return
        hook = self.previous.finalizer
        if hook is not None:
            hook(agen)
        else:  # pragma: no cover - nobody else installed hooks
            agen.aclose().close()

    def _prune(self) -> None:
        # Generators that ran to completion are never finalized: forget them.
        self.owners = {key: v for key, v in self.owners.items() if v[1]() is not None}
        self._prune_at = max(64, 2 * len(self.owners))


def _install() -> None:
    dispatcher = getattr(_state, "dispatcher", None)
    if dispatcher is None:
        dispatcher = _state.dispatcher = _Dispatcher()
    if dispatcher.users == 0:
        current = sys.get_asyncgen_hooks()
        if current.firstiter != dispatcher.firstiter:  # never our own previous
            dispatcher.previous = current
        sys.set_asyncgen_hooks(firstiter=dispatcher.firstiter, finalizer=dispatcher.finalizer)
    dispatcher.users += 1


def _uninstall() -> None:
    dispatcher = getattr(_state, "dispatcher", None)
    if dispatcher is None or dispatcher.users == 0:
        return
    dispatcher.users -= 1
    if dispatcher.users == 0:
        # Like the stdlib loop: the thread gets back the hooks it had before,
        # even if someone installed others on top meanwhile (see
        # AsyncGenMixin._uninstall_asyncgen_hooks for the sync loop's Trio).
        sys.set_asyncgen_hooks(*dispatcher.previous)


def _hooks_above_ours() -> Any:
    """The hooks installed on top of our dispatcher, or None if ours are on top."""
    current = sys.get_asyncgen_hooks()
    dispatcher = getattr(_state, "dispatcher", None)
    if dispatcher is None or current.firstiter == dispatcher.firstiter:
        return None
    return current


class AsyncGenMixin:
    def __init__(self) -> None:
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._hooks_installed = False
        # Hooks that were on top of ours when a run ended: a sync loop's Trio
        # guest run installs its own during a run and outlives it. They are
        # taken off between runs and put back on top at the next one.
        self._asyncgen_hooks_above: Any = None

    def _install_asyncgen_hooks(self) -> None:
        if not self._hooks_installed:
            self._hooks_installed = True
            _install()
            above, self._asyncgen_hooks_above = self._asyncgen_hooks_above, None
            if above is not None:
                sys.set_asyncgen_hooks(*above)

    def _uninstall_asyncgen_hooks(self) -> None:
        if self._hooks_installed:
            self._hooks_installed = False
            self._asyncgen_hooks_above = _hooks_above_ours()
            _uninstall()

    def _finalize_asyncgen(self, agen: Any) -> None:
        # Called from the GC, possibly in another thread: schedule aclose().
        self._asyncgens.discard(agen)
        if not self.is_closed():  # type: ignore[attr-defined]
            self.call_soon_threadsafe(self.create_task, agen.aclose())  # type: ignore[attr-defined]

    async def shutdown_asyncgens(self) -> None:
        """Close every async generator still open on this loop (asyncio-flavoured)."""
        self._asyncgens_shutdown_called = True
        if not self._asyncgens:
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler(  # type: ignore[attr-defined]
                    {
                        "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )
