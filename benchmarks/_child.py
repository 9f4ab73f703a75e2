"""One measurement in a fresh process: ``python -m benchmarks._child SPEC``.

SPEC is a JSON object with ``loop``, ``workload``, ``size``, ``warmup`` and
``gc``. The result (see :func:`benchmarks.loops.measure`) is printed as one
JSON line after :data:`MARKER`, so that output of the workload itself is
harmless.
"""

from __future__ import annotations

import json
import sys

MARKER = "BENCHMARK-RESULT "


def main(argv: list[str]) -> int:
    """Run the measurement described by ``argv[0]`` and print its result."""
    from . import _timing, loops
    from ._registry import all_workloads

    spec = json.loads(argv[0])
    _timing.set_gc_mode(spec.get("gc", "freeze"))
    wl = all_workloads()[spec["workload"]]
    result = loops.measure(spec["loop"], wl, int(spec["size"]), warmup=bool(spec["warmup"]))
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
