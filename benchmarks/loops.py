"""Loop kinds: how to run a workload on the stdlib loop, uvloop and trio-asyncio.

Every run gets a fresh event loop (and, for ``trio_asyncio``, a fresh
``trio.run``), closed afterwards. Modules are imported only when a loop of
their kind is made, so a measurement process carries no other loop's code.
"""

from __future__ import annotations

import asyncio
import importlib.util
import traceback
from typing import Any

from ._registry import Workload

#: What each loop kind is, for the table's legend.
DESCRIPTIONS = {
    "stdlib": "asyncio.SelectorEventLoop()",
    "uvloop": "uvloop.new_event_loop()",
    "trio_asyncio": "trio.run + trio_asyncio.open_loop(), called with aio_as_trio",
    "trio_asyncio_sync": "trio_asyncio.new_event_loop() (sync mode)",
}


def unavailable_reason(kind: str) -> str | None:
    """Why loop *kind* cannot run in this interpreter, or None if it can."""
    if kind == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed"
    if kind == "trio_asyncio_sync":
        import trio_asyncio

        if not hasattr(trio_asyncio, "new_event_loop"):
            return "trio_asyncio.new_event_loop() does not exist yet"
    if kind not in DESCRIPTIONS:
        return f"unknown loop kind {kind!r}"
    return None


def missing_requirement(wl: Workload) -> str | None:
    """The first module that *wl* needs and that cannot be imported, or None."""
    for module in wl.requires:
        if importlib.util.find_spec(module) is None:
            return module
    return None


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "stdlib":
        return asyncio.SelectorEventLoop()
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    if kind == "trio_asyncio_sync":
        import trio_asyncio

        return trio_asyncio.new_event_loop()  # type: ignore[attr-defined,no-any-return]
    raise ValueError(f"loop kind {kind!r} is not made by _new_loop()")


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    try:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def run_once(kind: str, wl: Workload, size: int) -> float:
    """Run *wl* once at *size* on a fresh loop of *kind*; return the seconds it reports."""
    if kind == "trio_asyncio":
        return _run_in_open_loop(wl, size)
    loop = _new_loop(kind)
    try:
        if wl.kind == "aio":
            return float(loop.run_until_complete(wl.fn(size)))
        if wl.kind == "sync":
            return float(wl.fn(loop, size))
        if wl.kind == "trio":
            return float(loop.run_until_complete(_trio_from_asyncio(wl, size)))
        raise ValueError(f"unknown workload kind {wl.kind!r}")
    finally:
        _close_loop(loop)


async def _trio_from_asyncio(wl: Workload, size: int) -> float:
    """Run the Trio workload *wl* from asyncio code on a sync-mode loop."""
    import trio_asyncio

    return float(await trio_asyncio.trio_as_aio(wl.fn)(size))


def _run_in_open_loop(wl: Workload, size: int) -> float:
    import trio

    import trio_asyncio

    if wl.kind == "sync":
        raise ValueError("a sync workload cannot run on a Trio-hosted loop")

    async def main() -> float:
        async with trio_asyncio.open_loop():
            if wl.kind == "trio":
                return float(await wl.fn(size))
            return float(await trio_asyncio.aio_as_trio(wl.fn)(size))

    return float(trio.run(main))


def warmup_size(size: int) -> int:
    """The size of the warm-up run that precedes a measurement."""
    return max(2, size // 10)


def measure(kind: str, wl: Workload, size: int, *, warmup: bool = True) -> dict[str, Any]:
    """Warm up (optionally), then time *wl* on a fresh loop; never raises.

    Returns ``{"status": "ok", "seconds": s}``, or a status of ``"notimpl"``
    (the loop raised NotImplementedError) or ``"error"`` with a ``"note"``.
    """
    try:
        if warmup:
            run_once(kind, wl, warmup_size(size))
        return {"status": "ok", "seconds": run_once(kind, wl, size)}
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return describe_failure(exc)


def describe_failure(exc: BaseException) -> dict[str, Any]:
    """Classify a failed run: missing API ("notimpl") or anything else ("error")."""
    missing = _find_not_implemented(exc)
    if missing is not None:
        frames = traceback.extract_tb(missing.__traceback__)
        where = frames[-1].name if frames else "?"
        detail = f": {missing}" if str(missing) else ""
        return {"status": "notimpl", "note": f"not implemented yet ({where}{detail})"}
    lines = traceback.format_exception_only(type(exc), exc)
    return {
        "status": "error",
        "note": "".join(lines).strip().splitlines()[-1][:300],
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def _find_not_implemented(exc: BaseException) -> BaseException | None:
    """A NotImplementedError in *exc*, its causes, contexts or group members."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NotImplementedError):
            return current
        todo.extend(getattr(current, "exceptions", ()))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return None
