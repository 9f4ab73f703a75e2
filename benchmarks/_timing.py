"""The timed region of a workload: a clean heap before, a perf_counter around.

Workloads call :func:`start` once their setup is done and :func:`stop` when
the measured part is over, and return what :func:`stop` returned. Before the
clock starts, :func:`start` collects garbage and then, according to the GC
mode, either freezes the surviving objects (``"freeze"``, the default: the
collector stays on, so a loop that allocates more pays for it, but it no
longer walks the modules each loop imported) or turns the collector off
(``"off"``).
"""

from __future__ import annotations

import gc
from time import perf_counter

GC_MODES = ("freeze", "off", "on")

_gc_mode = "freeze"


def set_gc_mode(mode: str) -> None:
    """Choose what :func:`start` does with the garbage collector (one of ``GC_MODES``)."""
    global _gc_mode
    if mode not in GC_MODES:
        raise ValueError(f"unknown GC mode {mode!r}; expected one of {', '.join(GC_MODES)}")
    _gc_mode = mode


def start() -> float:
    """Collect garbage, set the GC up for timing, and return the start time."""
    gc.collect()
    if _gc_mode == "freeze":
        gc.freeze()
    elif _gc_mode == "off":
        gc.disable()
    return perf_counter()


def stop(started: float) -> float:
    """Return the seconds elapsed since :func:`start` and restore the GC."""
    elapsed = perf_counter() - started
    if _gc_mode == "freeze":
        gc.unfreeze()
    elif _gc_mode == "off":
        gc.enable()
    return elapsed
