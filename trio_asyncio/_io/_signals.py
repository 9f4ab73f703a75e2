"""Unix signals: add_signal_handler, remove_signal_handler."""

from __future__ import annotations


class SignalsMixin:
    """Mixin of BaseTrioEventLoop (to be implemented)."""
