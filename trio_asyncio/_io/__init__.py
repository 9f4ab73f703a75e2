"""Layer 2, I/O: fd watching, sockets, transports, TLS, pipes, subprocesses, signals.

Built on the loop core (layer 1); the drivers (layer 3) sit above.
"""
