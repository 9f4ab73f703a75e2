"""Every private detail of asyncio, Trio and sniffio that trio-asyncio relies on.

Nothing else in the package touches a private name of those libraries; if a
new Python or Trio release moves one of these, this is the one module to
change, and ``tests/test_compat.py`` checks each item on every supported
Python.

What we rely on, and why:

* ``asyncio.events._set_running_loop`` / ``_get_running_loop``: exported in
  ``asyncio.events.__all__`` for event-loop implementors; it is how
  ``asyncio.get_running_loop()`` (including references imported before us)
  finds our loop while a callback batch runs.
* ``Handle._run()``: runs a handle's callback in its context and routes an
  exception to ``loop.call_exception_handler``; every loop calls it.
* ``Handle._cancelled`` and ``TimerHandle._when``: read on the hot path
  instead of the public methods, to save a call per callback.
* ``TimerHandle.cancel()`` calls ``loop._timer_handle_cancelled(handle)``; our
  loop implements that method so cancelled timers are counted and compacted.
  ``TimerHandle._scheduled`` is kept true while a timer is in our heap, as the
  stdlib loop does, because the handle's ``cancel`` reads it through us.
* ``Handle._source_traceback``: set in debug mode; trimmed so it points at the
  caller rather than at our loop.
* Trio's default clock class: ``loop.time()`` follows Trio's clock only when a
  test installed a non-default one (such as ``MockClock``).
* ``trio._core._run.GLOBAL_RUN_CONTEXT.task``: while a Trio-hosted loop runs
  a batch of asyncio callbacks, Trio's "current task" is replaced by a
  sentinel, so Trio code awaited from asyncio without ``trio_as_aio`` fails at
  once with an error that says so, instead of silently running in (and
  corrupting the cancel scopes of) the loop's own Trio task. Trio's SIGINT
  handler reads that task's KI protection, so handlers in front of it check
  :func:`trio_task_hidden` first (see ``_sigint_deferral``).
* ``GLOBAL_RUN_CONTEXT``'s per-thread state is stashed between two runs of a
  sync loop whose Trio guest run is alive, so the thread looks like a plain
  thread to synchronous code in between.
* Trio's SIGINT handler is recognised by its module (``trio.*``), so that
  removing an asyncio signal handler that replaced it puts Trio's back.
* ``sniffio.thread_local``: public in sniffio, listed here for completeness.
* ``_signal.getsignal`` / ``_signal.signal``: the C functions under the
  ``signal`` module's, which wraps them only to turn numbers into enums
  (about 6 µs a pair, against 0.6 µs). A sync run puts its SIGINT handler
  in place and back (see ``_sigint_deferral``): that would triple the cost
  of ``run_until_complete(noop())``. Same arguments, same results, except
  that ``SIG_DFL`` / ``SIG_IGN`` come back as plain ints (equal to the enums).
"""

from __future__ import annotations

import asyncio
import asyncio.events as _events

import sniffio
import trio
from trio._core import _run as _trio_run

try:
    import _signal as _signal_functions
except ImportError:  # pragma: no cover - not CPython
    import signal as _signal_functions  # type: ignore[no-redef]

set_running_loop = _events._set_running_loop
get_running_loop_or_none = _events._get_running_loop
sniffio_state = sniffio.thread_local
fast_getsignal = _signal_functions.getsignal
fast_setsignal = _signal_functions.signal


def clock_is_default(clock: trio.abc.Clock) -> bool:
    """Whether *clock* is Trio's own real-time clock (not MockClock or a custom one)."""
    cls = type(clock)
    return cls.__name__ == "SystemClock" and cls.__module__.startswith("trio.")


def trim_source_traceback(obj: object) -> None:
    """Drop our own frame from a debug-mode source traceback."""
    tb = getattr(obj, "_source_traceback", None)
    if tb:
        del tb[-1]


def handle_parts(handle: asyncio.Handle) -> tuple[object, tuple, object]:
    """The callback, arguments and context of a handle (for diagnostics)."""
    return handle._callback, handle._args, handle._context


_run_context = _trio_run.GLOBAL_RUN_CONTEXT

TRIO_FROM_ASYNCIO = (
    "Trio code was called from asyncio code (a callback or task of a trio-asyncio "
    "loop) without an adapter. Wrap the Trio function with "
    "trio_asyncio.trio_as_aio(fn)(*args), or use loop.run_trio(fn, *args)."
)


class _NotATrioTask:
    """Stands in for Trio's current task while asyncio callbacks run."""

    __slots__ = ()

    # Every use fails *before* Trio stores the sentinel anywhere (a parking
    # lot keys its waiters by task, so hashing must fail too).
    def __getattr__(self, name: str) -> object:
        raise RuntimeError(TRIO_FROM_ASYNCIO)

    def __setattr__(self, name: str, value: object) -> None:
        raise RuntimeError(TRIO_FROM_ASYNCIO)

    def __hash__(self) -> int:
        raise RuntimeError(TRIO_FROM_ASYNCIO)

    def __eq__(self, other: object) -> bool:
        raise RuntimeError(TRIO_FROM_ASYNCIO)

    def __repr__(self) -> str:
        return "<asyncio context: no Trio task>"


_NOT_A_TRIO_TASK = _NotATrioTask()


def hide_trio_task() -> object:
    """Replace Trio's current task by a sentinel; return what to restore."""
    ctx = _run_context
    task = ctx.__dict__.get("task")
    ctx.task = _NOT_A_TRIO_TASK
    return task


def trio_task_hidden() -> bool:
    """Whether asyncio code runs in a Trio task right now (its task hidden by hide_trio_task).

    Trio's SIGINT handler reads the current task's KI protection, and the
    sentinel refuses that with a RuntimeError: a handler in front of Trio's
    must not pass the signal on then.
    """
    return _run_context.__dict__.get("task") is _NOT_A_TRIO_TASK


def restore_trio_task(task: object) -> None:
    if task is None:
        _run_context.__dict__.pop("task", None)
    else:
        _run_context.task = task


def set_task_context(task: trio.lowlevel.Task, context: object) -> None:
    """Make a parked Trio task run its next steps in *context*.

    Trio reads ``Task.context`` afresh at every step; our pooled worker tasks
    use this to run each job in the contextvars of the asyncio code that
    submitted it, without paying for a new Trio task per job.
    """
    task.context = context  # type: ignore[assignment]


def quiet_pending_task(task: object) -> None:
    """Don't log "Task was destroyed but it is pending!" for *task* (as run_until_complete)."""
    try:
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    except AttributeError:
        pass


def is_trio_signal_handler(handler: object) -> bool:
    """Whether *handler* is a signal handler Trio installed (its KeyboardInterrupt one)."""
    if getattr(handler, "_trio_asyncio_wraps_trio", False) is True:
        return True  # ours, standing in front of Trio's (see _sigint_deferral)
    module = getattr(handler, "__module__", None) or ""
    return module == "trio" or module.startswith("trio.")


def stash_trio_run_state() -> dict[str, object]:
    """Take this thread's Trio run state away (a guest run between two host runs).

    A Trio guest run marks its thread as "inside a Trio run" for its whole
    life. Our sync loop only lets Trio run inside ``run_forever``, so between
    runs it stashes that state, letting plain code (including ``trio.run()``)
    see an ordinary thread.
    """
    state = dict(_run_context.__dict__)
    _run_context.__dict__.clear()
    return state


def restore_trio_run_state(state: dict[str, object]) -> None:
    """Give back what :func:`stash_trio_run_state` took."""
    _run_context.__dict__.update(state)


def trio_run_active() -> bool:
    """Whether this thread is inside a Trio run (or a guest run's active part)."""
    return "runner" in _run_context.__dict__
