"""``python -m benchmarks``: run the benchmarks and print the comparison table."""

from benchmarks.runner import main

raise SystemExit(main())
