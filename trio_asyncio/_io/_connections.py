"""Stream connections and servers: create_connection, create_server, create_unix_connection, create_unix_server, connect_accepted_socket, sendfile."""

from __future__ import annotations


class ConnectionsMixin:
    """Mixin of BaseTrioEventLoop (to be implemented)."""
