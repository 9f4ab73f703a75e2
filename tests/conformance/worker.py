"""The worker process: runs stdlib tests in-process and records what happened.

Started by ``run.py``, never by hand::

    python -m tests.conformance.worker list MODE OUT
    python -m tests.conformance.worker run MODE IDS EVENTS

``list`` writes the ids of MODE's tests, one a line. ``run`` runs the tests
listed in the file IDS (``<id>\t<timeout in s>`` lines), in the suite's order,
and appends one JSON object a line to EVENTS: ``{"event": "start", "id": ...}``
and then ``{"event": "end", "id": ..., "outcome": ..., ...}`` for each test,
and ``{"event": "done"}`` at the end. A test that outlives its timeout makes
faulthandler dump every thread's stack to stderr and end the process;
``run.py`` then records a timeout and starts a new worker for the rest.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import sys
import time
import traceback
import unittest
from collections.abc import Callable
from typing import Any

# Imported before any stdlib test module: our policy is then the default one.
from trio_asyncio import SyncTrioEventLoop, TrioEventLoop, TrioPolicy
from trio_asyncio._policy import POLICIES_SUPPORTED

from . import suites

# ---- which tests touch our loop -----------------------------------------------------


class LoopUse:
    """Records whether one of our loops was created or run during the current test."""

    def __init__(self) -> None:
        self.created = False
        self.ran = False

    def reset(self) -> None:
        self.created = False
        self.ran = False

    def install(self) -> None:
        use = self
        cls = SyncTrioEventLoop

        def created(original: Callable[..., Any], *, runs: bool) -> Callable[..., Any]:
            def __init__(loop: Any, *args: Any, **kwargs: Any) -> None:
                use.created = True
                if runs:  # a Trio-hosted loop runs from the start, in open_loop()
                    use.ran = True
                original(loop, *args, **kwargs)

            return __init__

        cls.__init__ = created(cls.__init__, runs=False)  # type: ignore[method-assign]
        TrioEventLoop.__init__ = created(TrioEventLoop.__init__, runs=True)  # type: ignore[method-assign]

        def ran(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(loop: Any, *args: Any, **kwargs: Any) -> Any:
                use.ran = True
                return original(loop, *args, **kwargs)

            wrapper.__name__ = original.__name__
            wrapper.__qualname__ = original.__qualname__
            wrapper.__doc__ = original.__doc__
            return wrapper

        cls.run_forever = ran(cls.run_forever)  # type: ignore[method-assign]


def ensure_policy() -> None:
    """Put our policy back if a test module or test replaced it (tearDownModule does)."""
    if POLICIES_SUPPORTED and not isinstance(asyncio.get_event_loop_policy(), TrioPolicy):
        asyncio.set_event_loop_policy(TrioPolicy())


# ---- the result ---------------------------------------------------------------------


def _format(err: Any) -> str:
    exc_type, value, tb = err
    return "".join(traceback.format_exception(exc_type, value, tb))


class EventResult(unittest.TestResult):
    def __init__(
        self, mode: str, ids: dict[int, str], events: Any, timeouts: dict[str, float], use: LoopUse
    ) -> None:
        super().__init__()
        self.mode = mode
        self.ids = ids
        self.events = events
        self.timeouts = timeouts
        self.use = use
        self.current: dict[str, Any] | None = None

    def _emit(self, **event: Any) -> None:
        self.events.write(json.dumps(event) + "\n")
        # faulthandler ends the process with _exit(): nothing may wait in a buffer.
        self.events.flush()

    def _id(self, test: Any) -> str:
        found = self.ids.get(id(test))
        if found is not None:
            return found
        description = getattr(test, "description", None)
        if description is not None:  # _ErrorHolder: a class or module fixture failed
            return suites.fixture_id(self.mode, description)
        return f"{self.mode}:{test.id()}"

    # The run of one test is bracketed by begin() and finish(), called by the
    # TestCase.__call__ hook: wider than startTest()/stopTest(), which
    # IsolatedAsyncioTestCase on 3.10 calls after creating its loop.

    def begin(self, test: Any) -> None:
        ensure_policy()
        self.use.reset()
        test_id = self._id(test)
        self.current = {
            "id": test_id,
            "problems": [],
            "skip": None,
            "started": time.perf_counter(),
        }
        self._emit(event="start", id=test_id)
        faulthandler.dump_traceback_later(self.timeouts.get(test_id, 60.0), exit=True)

    def finish(self, test: Any) -> None:
        faulthandler.cancel_dump_traceback_later()
        current, self.current = self.current, None
        if current is None:  # pragma: no cover
            return
        problems = current["problems"]
        if problems:
            outcome = "failed"
        elif current["skip"] is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        self._emit(
            event="end",
            id=current["id"],
            outcome=outcome,
            details="\n".join(problems) if problems else current["skip"],
            duration=round(time.perf_counter() - current["started"], 3),
            created=self.use.created,
            ran=self.use.ran,
        )

    def install_call_hook(self) -> None:
        result = self
        original = unittest.TestCase.__call__

        def __call__(test: Any, *args: Any, **kwargs: Any) -> Any:
            if id(test) not in result.ids:  # a test inside a test: not ours to report
                return original(test, *args, **kwargs)
            result.begin(test)
            try:
                return original(test, *args, **kwargs)
            finally:
                result.finish(test)

        unittest.TestCase.__call__ = __call__  # type: ignore[method-assign]

    def _problem(self, test: Any, text: str) -> None:
        if self.current is not None and self._id(test) == self.current["id"]:
            self.current["problems"].append(text)
        else:
            # A fixture outside any test (setUpClass, tearDownModule...).
            self._emit(
                event="end",
                id=self._id(test),
                outcome="failed",
                details=text,
                duration=0.0,
                created=False,
                ran=False,
            )

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._problem(test, _format(err))

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._problem(test, _format(err))

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._problem(test, f"in {subtest.id()}:\n{_format(err)}")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        if self.current is not None and self._id(test) == self.current["id"]:
            self.current["skip"] = reason
        else:  # a skipped class: unittest reports it once, outside any test
            self._emit(
                event="end",
                id=self._id(test),
                outcome="skipped",
                details=reason,
                duration=0.0,
                created=False,
                ran=False,
            )

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._problem(test, "unexpected success of a test marked @expectedFailure")


# ---- main ---------------------------------------------------------------------------


def _list(mode: str, out: str) -> None:
    with open(out, "w", encoding="utf-8") as f:
        for test_id, _ in suites.tests_for(mode):
            f.write(test_id + "\n")


def _run(mode: str, ids_path: str, events_path: str) -> None:
    timeouts = {}
    with open(ids_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                test_id, _, timeout = line.rstrip("\n").partition("\t")
                timeouts[test_id] = float(timeout)
    use = LoopUse()
    use.install()
    selected = [(i, t) for i, t in suites.tests_for(mode) if i in timeouts]
    suite = unittest.TestSuite(t for _, t in selected)
    ids = {id(t): i for i, t in selected}
    with open(events_path, "a", encoding="utf-8") as events:
        result = EventResult(mode, ids, events, timeouts, use)
        result.install_call_hook()
        suite.run(result)
        result._emit(event="done")


def main(argv: list[str]) -> int:
    if POLICIES_SUPPORTED and not isinstance(asyncio.get_event_loop_policy(), TrioPolicy):
        print("importing trio_asyncio did not install TrioPolicy", file=sys.stderr)
        return 2
    command, mode, *rest = argv
    try:
        if command == "list":
            _list(mode, *rest)
        elif command == "run":
            ids_path, events_path = rest
            _run(mode, ids_path, events_path)
        else:
            raise SystemExit(f"unknown command {command!r}")
    except suites.MissingTestPackage as exc:
        print(exc, file=sys.stderr)
        return 4  # run.EXIT_MISSING_TESTS
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
