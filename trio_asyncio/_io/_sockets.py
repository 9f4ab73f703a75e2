"""Low-level socket operations (sock_recv, sock_sendall, sock_connect, sock_accept, sock_sendfile, ...) and DNS (getaddrinfo, getnameinfo)."""

from __future__ import annotations


class SocketOpsMixin:
    """Mixin of BaseTrioEventLoop (to be implemented)."""
