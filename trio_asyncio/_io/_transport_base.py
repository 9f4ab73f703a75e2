"""What every transport of ours shares: extra info, write flow control, errors.

Flow control follows the documented contract exactly: ``pause_writing()`` is
called when the write buffer grows *strictly above* the high-water mark,
``resume_writing()`` once it drains *to or below* the low-water mark, and
each at most once per crossing. Defaults are 64 KiB high, 16 KiB low (a
quarter of high), as in the stdlib.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

logger = logging.getLogger("asyncio")

DEFAULT_HIGH_WATER = 64 * 1024


def check_water_marks(high: int | None, low: int | None) -> tuple[int, int]:
    """Validate and complete ``set_write_buffer_limits`` arguments."""
    if high is None:
        high = DEFAULT_HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


class TransportBase(asyncio.Transport):
    """Base of our transports: extra info, protocol calls, flow control, fatal errors.

    Subclasses implement ``get_write_buffer_size()`` and the actual I/O, call
    :meth:`_maybe_pause_protocol` after buffering and
    :meth:`_maybe_resume_protocol` after draining.
    """

    def __init__(
        self, loop: Any, protocol: asyncio.BaseProtocol | None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(extra)
        self._loop = loop
        self._protocol: Any = protocol
        self._protocol_paused = False
        self._high_water, self._low_water = check_water_marks(None, None)
        self._closing = False

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<{type(self).__name__} {state}>"

    # ---- protocol -----------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closing

    # ---- write flow control ---------------------------------------------------

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = check_water_marks(high, low)
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def _maybe_pause_protocol(self) -> None:
        if self._protocol_paused or self.get_write_buffer_size() <= self._high_water:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.pause_writing() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    def _maybe_resume_protocol(self) -> None:
        if not self._protocol_paused or self.get_write_buffer_size() > self._low_water:
            return
        self._protocol_paused = False
        try:
            self._protocol.resume_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.resume_writing() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    # ---- errors -----------------------------------------------------------------

    def _report_fatal_error(self, exc: BaseException, message: str) -> None:
        """Report an unexpected transport error; connection resets are only logged in debug."""
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=exc)
            return
        self._loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )


class TransportRegistry:
    """Which fds belong to a live transport, so ``add_reader`` on them is refused."""

    def __init__(self) -> None:
        self._by_fd: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

    def add(self, fd: int, transport: Any) -> None:
        self._by_fd[fd] = transport

    def discard(self, fd: int, transport: Any) -> None:
        if self._by_fd.get(fd) is transport:
            del self._by_fd[fd]

    def check_free(self, fd: int) -> None:
        transport = self._by_fd.get(fd)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")
