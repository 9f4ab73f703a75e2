"""Warning category for deprecated trio-asyncio APIs."""


class TrioAsyncioDeprecationWarning(DeprecationWarning):
    """Warns about a trio-asyncio API that is deprecated."""
