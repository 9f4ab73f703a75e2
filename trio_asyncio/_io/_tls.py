"""TLS as a protocol layered over any transport, and loop.start_tls()."""

from __future__ import annotations


class TLSMixin:
    """Mixin of BaseTrioEventLoop (to be implemented)."""
