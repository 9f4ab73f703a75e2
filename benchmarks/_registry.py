"""The workload registry: what each benchmark is, how big, and where it can run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Loop kinds, in the order of the table's columns.
LOOP_KINDS = ("stdlib", "uvloop", "trio_asyncio", "trio_asyncio_sync")

#: Which loop kinds can run each kind of workload function:
#: ``aio``  -- ``async def f(size) -> float``, asyncio code;
#: ``trio`` -- ``async def f(size) -> float``, Trio code inside a trio-asyncio loop;
#: ``sync`` -- ``def f(loop, size) -> float``, drives a loop that is not running.
RUNNABLE_ON = {
    "aio": frozenset(LOOP_KINDS),
    "trio": frozenset({"trio_asyncio", "trio_asyncio_sync"}),
    "sync": frozenset({"stdlib", "uvloop", "trio_asyncio_sync"}),
}

#: Groups, in table order. Geometric means are taken over "core" and "io".
GROUPS = ("core", "crosscall", "io", "sync")


@dataclass(frozen=True)
class Workload:
    """One benchmark: a function that returns the seconds its timed part took."""

    name: str
    fn: Callable[..., Any]
    kind: str
    group: str
    size: int
    quick_size: int
    #: What one operation is ("call", "timer", "round trip", "byte", ...).
    unit: str
    description: str
    #: "time": show time per operation; "throughput": MB/s; "rate": operations/s.
    display: str = "time"
    #: Loop kinds this workload is meant for (None: all that can run its kind).
    loops: frozenset[str] | None = None
    #: Workload whose stdlib time is the reference for the ratio (None: this one).
    baseline: str | None = None
    #: Modules that must be importable, else the workload is skipped.
    requires: tuple[str, ...] = field(default_factory=tuple)

    def runs_on(self, loop_kind: str) -> bool:
        """Whether this workload applies to *loop_kind* at all."""
        if loop_kind not in RUNNABLE_ON[self.kind]:
            return False
        return self.loops is None or loop_kind in self.loops


REGISTRY: dict[str, Workload] = {}


def workload(
    *,
    group: str,
    size: int,
    quick_size: int,
    unit: str,
    kind: str = "aio",
    display: str = "time",
    loops: tuple[str, ...] | None = None,
    baseline: str | None = None,
    requires: tuple[str, ...] = (),
    name: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as a workload (its docstring is the description)."""
    if kind not in RUNNABLE_ON:
        raise ValueError(f"unknown workload kind {kind!r}")
    if group not in GROUPS:
        raise ValueError(f"unknown workload group {group!r}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        if key in REGISTRY:
            raise ValueError(f"workload {key!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY[key] = Workload(
            name=key,
            fn=fn,
            kind=kind,
            group=group,
            size=size,
            quick_size=quick_size,
            unit=unit,
            description=doc[0] if doc else key,
            display=display,
            loops=frozenset(loops) if loops is not None else None,
            baseline=baseline,
            requires=requires,
        )
        return fn

    return register


def all_workloads() -> dict[str, Workload]:
    """Every registered workload, in table order (by group, then definition order)."""
    from . import io_workloads, workloads  # noqa: F401  (registration side effects)

    ordered = sorted(REGISTRY.values(), key=lambda w: GROUPS.index(w.group))
    return {w.name: w for w in ordered}
