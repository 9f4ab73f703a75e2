"""``python -m soak``: run the soak test (``soak/README.rst``)."""

from soak.runner import main

raise SystemExit(main())
