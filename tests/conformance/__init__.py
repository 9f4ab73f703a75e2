"""Conformance: CPython's own ``test.test_asyncio``, run on trio-asyncio's loop.

``python -m tests.conformance.run`` (or ``make conformance``) runs the suite
from the interpreter's installed ``test`` package, in place, in two modes:

``loop``
    the loop-generic test classes (``EventLoopTestsMixin`` and its relatives,
    the ``IsolatedAsyncioTestCase`` classes, ...), each made to create a
    :class:`trio_asyncio.SyncTrioEventLoop` (``suites.py``);
``whole``
    every test of ``test.test_asyncio`` with our policy installed, counting
    the tests that really ran on our loop.

Tests we do not pass are listed, with a reason and a category, in
``exclusions.txt``. Nothing else is skipped. See ``README.rst``.

None of these modules is a pytest test module.
"""
