"""Pipe transports: connect_read_pipe, connect_write_pipe."""

from __future__ import annotations


class PipesMixin:
    """Mixin of BaseTrioEventLoop (to be implemented)."""
