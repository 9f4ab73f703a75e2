"""UDP and Unix datagram endpoints: create_datagram_endpoint."""

from __future__ import annotations


class DatagramMixin:
    """Mixin of BaseTrioEventLoop (to be implemented)."""
