"""A package run with ``python -m trio_asyncio -m cli_pkg`` (or ``-m cli_pkg.mod``)."""
