"""Call chains that cross the Trio/asyncio boundary, an oracle for them, and runners.

Used by ``test_cancellation_chains.py``. A :class:`Chain` describes a stack of
*levels* whose flavour alternates (Trio, asyncio, Trio, ...). Each level
calls the next one through one *link* (an adapter use), and the last level
(the leaf) sleeps. At most one :class:`Injection` disturbs the chain at one
level and point: a Trio cancellation, an asyncio cancellation, an exception
or a KeyboardInterrupt raised in the code.

* :func:`expected_outcome` is the oracle: a pure function of the description
  that predicts the value (with the marker of the scope that absorbed a
  cancellation) or the exception that comes out, following docs/usage.rst.
* :class:`ChainRun` builds and runs the chain; it logs what each level did
  so that the runners can check invariants beyond the outcome (innermost
  levels finish first, every context manager is exited, every generator is
  finalized, no task is left running, no callback runs on a closed loop).
* :func:`run_trio_hosted` runs a chain under ``trio.run`` + ``open_loop()``
  with an autojump ``MockClock``; :func:`run_sync_mode` runs one on the sync
  loop (``new_event_loop()`` + ``run_until_complete``) in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

TRIO = "trio"
AIO = "aio"

#: How a level calls the next one (the adapter used depends on the flavours).
#: ``call``: ``aio_as_trio(fn)(...)`` / ``trio_as_aio(fn)(...)``;
#: ``future``: an existing asyncio task awaited through ``aio_as_trio(task)``
#: (Trio to asyncio), or a Trio call wrapped in an asyncio task (asyncio to Trio);
#: ``awaitable``: ``aio_as_trio(coro)`` / ``trio_as_aio(coro)``;
#: ``iter``: an async generator of the next level's flavour, iterated through
#: the adapter; ``cm``: an async context manager of the next level's flavour,
#: entered through the adapter (the next level's work runs in ``__aenter__``).
LINKS = ("call", "future", "awaitable", "iter", "cm")

#: Where an injection happens, at its level:
#: ``before``: before the level calls the next one (or, at the leaf, sleeps);
#: inside a generator's first step or a CM's ``__aenter__`` when the level is
#: one; ``during``: while the level waits for the rest of the chain (a timer
#: or a failing sibling task, at virtual time ``DURING``);
#: ``after_yield``: in a generator level, after its first item;
#: ``iter_body`` / ``cm_body``: in the body of the ``async for`` / ``async
#: with`` through which the level uses the next one;
#: ``cm_exit``: in a CM level's exit code.
POINTS = ("before", "during", "after_yield", "iter_body", "cm_body", "cm_exit")

#: What is injected. ``trio_cancel``: a cancel scope around the rest of the
#: level (``CancelScope.cancel()`` or ``move_on_after``); ``aio_timeout``:
#: ``asyncio.timeout`` (3.11+); ``aio_wait_for``: ``asyncio.wait_for``;
#: ``aio_cancel_child``: ``cancel()`` on the task or future the level awaits,
#: whose CancelledError it catches; ``aio_cancel_self``: ``cancel()`` on the
#: level's own task, not caught; ``error``: a :class:`ChainError`;
#: ``keyboard_interrupt``: ``raise KeyboardInterrupt`` in the code.
KINDS = (
    "trio_cancel",
    "aio_timeout",
    "aio_wait_for",
    "aio_cancel_child",
    "aio_cancel_self",
    "error",
    "keyboard_interrupt",
)

#: Kinds whose cancellation is absorbed at the injection's level (the level
#: returns a marker instead of the rest of the chain's value).
ABSORBED = {
    "trio_cancel": "cancelled",
    "aio_cancel_child": "cancelled",
    "aio_timeout": "timeout",
    "aio_wait_for": "timeout",
}

HAS_ASYNCIO_TIMEOUT = sys.version_info >= (3, 11)  # asyncio.timeout and TaskGroup


class ChainError(Exception):
    """The exception injected by ``error``."""


@dataclass(frozen=True)
class Injection:
    """One disturbance: *kind* at *point* of level *level*."""

    level: int
    point: str
    kind: str


@dataclass(frozen=True)
class Chain:
    """A chain of levels: level 0 has flavour *first*, and flavours alternate.

    ``links[i]`` is how level ``i`` calls level ``i + 1``; ``cleanup[i]``
    says whether level ``i`` awaits something while it cleans up (in its
    ``finally``), which shows whether callers really wait for the callee's
    cleanup. With ``close_generators`` a consumer closes the generator it
    iterated (``aclose()`` through the adapter, as the docs advise);
    without, a generator left suspended is finalized by its owner (the
    asyncio loop's hooks or Trio's). Without ``helping`` (Trio-hosted runs
    only), Trio tasks never run asyncio callbacks themselves (docs/design.rst,
    "Helping"): every cross-call goes through the loop's scheduler task, as
    when the loop is busy.
    """

    first: str
    links: tuple[str, ...]
    cleanup: tuple[bool, ...]
    injection: Injection | None = None
    close_generators: bool = False
    helping: bool = True

    @property
    def depth(self) -> int:
        return len(self.links) + 1

    def flavour(self, level: int) -> str:
        other = AIO if self.first == TRIO else TRIO
        return self.first if level % 2 == 0 else other

    def is_leaf(self, level: int) -> bool:
        return level == self.depth - 1

    def entered_by(self, level: int) -> str | None:
        """The link through which *level* is called (None for level 0)."""
        return self.links[level - 1] if level > 0 else None


# ---- which injections make sense where ---------------------------------------------


def injection_is_valid(chain: Chain, inj: Injection) -> bool:
    """Whether *inj* describes something the chain can do (see POINTS and KINDS)."""
    level, point, kind = inj.level, inj.point, inj.kind
    if not 0 <= level < chain.depth or point not in POINTS or kind not in KINDS:
        return False
    flavour = chain.flavour(level)
    if kind == "trio_cancel" and flavour != TRIO:
        return False
    if kind.startswith("aio_") and flavour != AIO:
        return False
    if kind == "aio_timeout" and not HAS_ASYNCIO_TIMEOUT:
        return False
    link = None if chain.is_leaf(level) else chain.links[level]
    if point == "before":
        return kind != "aio_cancel_child" or link in (None, "call", "future")
    if point == "during":
        if kind == "keyboard_interrupt":
            return False  # only raised directly in the code, never by a sibling
        if kind == "error" and flavour == AIO and not HAS_ASYNCIO_TIMEOUT:
            return False  # the failing sibling lives in an asyncio.TaskGroup
        return kind != "aio_cancel_child" or link in (None, "call", "future")
    if point == "after_yield":
        return chain.entered_by(level) == "iter"
    if point in ("iter_body", "cm_body"):
        return link == point[: -len("_body")] and kind not in ("aio_wait_for", "aio_cancel_child")
    # cm_exit
    return chain.entered_by(level) == "cm" and kind in (
        "error",
        "keyboard_interrupt",
        "aio_cancel_self",
    )


def valid_injections(chain: Chain) -> list[Injection]:
    """Every injection that makes sense for *chain* (whose own injection is ignored)."""
    return [
        inj
        for level in range(chain.depth)
        for point in POINTS
        for kind in KINDS
        if injection_is_valid(chain, inj := Injection(level, point, kind))
    ]


# ---- the oracle ------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What a run must produce: a *value*, or an exception of type *raises*.

    ``group``: the exception is an exception group holding exactly the
    injected :class:`ChainError`. ``same_object``: the exception is the very
    object that was injected (exceptions cross the boundary unchanged).
    """

    value: Any = None
    raises: type[BaseException] | None = None
    group: bool = False
    same_object: bool = False


def marker(inj: Injection) -> tuple[str, int]:
    """The value a level returns when its injected cancellation was absorbed."""
    return (ABSORBED[inj.kind], inj.level)


def expected_outcome(chain: Chain) -> Expected:
    """Predict the outcome of running *chain* (docs/usage.rst, "What each side sees").

    * No injection: every level returns ``("L", level, inner)``, where
      *inner* is the leaf's ``"leaf"``, the next level's value, or for an
      ``iter`` link the tuple of the generator's two items (the next level's
      value and ``("second", next)``).
    * A cancellation that the injecting level absorbs (a Trio cancel scope,
      an ``asyncio.timeout`` / ``wait_for``, a cancelled child it catches):
      that level's inner value becomes the marker; every other level is
      unaffected. This holds however deep the rest of the chain is: a Trio
      caller that is cancelled cancels the asyncio task and waits for it,
      and gets ``trio.Cancelled`` back when it ends cancelled; asyncio
      cancelling a Trio call cancels the Trio scope, and the future ends
      cancelled when the Trio code has finished.
    * ``error``: the same :class:`ChainError` object comes out of
      ``trio.run`` (or ``run_until_complete``), through every level. A
      failing *sibling* (point ``during``) is collected by its Trio nursery
      or asyncio ``TaskGroup``, so an exception group holding it comes out.
    * ``keyboard_interrupt``: the same KeyboardInterrupt object comes out.
      Where it is raised in Trio code called from asyncio, asyncio sees a
      RuntimeError, and the original is raised from ``open_loop()`` /
      ``run_until_complete()`` (documented).
    * ``aio_cancel_self``: the level's task ends cancelled; the Trio caller
      above gets ``asyncio.CancelledError`` as an ordinary exception (it
      is not a Trio cancellation; documented), which then makes every
      asyncio level above end cancelled too: ``CancelledError`` comes out.

    Decisions where the docs are silent (what a Trio or asyncio user would
    expect):

    * A KeyboardInterrupt raised in *asyncio* code (the docs only cover Trio
      code called from asyncio) also comes out of ``open_loop()`` /
      ``run_until_complete()`` as the same object, once: not wrapped in a
      group, not twice, however many levels it crossed.
    * ``asyncio.CancelledError`` raised by a Trio level (the exception it
      got from asyncio below) reaches the asyncio level above as that
      exception, which ends that task cancelled: the asyncio view.
    * A failing sibling is collected by Trio's nursery (strict exception
      groups) or asyncio's TaskGroup: a group with just that exception, the
      rest of the chain having unwound as cancelled (no stray errors).
    * ``trio_as_aio(cm).__aenter__`` cancelled from asyncio waits for the
      Trio side, as any cancelled Trio call does (the docs say so of calls).
    * ``async with aio_as_trio(cm)`` whose body is cancelled by Trio still
      starts ``cm.__aexit__`` (Python's ``async with`` contract, and what
      the code intends; docs/usage.rst says the opposite). Today that holds
      only when the loop takes its helping path: the tests keep the other
      cases as a known issue.
    * A generator abandoned half-way is finalized by its owner (the asyncio
      loop for an asyncio generator, Trio for a Trio one) before the run
      ends, with its owner's flavour.
    """
    inj = chain.injection
    if inj is not None:
        if inj.kind == "keyboard_interrupt":
            return Expected(raises=KeyboardInterrupt, same_object=True)
        if inj.kind == "error":
            if inj.point == "during":
                return Expected(raises=ExceptionGroup, group=True)
            return Expected(raises=ChainError, same_object=True)
        if inj.kind == "aio_cancel_self":
            return Expected(raises=asyncio.CancelledError)
    return Expected(value=_expected_value(chain, 0))


def _expected_value(chain: Chain, level: int) -> Any:
    inj = chain.injection
    if (
        inj is not None
        and inj.level == level
        and inj.point in ("before", "during", "iter_body", "cm_body")
    ):
        return ("L", level, marker(inj))
    if chain.is_leaf(level):
        return ("L", level, "leaf")
    inner = _expected_value(chain, level + 1)
    if chain.links[level] == "iter":
        second: Any = ("second", level + 1)
        if inj is not None and inj.level == level + 1 and inj.point == "after_yield":
            second = marker(inj)
        inner = (inner, second)
    return ("L", level, inner)


# ---- running a chain ---------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Delays used by a run, in the loop's time (virtual under MockClock)."""

    leaf: float  # how long the leaf sleeps
    long: float  # a sleep that an injection always interrupts
    during: float  # when a ``during`` injection fires
    cleanup: float  # how long a level's cleanup awaits


#: Trio-hosted runs use a MockClock: generous virtual delays cost nothing.
VIRTUAL_TIMING = Timing(leaf=100.0, long=1000.0, during=10.0, cleanup=1.0)
#: Hard virtual deadline of a Trio-hosted run, far above the chain's sleeps.
VIRTUAL_DEADLINE = 100_000.0


def sync_timing(chain: Chain) -> Timing:
    """Real-time delays for the sync loop: no sleep unless an injection interrupts it.

    The outcome never depends on these delays: a ``during`` injection that
    fires before the chain reached its leaf cancels (or fails) the same
    levels, only less deep.
    """
    during = chain.injection is not None and chain.injection.point == "during"
    return Timing(leaf=30.0 if during else 0.0, long=30.0, during=0.005, cleanup=0.0)


@dataclass
class Observation:
    """What a run produced and the problems its invariant checks found."""

    value: Any = None
    error: BaseException | None = None
    problems: list[str] = field(default_factory=list)
    log: list[tuple[str, int]] = field(default_factory=list)
    injected: BaseException | None = None  # the ChainError or KeyboardInterrupt raised


class ChainRun:
    """Builds the chain's levels as real Trio and asyncio code and logs what they do.

    The level functions are methods; which adapter connects two levels is
    decided by ``chain.links``. Every asyncio task that runs chain code (or
    that the chain creates) is kept in :attr:`tasks`; ``trio_active``
    counts Trio chain code that has not finished.
    """

    def __init__(self, chain: Chain, timing: Timing) -> None:
        self.chain = chain
        self.timing = timing
        self.inj = chain.injection
        self.loop: Any = None
        self.log: list[tuple[str, int]] = []
        self.tasks: set[asyncio.Future[Any]] = set()
        self.trio_active = 0
        self.problems: list[str] = []
        self.error = ChainError(f"injected by {chain.injection}")
        self.interrupt = KeyboardInterrupt(f"injected by {chain.injection}")

    # ---- bookkeeping -------------------------------------------------------------

    def at(self, level: int, point: str) -> Injection | None:
        inj = self.inj
        if inj is not None and inj.level == level and inj.point == point:
            return inj
        return None

    def track(self, future: asyncio.Future[Any] | None = None) -> None:
        """Remember *future* (default: the current asyncio task) and watch its callbacks."""
        if future is None:
            future = asyncio.current_task()
            assert future is not None
        if future not in self.tasks:
            self.tasks.add(future)
            future.add_done_callback(self._done_callback)

    def _done_callback(self, future: asyncio.Future[Any]) -> None:
        if self.loop is not None and self.loop.is_closed():
            self.problems.append(f"done callback of {future!r} ran after the loop closed")
        if not future.cancelled():
            future.exception()  # retrieved: the awaiting level reports it

    def install_callback_shims(self, loop: Any) -> None:
        """Wrap the loop's scheduling methods: every callback checks the loop is open.

        Instance attributes shadow the methods, so asyncio's futures and
        tasks (and a sync loop's Trio guest run) schedule through the shims.
        """
        self.loop = loop
        problems = self.problems

        def guarded(callback: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                if loop.is_closed():
                    problems.append(f"callback {callback!r} ran after the loop closed")
                return callback(*args)

            return run

        call_soon, call_soon_threadsafe = loop.call_soon, loop.call_soon_threadsafe
        call_later, call_at = loop.call_later, loop.call_at
        loop.call_soon = lambda cb, *a, **kw: call_soon(guarded(cb), *a, **kw)
        loop.call_soon_threadsafe = lambda cb, *a, **kw: call_soon_threadsafe(guarded(cb), *a, **kw)
        loop.call_later = lambda d, cb, *a, **kw: call_later(d, guarded(cb), *a, **kw)
        loop.call_at = lambda w, cb, *a, **kw: call_at(w, guarded(cb), *a, **kw)

    def enter(self, level: int, what: str) -> None:
        self.log.append((what, level))
        if self.chain.flavour(level) == AIO:
            self.track()

    # ---- one level ------------------------------------------------------------------

    async def body(self, level: int) -> Any:
        """Level *level*'s work: call the rest of the chain (with its injection), clean up."""
        trio_side = self.chain.flavour(level) == TRIO
        self.enter(level, "enter")
        if trio_side:
            self.trio_active += 1
        try:
            return ("L", level, await self.with_injection(level))
        finally:
            try:
                if self.chain.cleanup[level]:
                    if trio_side:
                        with trio.CancelScope(shield=True):
                            await trio.sleep(self.timing.cleanup)
                    else:
                        await asyncio.sleep(self.timing.cleanup)
            finally:
                self.log.append(("exit", level))
                if trio_side:
                    self.trio_active -= 1

    async def with_injection(self, level: int) -> Any:
        """Call the rest of the chain, applying a ``before`` / ``during`` injection here."""
        inj = self.at(level, "before") or self.at(level, "during")
        if inj is None:
            return await self.rest(level)
        return await self.disturb(inj, level, lambda on_child: self.rest(level, on_child))

    async def disturb(
        self,
        inj: Injection,
        level: int,
        work: Callable[[Callable[[asyncio.Future[Any]], None] | None], Awaitable[Any]],
    ) -> Any:
        """Run ``work(on_child)`` disturbed by *inj*: at once, or (``during``) by a timer.

        *on_child* receives the task or future that the work awaits, for
        ``aio_cancel_child``.
        """
        kind = inj.kind
        now = inj.point != "during"
        delay = 0.0 if now else self.timing.during
        if kind == "trio_cancel":
            with trio.CancelScope() as scope:
                if now:
                    scope.cancel()
                else:
                    scope.deadline = trio.current_time() + delay
                return await work(None)
            assert scope.cancelled_caught
            return marker(inj)
        if kind == "aio_timeout":
            try:
                async with asyncio.timeout(delay):  # type: ignore[attr-defined]
                    return await work(None)
            except TimeoutError:
                return marker(inj)
        if kind == "aio_wait_for":
            try:
                return await asyncio.wait_for(_started_later(lambda: work(None)), delay)
            except asyncio.TimeoutError:
                return marker(inj)
        if kind == "aio_cancel_child":

            def on_child(child: asyncio.Future[Any]) -> None:
                if now:
                    child.cancel()
                else:
                    self.loop.call_later(delay, child.cancel)

            try:
                return await work(on_child)
            except asyncio.CancelledError:
                return marker(inj)
        if kind == "aio_cancel_self":
            task = asyncio.current_task()
            assert task is not None
            if now:
                task.cancel()
                return await work(None)
            handle = self.loop.call_later(delay, task.cancel)
            try:
                return await work(None)
            finally:
                handle.cancel()
        if kind == "keyboard_interrupt":
            raise self.interrupt
        assert kind == "error"
        if now:
            raise self.error
        return await self.with_failing_sibling(level, work)

    async def with_failing_sibling(self, level: int, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run *work* next to a sibling task that fails at ``timing.during``."""
        if self.chain.flavour(level) == TRIO:

            async def trio_sibling() -> None:
                await trio.sleep(self.timing.during)
                raise self.error

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio_sibling)
                value = await work(None)
                nursery.cancel_scope.cancel()
            return value

        async def aio_sibling() -> None:
            self.track()
            await asyncio.sleep(self.timing.during)
            raise self.error

        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            self.track(group.create_task(aio_sibling()))
            value = await work(None)
            raise AssertionError("the sibling's failure should have cancelled this")
        return value  # pragma: no cover

    async def leaf_sleep(self, level: int, duration: float, on_child: Any = None) -> str:
        """What the leaf does (and what a local injection interrupts): sleep."""
        if self.chain.flavour(level) == TRIO:
            await trio.sleep(duration)
        elif on_child is not None:
            child = asyncio.ensure_future(asyncio.sleep(duration))
            self.track(child)
            on_child(child)
            await child
        else:
            await asyncio.sleep(duration)
        return "leaf"

    async def rest(self, level: int, on_child: Any = None) -> Any:
        """Call the next level through the link (or, at the leaf, sleep)."""
        chain = self.chain
        if chain.is_leaf(level):
            return await self.leaf_sleep(level, self.timing.leaf, on_child)
        link = chain.links[level]
        nxt = level + 1
        if link == "iter":
            return await self.iterate(level)
        if link == "cm":
            return await self.enter_cm(level)
        if chain.flavour(level) == TRIO:
            if link == "call":
                return await aio_as_trio(self.body)(nxt)
            if link == "future":
                task = self.loop.create_task(self.body(nxt))
                self.track(task)
                return await aio_as_trio(task)
            return await aio_as_trio(self.body(nxt))
        if link == "call":
            future = trio_as_aio(self.body)(nxt)
            self.track(future)
            if on_child is not None:
                on_child(future)
            return await future
        if link == "future":

            async def via_task() -> Any:
                self.track()
                future = trio_as_aio(self.body)(nxt)
                self.track(future)
                return await future

            task = asyncio.ensure_future(via_task())
            self.track(task)
            if on_child is not None:
                on_child(task)
            return await task
        return await trio_as_aio(self.body(nxt))

    # ---- generators -------------------------------------------------------------------

    async def generator(self, level: int) -> AsyncIterator[Any]:
        """Level *level* as an async generator: its work, then a second item."""
        self.enter(level, "gen_started")
        try:
            yield await self.body(level)
            inj = self.at(level, "after_yield")
            if inj is None:
                yield ("second", level)
            else:
                yield await self.disturb(
                    inj, level, lambda on_child: self.leaf_sleep(level, self.timing.long, on_child)
                )
        finally:
            self.log.append(("gen_closed", level))

    async def iterate(self, level: int) -> Any:
        """Iterate the next level's generator through the adapter."""
        generator = self.generator(level + 1)
        trio_side = self.chain.flavour(level) == TRIO
        source = aio_as_trio(generator) if trio_side else trio_as_aio(generator)
        inj = self.at(level, "iter_body")

        async def loop(trigger: Callable[[], Awaitable[None]] | None) -> tuple[Any, ...]:
            items = []
            try:
                async for item in source:
                    items.append(item)
                    if trigger is not None:
                        await trigger()
            finally:
                if self.chain.close_generators:
                    if trio_side:
                        with trio.CancelScope(shield=True):
                            await aio_as_trio(generator.aclose)()
                    else:
                        await trio_as_aio(generator.aclose)()
            return tuple(items)

        if inj is None:
            return await loop(None)
        return await self.in_body(inj, level, loop)

    # ---- context managers -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def context(self, level: int) -> AsyncIterator[Any]:
        """Level *level* as an async context manager: its work runs in ``__aenter__``."""
        value = await self.body(level)
        self.enter(level, "cm_entered")
        try:
            yield value
        except GeneratorExit:
            # Closed by a generator finalizer: __aexit__ never ran.
            self.log.append(("cm_abandoned", level))
            raise
        except BaseException:
            await self.exit_context(level)
            raise
        else:
            await self.exit_context(level)

    async def exit_context(self, level: int) -> None:
        """A CM level's ``__aexit__`` work (with a ``cm_exit`` injection)."""
        self.log.append(("cm_exited", level))
        inj = self.at(level, "cm_exit")
        if inj is not None:
            await self.disturb(
                inj, level, lambda on_child: self.leaf_sleep(level, self.timing.long)
            )

    async def enter_cm(self, level: int) -> Any:
        """Enter the next level's context manager through the adapter."""
        nxt = level + 1
        if self.chain.flavour(level) == TRIO:
            manager = aio_as_trio(self.context(nxt))
        else:
            manager = trio_as_aio(self.context(nxt))
        inj = self.at(level, "cm_body")

        async def block(trigger: Callable[[], Awaitable[None]] | None) -> Any:
            async with manager as value:
                if trigger is not None:
                    await trigger()
            return value

        if inj is None:
            return await block(None)
        return await self.in_body(inj, level, block)

    async def in_body(
        self,
        inj: Injection,
        level: int,
        block: Callable[[Callable[[], Awaitable[None]]], Awaitable[Any]],
    ) -> Any:
        """Run an ``async for`` / ``async with`` *block* whose body triggers *inj*.

        A cancellation's scope (Trio cancel scope, ``asyncio.timeout``)
        surrounds the whole block, so it is left with the generator
        suspended, or the manager's ``__aexit__`` seeing the cancellation.
        """
        kind = inj.kind
        if kind == "trio_cancel":
            with trio.CancelScope() as scope:

                async def cancel_scope() -> None:
                    scope.cancel()
                    await trio.sleep(self.timing.long)

                return await block(cancel_scope)
            assert scope.cancelled_caught
            return marker(inj)
        if kind == "aio_timeout":
            try:
                async with asyncio.timeout(None) as timeout:  # type: ignore[attr-defined]

                    async def expire() -> None:
                        timeout.reschedule(self.loop.time())
                        await asyncio.sleep(self.timing.long)

                    return await block(expire)
            except TimeoutError:
                return marker(inj)

        async def fail() -> None:
            if kind == "aio_cancel_self":
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                await asyncio.sleep(self.timing.long)
            elif kind == "keyboard_interrupt":
                raise self.interrupt
            else:
                assert kind == "error"
                raise self.error

        return await block(fail)

    def observation(self) -> Observation:
        """An empty observation that shares this run's log and problem list."""
        injected: BaseException | None = None
        if self.inj is not None and self.inj.kind == "error":
            injected = self.error
        elif self.inj is not None and self.inj.kind == "keyboard_interrupt":
            injected = self.interrupt
        return Observation(log=self.log, problems=self.problems, injected=injected)

    # ---- checks --------------------------------------------------------------------------

    def check_finished(self, where: str) -> None:
        """Every asyncio task of the chain is done and no Trio chain code is running."""
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            self.problems.append(f"{where}: {len(pending)} asyncio task(s) pending: {pending!r}")
        if self.trio_active:
            self.problems.append(f"{where}: {self.trio_active} Trio level(s) still running")

    def check_log(self) -> None:
        """Levels finish innermost first; what started has ended (CMs exited, generators closed)."""
        log = self.log
        exits = [level for what, level in log if what == "exit"]
        if exits != sorted(exits, reverse=True) or len(set(exits)) != len(exits):
            self.problems.append(f"levels did not finish innermost first: exits {exits}")
        for started, ended in (
            ("enter", "exit"),
            ("cm_entered", "cm_exited"),
            ("gen_started", "gen_closed"),
        ):
            began = sorted(level for what, level in log if what == started)
            finished = sorted(level for what, level in log if what == ended)
            if began != finished:
                self.problems.append(f"{started} {began} but {ended} {finished}")
        # __aexit__ runs before the level that entered the manager finishes.
        for what, level in log:
            parent_exit = ("exit", level - 1)
            if (
                what == "cm_exited"
                and parent_exit in log
                and log.index(parent_exit) < log.index((what, level))
            ):
                self.problems.append(f"level {level}'s __aexit__ ran after level {level - 1}")


async def _started_later(make: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``make()``, made only once this runs.

    ``asyncio.wait_for(coro, 0)`` may cancel the task before it starts; the
    work's coroutine then never exists (no "never awaited" warning).
    """
    return await make()


# ---- runners -------------------------------------------------------------------------------

#: A run that takes longer than this (real seconds) has hung: dump every
#: thread's stack and end the process rather than hang CI.
WATCHDOG_SECONDS = 120.0


@contextlib.contextmanager
def watchdog() -> Any:
    """Kill the process, with tracebacks, if the block hangs (a last resort)."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def run_trio_hosted(chain: Chain) -> Observation:
    """Run *chain* (level 0 Trio) in ``trio.run`` + ``open_loop()`` on an autojump clock."""
    assert chain.first == TRIO
    run = ChainRun(chain, VIRTUAL_TIMING)
    loops: list[Any] = []
    obs = run.observation()

    async def main() -> Any:
        with trio.fail_after(VIRTUAL_DEADLINE):
            async with trio_asyncio.open_loop() as loop:
                loops.append(loop)
                run.install_callback_shims(loop)
                if not chain.helping:
                    # White-box: the scheduling path of a busy loop, where
                    # the scheduler task runs every callback.
                    loop._can_help = lambda: False
                try:
                    return await run.body(0)
                finally:
                    # Before the loop shuts down, even while a KeyboardInterrupt
                    # propagates: the chain has cleaned up after itself.
                    run.check_finished("end of the open_loop block")
                    if loop._trio_waits:
                        run.problems.append(
                            f"Trio tasks still wait for futures: {loop._trio_waits!r}"
                        )

    clock = trio.testing.MockClock(autojump_threshold=0)
    with watchdog():
        try:
            obs.value = trio.run(main, clock=clock)
        except BaseException as exc:
            obs.error = exc
    if not loops:
        run.problems.append("open_loop() never yielded a loop")
        return obs
    loop = loops[0]
    if not loop.is_closed():
        run.problems.append("the loop is not closed after open_loop()")
    if [t for t in asyncio.all_tasks(loop) if not t.done()]:
        run.problems.append("the closed loop has pending tasks")
    nursery = loop._trio_nursery
    if nursery is not None and nursery.child_tasks:
        run.problems.append(f"Trio tasks of the loop are alive: {nursery.child_tasks!r}")
    run.check_finished("after trio.run")
    run.check_log()
    return obs


def run_sync_mode(chain: Chain, timeout: float = 10.0) -> Observation:
    """Run *chain* (level 0 asyncio) with ``run_until_complete`` on the sync loop.

    Bounded by ``asyncio.wait_for(..., timeout)`` in real time. After a
    KeyboardInterrupt the leftover tasks are cancelled and run to their end,
    as ``asyncio.run()`` does.
    """
    assert chain.first == AIO
    run = ChainRun(chain, sync_timing(chain))
    obs = run.observation()
    loop = trio_asyncio.new_event_loop()
    run.install_callback_shims(loop)

    async def main() -> Any:
        return await asyncio.wait_for(run.body(0), timeout)

    with watchdog():
        try:
            task = loop.create_task(main())
            try:
                obs.value = loop.run_until_complete(task)
            except BaseException as exc:
                obs.error = exc
            # A KeyboardInterrupt interrupts run_until_complete(): what it
            # left running is finished below, as asyncio.run() does.
            if not isinstance(obs.error, KeyboardInterrupt):
                run.check_finished("after run_until_complete")
            _finish_leftovers(loop, task)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    if [t for t in asyncio.all_tasks(loop) if not t.done()]:
        run.problems.append("the closed loop has pending tasks")
    run.check_finished("after close()")
    run.check_log()
    return obs


def _finish_leftovers(loop: Any, main: asyncio.Task[Any]) -> None:
    """Cancel and finish what an interrupted run left (as asyncio.run does)."""
    for _ in range(10):
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except KeyboardInterrupt:
            # The injected interrupt, re-raised by a level that awaited the
            # code that raised it (as plain asyncio does): keep finishing.
            continue
    if main.done() and not main.cancelled():
        main.exception()


# ---- comparing -----------------------------------------------------------------------------


def check_outcome(chain: Chain, obs: Observation) -> list[str]:
    """Problems with *obs* against the oracle (empty when the outcome is as predicted)."""
    expected = expected_outcome(chain)
    error = obs.error
    injected = obs.injected
    if expected.raises is None:
        if error is not None:
            return [f"expected the value {expected.value!r}, got {_describe(error)}"]
        if obs.value != expected.value:
            return [f"expected the value {expected.value!r}, got {obs.value!r}"]
        return []
    if error is None:
        return [f"expected {expected.raises.__name__}, got the value {obs.value!r}"]
    if expected.group:
        if (
            not isinstance(error, BaseExceptionGroup)
            or len(error.exceptions) != 1
            or error.exceptions[0] is not injected
        ):
            return [f"expected a group of the injected {injected!r}, got {_describe(error)}"]
        return []
    if type(error) is not expected.raises:
        return [f"expected {expected.raises.__name__}, got {_describe(error)}"]
    if expected.same_object and error is not injected:
        return [f"expected the injected {injected!r} itself, got {_describe(error)}"]
    return []


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        inner = ", ".join(_describe(e) for e in error.exceptions)
        return f"{type(error).__name__}([{inner}])"
    return f"{type(error).__name__}({error})"
