"""The version of trio-asyncio."""

__version__ = "0.17.0"
