"""A fault-injecting TCP proxy on loopback, for tests of transports under bad networks.

:class:`FaultyProxy` listens on ``127.0.0.1``, and for each accepted
connection opens one to the target and copies bytes both ways, injecting
the faults that a :class:`Plan` asks for, per direction (:class:`Faults`).
The plan is chosen per connection by ``plan(index, peer)``: the index
counts accepted connections, and *peer* is the client's address, so a
test with concurrent clients can key plans by each client's local port.
The faults:

- ``fragment``: every chunk read is re-sent in random pieces (seeded), each
  with its own ``send()`` on a ``TCP_NODELAY`` socket, optionally spaced by
  ``fragment_gap`` seconds so the receiver sees them in separate reads;
- ``delay``: every chunk is held back a random time (order is kept);
- ``stall_after`` / ``stall_for`` / ``stall_release``: after that many bytes
  the proxy stops reading the source until the time is up or the event is
  set, so the writer's kernel buffers fill and its transport must apply
  flow control (``pause_writing``, ``drain``). The proxy's own buffering is
  bounded (:data:`MAX_QUEUED`) and its receive buffers are small
  (``rcvbuf``), so the stall reaches the writer quickly;
- ``eof_after``: after that many bytes the proxy half-closes the
  destination (``shutdown(SHUT_WR)``: the reader sees EOF mid-stream) and
  drops whatever else the source sends that way;
- ``reset_after``: after that many bytes (once they are handed to the
  kernel) both sockets are closed with ``SO_LINGER`` 0: both peers get RST;

and per connection, ``on_accept``: ``"close"`` (accept, then close at once:
the client sees EOF) or ``"reset"`` (the same with RST), without ever
connecting to the target.

Besides injected faults it behaves as a correct proxy, so that what the
peers see is what a network could do: an EOF from one side is forwarded as
``shutdown(SHUT_WR)`` once the data before it is sent (a half-close
crosses the proxy), and a reset or send error on one side resets the other.

It runs in its own thread, with non-blocking sockets and a
:mod:`selectors` loop, never on the event loop under test: a bug of that
loop cannot hide (or cause) a bug of the proxy. Randomness comes from
``random.Random`` seeded with ``(seed, connection index, direction)``, so a
run is reproducible whatever the thread scheduling. :attr:`FaultyProxy.counts`
counts connections, bytes and every fault injected; :meth:`FaultyProxy.close`
stops the thread and closes every socket (the leak guard checks both), and
re-raises any error of the proxy thread so a proxy bug fails the test.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

HOST = "127.0.0.1"
#: Bytes the proxy buffers per direction before it stops reading the source:
#: small, so back-pressure crosses the proxy instead of ending in it.
MAX_QUEUED = 64 * 1024
#: Bytes asked of one recv().
RECV_SIZE = 64 * 1024
#: Longest the selector sleeps while a stall waits for its release event.
_POLL = 0.005


@dataclass(frozen=True)
class Faults:
    """What to do to the bytes flowing in one direction of one connection."""

    #: Re-send each chunk in random pieces of ``lo..hi`` bytes.
    fragment: tuple[int, int] | None = None
    #: Up to this many seconds (uniform) between two pieces of a chunk.
    fragment_gap: float = 0.0
    #: Hold each chunk back ``lo..hi`` seconds (uniform), keeping the order.
    delay: tuple[float, float] | None = None
    #: Stop reading the source once this many bytes went through ...
    stall_after: int | None = None
    #: ... for this many seconds at most ...
    stall_for: float = 0.0
    #: ... or until this event is set (checked every few milliseconds).
    stall_release: threading.Event | None = None
    #: Half-close the destination after this many bytes; drop the rest.
    eof_after: int | None = None
    #: Reset both sides after this many bytes.
    reset_after: int | None = None

    @property
    def transparent(self) -> bool:
        """True if every byte still arrives, in order (only timing changes)."""
        return self.eof_after is None and self.reset_after is None


@dataclass(frozen=True)
class Plan:
    """The faults for one connection: per direction, and at accept time."""

    c2s: Faults = Faults()  # client to server (target)
    s2c: Faults = Faults()  # server (target) to client
    on_accept: Literal["forward", "close", "reset"] = "forward"

    @property
    def transparent(self) -> bool:
        return self.on_accept == "forward" and self.c2s.transparent and self.s2c.transparent


#: The counters of :attr:`FaultyProxy.counts` that are injected faults.
FAULT_KINDS = (
    "fragmented_chunks",  # chunks re-sent in more than one piece
    "delayed_chunks",  # chunks held back
    "stalls",  # times reading stopped
    "early_eofs",  # half-closes injected mid-stream
    "resets",  # connections reset mid-stream
    "accept_closes",  # connections closed (or reset) right after accept
)


@dataclass
class ConnectionRecord:
    """What happened to one proxied connection (for failure messages)."""

    index: int
    plan: Plan
    peer: tuple[str, int]
    bytes: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    end: str = "open"


class _Pipe:
    """One direction of a connection: read ``src``, apply faults, write ``dst``."""

    def __init__(
        self, conn: _Connection, name: str, src: socket.socket, dst: socket.socket, faults: Faults
    ) -> None:
        self.conn = conn
        self.name = name
        self.src = src
        self.dst = dst
        self.faults = faults
        self.rng = random.Random(f"{conn.proxy.seed}:{conn.record.index}:{name}")
        # Pieces to send: (not before this monotonic time, data).
        self.queue: collections.deque[tuple[float, memoryview]] = collections.deque()
        self.queued = 0
        self.last_due = 0.0
        self.read_total = 0  # bytes read from src
        self.src_eof = False  # src sent EOF (or we stopped caring about it)
        self.dst_shut = False  # we sent EOF to dst
        self.dropping = False  # after an injected EOF: read and discard
        self.stall_until: float | None = None
        self.reset_pending = False
        self.eof_pending = False
        self.blocked = False  # dst's kernel buffer was full at the last send

    # ---- state ------------------------------------------------------------------

    def _stalled(self, now: float) -> bool:
        if self.stall_until is None:
            return False
        release = self.faults.stall_release
        if now >= self.stall_until or (release is not None and release.is_set()):
            self.stall_until = None
            return False
        return True

    def wants_read(self, now: float) -> bool:
        return (
            not self.src_eof
            and not self.reset_pending
            and not self.eof_pending
            and self.queued < MAX_QUEUED
            and not self._stalled(now)
        )

    def wants_write(self) -> bool:
        return self.blocked and bool(self.queue)

    @property
    def finished(self) -> bool:
        return self.dst_shut and self.src_eof

    def next_deadline(self) -> float | None:
        """When this pipe has something to do without any socket event."""
        deadlines = []
        if self.queue and not self.blocked:
            deadlines.append(self.queue[0][0])
        if self.stall_until is not None:
            release = self.faults.stall_release
            if release is None:
                deadlines.append(self.stall_until)
            else:
                deadlines.append(min(self.stall_until, time.monotonic() + _POLL))
        return min(deadlines) if deadlines else None

    # ---- reading ----------------------------------------------------------------

    def _limit(self) -> int:
        """Bytes to read now, so that thresholds fall exactly on a boundary."""
        limit = RECV_SIZE
        faults = self.faults
        for threshold in (faults.stall_after, faults.eof_after, faults.reset_after):
            if threshold is not None and self.read_total < threshold:
                limit = min(limit, threshold - self.read_total)
        return limit

    def on_readable(self) -> None:
        counts = self.conn.proxy.counts
        try:
            data = self.src.recv(self._limit())
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.conn.abort("read error on " + self.name)
            return
        if not data:
            self.src_eof = True
            return
        before = self.read_total
        self.read_total += len(data)
        self.conn.record.bytes[self.name] = self.read_total
        counts[self.name + "_bytes"] += len(data)
        if self.dropping:
            return
        self._enqueue(data)
        faults = self.faults
        now = time.monotonic()
        if faults.stall_after is not None and before < faults.stall_after <= self.read_total:
            counts["stalls"] += 1
            self.stall_until = now + faults.stall_for
        if faults.eof_after is not None and before < faults.eof_after <= self.read_total:
            self.eof_pending = True
        if faults.reset_after is not None and before < faults.reset_after <= self.read_total:
            self.reset_pending = True

    def _enqueue(self, data: bytes) -> None:
        faults = self.faults
        counts = self.conn.proxy.counts
        rng = self.rng
        now = time.monotonic()
        due = max(now, self.last_due)
        if faults.delay is not None:
            due = max(due, now + rng.uniform(*faults.delay))
            counts["delayed_chunks"] += 1
        view = memoryview(data)
        if faults.fragment is None:
            pieces = [view]
        else:
            lo, hi = faults.fragment
            pieces = []
            start = 0
            while start < len(view):
                size = rng.randint(lo, hi)
                pieces.append(view[start : start + size])
                start += size
            if len(pieces) > 1:
                counts["fragmented_chunks"] += 1
            counts["fragments"] += len(pieces)
        for i, piece in enumerate(pieces):
            if i and faults.fragment_gap:
                due += rng.uniform(0, faults.fragment_gap)
            self.queue.append((due, piece))
            self.queued += len(piece)
        self.last_due = due

    # ---- writing ----------------------------------------------------------------

    def pump(self, now: float) -> None:
        """Send the pieces that are due, until the kernel refuses more."""
        self.blocked = False
        queue = self.queue
        while queue:
            due, piece = queue[0]
            if due > now:
                return
            try:
                sent = self.dst.send(piece)
            except (BlockingIOError, InterruptedError):
                self.blocked = True
                return
            except OSError:
                self.conn.abort("write error on " + self.name)
                return
            self.queued -= sent
            if sent < len(piece):
                queue[0] = (due, piece[sent:])
                self.blocked = True
                return
            queue.popleft()
        # Everything read so far is with the kernel: act on what follows it.
        counts = self.conn.proxy.counts
        if self.reset_pending:
            counts["resets"] += 1
            self.conn.abort(f"reset injected on {self.name} after {self.read_total} bytes")
        elif self.eof_pending:
            self.eof_pending = False
            self.dropping = True
            counts["early_eofs"] += 1
            self._shut_dst()
        elif self.src_eof and not self.dst_shut:
            counts["half_closes_forwarded"] += 1
            self._shut_dst()

    def _shut_dst(self) -> None:
        self.dst_shut = True
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            # The peer is gone already (it reset, or closed and got our data
            # refused): nothing more can go that way.
            pass


class _Connection:
    """A proxied connection: the client's socket, the target's, two pipes."""

    def __init__(
        self,
        proxy: FaultyProxy,
        record: ConnectionRecord,
        client: socket.socket,
        upstream: socket.socket,
    ) -> None:
        self.proxy = proxy
        self.record = record
        self.client = client
        self.upstream = upstream
        self.closed = False
        self.c2s = _Pipe(self, "c2s", client, upstream, record.plan.c2s)
        self.s2c = _Pipe(self, "s2c", upstream, client, record.plan.s2c)
        self.masks: dict[socket.socket, int] = {client: 0, upstream: 0}

    def pipes(self) -> tuple[_Pipe, _Pipe]:
        return self.c2s, self.s2c

    def update(self, now: float) -> None:
        """Register the sockets for what the pipes wait for; close when done."""
        if self.closed:
            return
        if self.c2s.finished and self.s2c.finished:
            self.close("done")
            return
        selector = self.proxy.selector
        for sock in (self.client, self.upstream):
            mask = 0
            for pipe in self.pipes():
                if pipe.src is sock and pipe.wants_read(now):
                    mask |= selectors.EVENT_READ
                if pipe.dst is sock and pipe.wants_write():
                    mask |= selectors.EVENT_WRITE
            old = self.masks[sock]
            if mask == old:
                continue
            if not old:
                selector.register(sock, mask, self)
            elif not mask:
                selector.unregister(sock)
            else:
                selector.modify(sock, mask, self)
            self.masks[sock] = mask

    def on_event(self, sock: socket.socket, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            for pipe in self.pipes():
                if pipe.src is sock and not self.closed:
                    pipe.on_readable()
        # Writable: pump() runs for every pipe after each round anyway.

    def abort(self, why: str) -> None:
        """Reset both sides (SO_LINGER 0, then close: the kernel sends RST)."""
        if self.closed:
            return
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close("reset: " + why)

    def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.record.end = why
        for sock in (self.client, self.upstream):
            if self.masks[sock]:
                self.proxy.selector.unregister(sock)
                self.masks[sock] = 0
            sock.close()
        self.proxy.connections.discard(self)


class FaultyProxy:
    """A loopback TCP proxy to *target* that injects the faults of ``plan(index, peer)``.

    Use as a context manager (or call :meth:`start` and :meth:`close`)::

        with FaultyProxy(("127.0.0.1", port), plan=lambda i, peer: Plan(...), seed=7) as proxy:
            ... connect to proxy.address ...
        print(proxy.counts, proxy.faults_injected)

    *rcvbuf*, if given, is the ``SO_RCVBUF`` of every socket the proxy reads
    from, so that a stall is felt by the writer after few bytes.
    """

    def __init__(
        self,
        target: tuple[str, int],
        plan: Callable[[int, tuple[str, int]], Plan] = lambda index, peer: Plan(),
        *,
        seed: int = 0,
        rcvbuf: int | None = 32 * 1024,
    ) -> None:
        self.target = target
        self.plan = plan
        self.seed = seed
        self.rcvbuf = rcvbuf
        self.counts: collections.Counter[str] = collections.Counter()
        self.records: list[ConnectionRecord] = []
        self.connections: set[_Connection] = set()
        self.selector = selectors.DefaultSelector()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            # Inherited by accepted sockets; must be set before listen().
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.address: tuple[str, int] = self._listener.getsockname()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="faulty-proxy", daemon=True)

    # ---- public API ---------------------------------------------------------------

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def faults_injected(self) -> int:
        """How many faults were injected (every kind of :data:`FAULT_KINDS`)."""
        return sum(self.counts[kind] for kind in FAULT_KINDS)

    def summary(self) -> str:
        """One line: connections, bytes, and each counter (for test output)."""
        items = ", ".join(f"{key}={value}" for key, value in sorted(self.counts.items()))
        return f"seed={self.seed} faults={self.faults_injected} {items}"

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread, close every socket; re-raise an error of the proxy thread."""
        if self._thread.is_alive() or self._thread.ident is not None:
            self._stopping = True
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - a proxy bug
                raise RuntimeError("the faulty proxy's thread did not stop")
        self._close_sockets()
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("the faulty proxy failed") from error

    # ---- the thread -------------------------------------------------------------------

    def _close_sockets(self) -> None:
        for conn in list(self.connections):
            conn.close("proxy closed")
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        with contextlib.suppress(Exception):
            self.selector.close()

    def _run(self) -> None:
        try:
            self.selector.register(self._listener, selectors.EVENT_READ, "accept")
            self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping:
                self._round()
        except BaseException as exc:  # reported by close()
            self._error = exc

    def _round(self) -> None:
        now = time.monotonic()
        deadlines = [
            d for conn in self.connections for pipe in conn.pipes() if (d := pipe.next_deadline())
        ]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        for key, mask in self.selector.select(timeout):
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(64)
            elif not key.data.closed:
                key.data.on_event(key.fileobj, mask)
        now = time.monotonic()
        for conn in list(self.connections):
            for pipe in conn.pipes():
                if not conn.closed:
                    pipe.pump(now)
            conn.update(now)

    def _accept(self) -> None:
        while True:
            try:
                client, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # pragma: no cover - e.g. EMFILE: try again later
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            index = len(self.records)
            plan = self.plan(index, peer)
            record = ConnectionRecord(index, plan, peer)
            self.records.append(record)
            self.counts["connections"] += 1
            if plan.on_accept != "forward":
                self.counts["accept_closes"] += 1
                if plan.on_accept == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                record.end = "closed at accept" if plan.on_accept == "close" else "reset at accept"
                continue
            self._connect(client, record)

    def _connect(self, client: socket.socket, record: ConnectionRecord) -> None:
        upstream = socket.socket()
        try:
            if self.rcvbuf is not None:
                upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            # A blocking connect: on loopback the kernel completes it at once
            # (the target only has to be listening).
            upstream.settimeout(5.0)
            upstream.connect(self.target)
        except OSError:
            upstream.close()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            record.end = "target refused"
            self.counts["target_refused"] += 1
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(self, record, client, upstream)
        self.connections.add(conn)
        conn.update(time.monotonic())
