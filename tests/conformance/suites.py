"""The two test selections, built from the interpreter's own ``test.test_asyncio``.

Imported only by the worker process, after ``trio_asyncio`` (so that our
policy is the default one). Nothing of the stdlib tests is copied: the test
classes are imported from the ``test`` package and, in ``loop`` mode,
subclassed so that the loop they create is ours.

Test ids are ``<mode>:<module>.<class>.<method>``, with the module's name
inside ``test.test_asyncio`` and the stdlib class's name, e.g.
``loop:test_events.EPollEventLoopTests.test_run_until_complete``. Modes:
``loop`` (loop-generic classes on a SyncTrioEventLoop), ``trio`` (the
IsolatedAsyncioTestCase classes inside a Trio program, see
``trio_hosted.py``) and ``whole`` (the whole package with our policy).
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import sys
import unittest
from collections.abc import Callable, Iterator
from typing import Any

import trio_asyncio

PACKAGE = "test.test_asyncio"


class MissingTestPackage(RuntimeError):
    """This interpreter has no ``test.test_asyncio`` (e.g. a distro Python without it)."""


def new_loop() -> trio_asyncio.SyncTrioEventLoop:
    return trio_asyncio.new_event_loop()


# ---- ids ------------------------------------------------------------------------


def short_module(name: str) -> str:
    prefix = PACKAGE + "."
    return name[len(prefix) :] if name.startswith(prefix) else name


def test_id(mode: str, test: unittest.TestCase) -> str:
    cls = type(test)
    if cls.__module__ == "unittest.loader":
        # A module that skipped itself (ModuleSkipped) or failed to import
        # (_FailedTest): the "method" is the module's name.
        return f"{mode}:{short_module(test._testMethodName)}.<module>"
    return f"{mode}:{short_module(cls.__module__)}.{cls.__qualname__}.{test._testMethodName}"


def fixture_id(mode: str, description: str) -> str:
    """The id of a failed class or module fixture, from unittest's ``_ErrorHolder``.

    ``"setUpClass (test.test_asyncio.test_x.Cls)"`` -> ``"<mode>:test_x.Cls.setUpClass"``.
    """
    what, _, where = description.partition(" (")
    where = where.rstrip(")")
    return f"{mode}:{short_module(where)}.{what}" if where else f"{mode}:{what}"


# ---- loading --------------------------------------------------------------------


def _package() -> Any:
    try:
        return importlib.import_module(PACKAGE)
    except ImportError as exc:
        raise MissingTestPackage(
            f"{sys.executable} has no {PACKAGE} (the stdlib's test package): {exc}"
        ) from exc


@functools.cache
def _module_names() -> list[str]:
    package = _package()
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("test_"):
            names.append(info.name)
    return sorted(names)


def _import(name: str) -> Any | None:
    """Import ``test.test_asyncio.<name>``.

    None if this Python has no such module (test_ssl is 3.11+) or if it skips
    itself (test_windows_*).
    """
    if name not in _module_names():
        return None
    try:
        return importlib.import_module(f"{PACKAGE}.{name}")
    except unittest.SkipTest:
        return None


def _flatten(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def whole_tests() -> list[tuple[str, unittest.TestCase]]:
    """Every test of ``test.test_asyncio``, in the order unittest runs them."""
    _package()
    suite = unittest.defaultTestLoader.loadTestsFromName(PACKAGE)
    return [(test_id("whole", test), test) for test in _flatten(suite)]


# ---- the loop-generic classes, made to run on our loop -----------------------------------


def _derive(base: type, **namespace: Any) -> type:
    """A subclass of *base* that keeps its name and module (and so its fixtures)."""
    namespace.setdefault("__module__", base.__module__)
    namespace.setdefault("__qualname__", base.__qualname__)
    namespace.setdefault("__doc__", base.__doc__)
    return type(base.__name__, (base,), namespace)


def _create_event_loop(self: Any) -> Any:
    return new_loop()


def _new_loop(self: Any) -> Any:
    return new_loop()


def _swap_loop_after_setup(base: type) -> Callable[[Any], None]:
    """A setUp that runs the stdlib class's setUp, then replaces its stdlib loop by ours."""

    def setUp(self: Any) -> None:
        base.setUp(self)
        theirs = self.loop
        self.loop = new_loop()
        self.set_event_loop(self.loop)
        theirs.close()

    return setUp


def _subprocess_setup(self: Any) -> None:
    # What SubprocessWatcherMixin.setUp does, minus the child watcher: our
    # loop reaps its children itself and needs none.
    from test.test_asyncio import utils as test_utils

    test_utils.TestCase.setUp(self)
    self.loop = new_loop()
    self.set_event_loop(self.loop)


# Modules whose tests come from a mixin and are run once per selector by a
# class with ``create_event_loop()``: we override that method in one of them.
_CREATE_EVENT_LOOP_MODULES = ("test_events", "test_sock_lowlevel", "test_sendfile")
_SELECTOR_CLASS_PREFERENCE = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")

# FunctionalTestCaseMixin classes whose ``new_loop()`` makes a SelectorEventLoop.
_NEW_LOOP_CLASSES = {
    "test_server": ("SelectorStartServerTests",),
    "test_buffered_proto": ("BufferedProtocolSelectorTests",),
    "test_sslproto": ("SelectorStartTLSTests",),
}

# Classes whose setUp builds a stdlib loop explicitly (the loop-generic
# parts of test_base_events and test_unix_events).
_SWAP_LOOP_CLASSES = {
    "test_base_events": (
        "BaseEventLoopTests",
        "BaseEventLoopWithSelectorTests",
        "BaseLoopSockSendfileTests",
    ),
    "test_unix_events": ("SelectorEventLoopUnixSocketTests",),
}

# Classes that get their loop from asyncio.new_event_loop(), i.e. from our policy.
_POLICY_CLASSES = {
    "test_streams": ("StreamTests",),
    "test_ssl": ("TestSSL",),
    "test_unix_events": ("TestFunctional",),
}


def loop_classes() -> list[type]:
    """The loop-generic test classes of this Python, each creating our loop."""
    from test.test_asyncio import utils as test_utils

    classes: list[type] = []

    for name in _CREATE_EVENT_LOOP_MODULES:
        module = _import(name)
        if module is None:  # pragma: no cover - all exist on 3.10-3.13
            raise RuntimeError(f"{PACKAGE}.{name} is missing")
        for cls_name in _SELECTOR_CLASS_PREFERENCE:
            base = getattr(module, cls_name, None)
            if base is not None:
                classes.append(_derive(base, create_event_loop=_create_event_loop))
                break
        else:  # pragma: no cover - every Unix has SelectEventLoopTests
            raise RuntimeError(f"no selector test class found in {name}")

    module = _import("test_subprocess")
    if module is not None and hasattr(module, "SubprocessMixin"):
        classes.append(
            type(
                "SubprocessTests",
                (module.SubprocessMixin, test_utils.TestCase),
                {
                    "__module__": module.__name__,
                    "__qualname__": "SubprocessTests",
                    "setUp": _subprocess_setup,
                },
            )
        )

    for name, cls_names in _NEW_LOOP_CLASSES.items():
        module = _import(name)
        for cls_name in cls_names:
            base = getattr(module, cls_name, None) if module is not None else None
            if base is not None:
                classes.append(_derive(base, new_loop=_new_loop))

    for name, cls_names in _SWAP_LOOP_CLASSES.items():
        module = _import(name)
        for cls_name in cls_names:
            base = getattr(module, cls_name, None) if module is not None else None
            if base is not None:
                classes.append(_derive(base, setUp=_swap_loop_after_setup(base)))

    for name, cls_names in _POLICY_CLASSES.items():
        module = _import(name)
        for cls_name in cls_names:
            base = getattr(module, cls_name, None) if module is not None else None
            if base is not None:
                classes.append(_derive(base))

    # Every IsolatedAsyncioTestCase of the package. Its loop comes from our
    # policy; from 3.13 on, the class's loop_factory says so explicitly too.
    seen = {(c.__module__, c.__qualname__) for c in classes}
    for base in isolated_asyncio_classes():
        if (base.__module__, base.__qualname__) in seen:
            continue
        extra = {}
        if sys.version_info >= (3, 13) and getattr(base, "loop_factory", None) is None:
            extra["loop_factory"] = staticmethod(trio_asyncio.new_event_loop)
        classes.append(_derive(base, **extra))
    return classes


def isolated_asyncio_classes() -> list[type]:
    """The IsolatedAsyncioTestCase classes of the package, module by module."""
    found = []
    for name in _module_names():
        module = _import(name)
        if module is None:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, unittest.IsolatedAsyncioTestCase)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


def trio_classes() -> list[type]:
    """The IsolatedAsyncioTestCase classes, run inside a Trio program (3.11+; else none).

    3.10's IsolatedAsyncioTestCase drives its loop differently (no
    asyncio.Runner to stand in for).
    """
    if sys.version_info < (3, 11):
        return []
    from .trio_hosted import trio_hosted_namespace

    return [_derive(base, **trio_hosted_namespace()) for base in isolated_asyncio_classes()]


def _tests_of(mode: str, classes: list[type]) -> list[tuple[str, unittest.TestCase]]:
    loader = unittest.defaultTestLoader
    tests = []
    for cls in classes:
        for test in _flatten(loader.loadTestsFromTestCase(cls)):
            tests.append((test_id(mode, test), test))
    return tests


def tests_for(mode: str) -> list[tuple[str, unittest.TestCase]]:
    if mode == "loop":
        return _tests_of(mode, loop_classes())
    if mode == "trio":
        return _tests_of(mode, trio_classes())
    if mode == "whole":
        return whole_tests()
    raise ValueError(f"unknown mode {mode!r}")


def stdlib_test_dir() -> str:
    return os.path.dirname(_package().__file__)
