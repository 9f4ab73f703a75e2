"""Benchmarks: the same asyncio workloads timed on the stdlib loop, uvloop and trio-asyncio.

Run them with ``python -m benchmarks`` (``make bench``); ``--help`` lists the
options and ``benchmarks/README.rst`` explains how to read the output. This
package is deliberately light to import: a measurement subprocess loads only
the event loop it measures.
"""
