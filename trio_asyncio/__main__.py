"""``python -m trio_asyncio``: run an asyncio program, or a REPL, on trio-asyncio's loop.

See :mod:`trio_asyncio._runner` (or ``python -m trio_asyncio --help``).
"""

import sys

from trio_asyncio._runner import main

if __name__ == "__main__":
    sys.exit(main())
