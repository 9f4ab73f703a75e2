"""TLS as a protocol layered over any transport, and ``loop.start_tls()``.

:class:`TLSProtocol` sits between a *raw* byte transport (a socket transport,
or any transport that can switch protocols) and the application's protocol.
The raw transport sees an ordinary :class:`asyncio.BufferedProtocol`; the
application sees :attr:`TLSProtocol.app_transport`, an ordinary
:class:`asyncio.Transport`. In between, one :class:`ssl.SSLObject` works on
two :class:`ssl.MemoryBIO` buffers: ciphertext from the raw transport goes
into ``incoming``; whatever OpenSSL wants to send appears in ``outgoing`` and
is handed to the raw transport at once.

Life of a connection (``_state``)::

    NEW -connection_made-> HANDSHAKING -done-> OPEN -close/EOF-> FLUSHING
        -backlog written-> SHUTTING_DOWN -peer's close_notify/EOF-> CLOSING
        -raw connection_lost-> CLOSED

Any state may jump to CLOSING on an error, a timeout or ``abort()``, and to
CLOSED when the raw connection is lost. The application protocol separately
goes INIT -> MADE -> EOF -> LOST, so ``connection_made``, ``eof_received``
and ``connection_lost`` each reach it at most once, in that order.

Writing: application data is queued as plaintext and encrypted in batches.
The first small write of a callback batch is encrypted and sent at once (no
added latency); further small writes in the same batch are copied into a
shared buffer and leave together at the end of the batch (or as soon as
64 KiB are queued), as few TLS records. Large writes are encrypted at once,
without copying. Plaintext is only encrypted while the raw transport accepts
data, so the raw transport's own pause/resume is the back-pressure, and the
queued plaintext is what the application's write flow control counts.

Reading: records are decrypted only while the application reads; otherwise
ciphertext collects in ``incoming`` and the raw transport is paused once it
holds ``_READ_HIGH_WATER`` bytes. A BufferedProtocol application gets the
plaintext decrypted straight into its own buffer.

Deliberate differences from the stdlib's ``asyncio.sslproto`` (same API):

* small writes are coalesced into shared records (see above);
* application data that races our close_notify is read and dropped, where
  OpenSSL would fail the shutdown with APPLICATION_DATA_AFTER_CLOSE_NOTIFY;
* on a handshake or protocol error the alert OpenSSL prepared is sent
  before the raw transport closes, so the peer learns why;
* a connection lost during the handshake fails the waiter with
  ConnectionResetError (the stdlib may resolve it with ``None``);
* with ``call_connection_made=False`` (start_tls) the application protocol
  gets ``connection_lost`` however the handshake fails.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import ssl
import warnings
from typing import Any

from ._transport_base import TransportBase, check_water_marks

logger = logging.getLogger("asyncio")

#: Defaults of ``ssl_handshake_timeout`` and ``ssl_shutdown_timeout`` (seconds).
SSL_HANDSHAKE_TIMEOUT = 60.0
SSL_SHUTDOWN_TIMEOUT = 30.0

# Size of the buffer the raw transport reads ciphertext into.
_RECV_BUFFER_SIZE = 256 * 1024
# Plaintext asked of one SSLObject.read() for data_received() protocols: a
# TLS record holds at most 16 KiB and OpenSSL returns one record per call, so
# the bytes object read into needs no shrinking.
_READ_CHUNK = 16 * 1024
# Writes smaller than this are copied into a shared bytearray, so that many
# small writes become few TLS records.
_SMALL_WRITE = 16 * 1024
# Queued plaintext that is encrypted at once rather than at the end of the batch.
_FLUSH_NOW = 64 * 1024
# Plaintext encrypted per raw write() call, between checks of its flow control.
_SEND_CHUNK = 256 * 1024
# Flow-control defaults, as the stdlib's (application writes; raw reads).
_WRITE_HIGH_WATER = 512 * 1024
_READ_HIGH_WATER = 256 * 1024
# After close, warn once this many writes have been dropped (as the stdlib).
_LOG_LOST_WRITES_AFTER = 5

# SSLObject errors that only mean "feed me more ciphertext".
_AGAIN = (ssl.SSLWantReadError, ssl.SSLSyscallError)


class _State(enum.Enum):
    NEW = "NEW"
    HANDSHAKING = "HANDSHAKING"
    OPEN = "OPEN"
    FLUSHING = "FLUSHING"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class _AppState(enum.Enum):
    INIT = "INIT"
    MADE = "MADE"
    EOF = "EOF"
    LOST = "LOST"


# Module-level aliases: plain global loads on the hot paths.
_NEW = _State.NEW
_HANDSHAKING = _State.HANDSHAKING
_OPEN = _State.OPEN
_FLUSHING = _State.FLUSHING
_SHUTTING_DOWN = _State.SHUTTING_DOWN
_CLOSING = _State.CLOSING
_CLOSED = _State.CLOSED
_APP_INIT = _AppState.INIT
_APP_MADE = _AppState.MADE
_APP_EOF = _AppState.EOF
_APP_LOST = _AppState.LOST

_BufferedProtocol = asyncio.BufferedProtocol


def _check_timeout(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"{name} should be a positive number, got {value}")
    return value


def _default_context(server_side: bool, server_hostname: str | None) -> ssl.SSLContext:
    """The context used for ``ssl=True``: the stdlib's secure client defaults."""
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    context = ssl.create_default_context()
    if not server_hostname:
        context.check_hostname = False
    return context


class TLSProtocol(_BufferedProtocol):
    """Run TLS over a raw transport for an application protocol.

    Make this the protocol of a raw byte transport (its ``connection_made``
    starts the handshake); the application protocol then talks to
    :attr:`app_transport`. *waiter*, if given, gets ``None`` once the
    handshake succeeded (after the application's ``connection_made``), or the
    error that ended it: an :exc:`ssl.SSLError` (such as
    :exc:`ssl.SSLCertVerificationError`), :exc:`ConnectionResetError` when the
    peer went away, or :exc:`ConnectionAbortedError` when the handshake took
    longer than *ssl_handshake_timeout* seconds.

    With *call_connection_made* false (``start_tls``), the application
    protocol is taken to be connected already: it gets no
    ``connection_made`` and does get ``connection_lost`` should the
    handshake fail.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext | None,
        waiter: asyncio.Future[Any] | None,
        server_side: bool = False,
        server_hostname: str | None = None,
        call_connection_made: bool = True,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        self._handshake_timeout = _check_timeout(
            "ssl_handshake_timeout", ssl_handshake_timeout, SSL_HANDSHAKE_TIMEOUT
        )
        self._shutdown_timeout = _check_timeout(
            "ssl_shutdown_timeout", ssl_shutdown_timeout, SSL_SHUTDOWN_TIMEOUT
        )
        if not sslcontext:
            sslcontext = _default_context(server_side, server_hostname)
        self._loop: Any = loop
        self._waiter = waiter
        self._server_side = bool(server_side)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = sslcontext.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=self._server_side,
            server_hostname=None if server_side else (server_hostname or None),
        )
        # Our extra info; more is added when the handshake completes, and the
        # raw transport answers the rest (peername, socket, ...).
        self._extra: dict[str, Any] = {"sslcontext": sslcontext}
        self._state = _NEW
        self._app_state = _APP_INIT if call_connection_made else _APP_MADE
        self._raw: Any = None
        self._raw_eof = False  # the raw transport saw EOF
        self._raw_write_paused = False  # the raw transport paused our writing
        self._raw_read_paused = False  # we paused the raw transport's reading
        self._peer_closed = False  # the peer's close_notify was read
        self._app_read_paused = False
        self._read_high, self._read_low = check_water_marks(_READ_HIGH_WATER, None)
        # Plaintext waiting to be encrypted: bytes, memoryviews of bytes or of
        # our own bytearrays; the last item is open for coalescing while
        # self._tail_open is true.
        self._backlog: collections.deque[Any] = collections.deque()
        self._backlog_size = 0
        self._tail_open = False
        self._write_blocked = False  # SSLObject.write() waits for the peer (TLS 1.2)
        self._lost_writes = 0
        self._recv_view: memoryview | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._read_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._handshake_started: float | None = None
        self._close_exc: BaseException | None = None  # why we closed, for connection_lost
        self._app_protocol: Any = None
        self._app_buffered = False
        #: The transport the application protocol uses.
        self.app_transport = _SSLTransport(loop, self)
        self._set_app_protocol(app_protocol)

    def __repr__(self) -> str:
        side = "server" if self._server_side else "client"
        return f"<{type(self).__name__} {side} {self._state.value}>"

    def _set_app_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if self._state is _CLOSED:
            return  # the connection is gone; nothing will be delivered
        self._app_protocol = protocol
        self._app_buffered = isinstance(protocol, _BufferedProtocol)
        self.app_transport._protocol = protocol

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = self._extra
        if name in extra:
            return extra[name]
        raw = self._raw
        if raw is not None:
            return raw.get_extra_info(name, default)
        return default

    # ---- the raw transport's protocol API ---------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The raw transport is connected: start the handshake."""
        self._raw = transport
        if self._state is not _NEW:
            # Closed before we were connected: just let go of the transport.
            transport.abort()  # type: ignore[attr-defined]
            return
        self._state = _HANDSHAKING
        loop = self._loop
        if loop.get_debug():
            logger.debug("%r starts SSL handshake", self)
            self._handshake_started = loop.time()
        self._timer = loop.call_later(self._handshake_timeout, self._handshake_timed_out)
        self._do_handshake()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the raw transport puts the ciphertext it reads."""
        view = self._recv_view
        if view is None:
            view = self._recv_view = memoryview(bytearray(_RECV_BUFFER_SIZE))
        return view

    def buffer_updated(self, nbytes: int) -> None:
        """*nbytes* of ciphertext arrived in the buffer of :meth:`get_buffer`."""
        self._incoming.write(self._recv_view[:nbytes])  # type: ignore[index]
        self._on_ciphertext()

    def data_received(self, data: bytes) -> None:
        """Ciphertext from a raw transport that does not use get_buffer()."""
        self._incoming.write(data)
        self._on_ciphertext()

    def eof_received(self) -> bool:
        """The raw stream ended. We close the raw transport ourselves when done."""
        self._raw_eof = True
        state = self._state
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        if state is _HANDSHAKING:
            self._handshake_failed(ConnectionResetError("Connection lost during TLS handshake"))
        elif state is _OPEN:
            # Deliver what is still buffered, then EOF (once reading resumes).
            self._decrypt()
        elif state is _SHUTTING_DOWN:
            self._finish_shutdown()
        # FLUSHING goes on writing; SHUTTING_DOWN will see _raw_eof.
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        """The raw connection is gone: tell whoever is still waiting."""
        self._state = _CLOSED
        self._cancel_callbacks()
        self._drop_backlog()
        self._recv_view = None
        if self._close_exc is not None:
            exc = self._close_exc
            self._close_exc = None
        self._wake_waiter(
            exc if exc is not None else ConnectionResetError("Connection lost during TLS handshake")
        )
        protocol = self._app_protocol
        app_transport = self.app_transport
        # Break the cycles through the application's objects (a protocol
        # usually keeps its transport), so that the connection, its
        # SSLContext and its buffers are freed by reference counting.
        self._app_protocol = None
        self.app_transport = None  # type: ignore[assignment]
        if app_transport is not None:
            app_transport._closing = True
            app_transport._protocol = None
        if self._app_state is _APP_MADE or self._app_state is _APP_EOF:
            self._app_state = _APP_LOST
            protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        """The raw transport's buffer is full: stop encrypting."""
        self._raw_write_paused = True

    def resume_writing(self) -> None:
        """The raw transport drained: encrypt what is queued."""
        self._raw_write_paused = False
        state = self._state
        if state is _OPEN:
            if self._backlog:
                self._encrypt()
        elif state is _FLUSHING:
            self._continue_shutdown()

    # ---- dispatch of incoming ciphertext ----------------------------------

    def _on_ciphertext(self) -> None:
        state = self._state
        if state is _OPEN:
            self._decrypt()
        elif state is _HANDSHAKING:
            self._do_handshake()
        elif state is _SHUTTING_DOWN:
            self._discard_and_unwrap()
        elif state is _FLUSHING:
            self._discard_incoming()
            self._control_raw_reading()
        elif state is not _NEW:
            self._incoming.read()  # closing: nobody will read it

    # ---- handshake --------------------------------------------------------

    def _do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except _AGAIN:
            self._send_outgoing()
            return
        except ssl.SSLError as exc:
            self._handshake_failed(exc)
            return
        self._handshake_done()

    def _handshake_done(self) -> None:
        self._cancel_timer()
        sslobj = self._sslobj
        try:
            peercert = sslobj.getpeercert()
        except Exception as exc:
            self._handshake_failed(exc)
            return
        self._extra.update(
            peercert=peercert,
            cipher=sslobj.cipher(),
            compression=sslobj.compression(),
            ssl_object=sslobj,
        )
        self._state = _OPEN
        # The client's Finished, or the server's session tickets.
        self._send_outgoing()
        loop = self._loop
        if self._handshake_started is not None:
            took = loop.time() - self._handshake_started
            logger.debug("%r: SSL handshake took %.1f ms", self, took * 1e3)
        if self._app_state is _APP_INIT:
            self._app_state = _APP_MADE
            try:
                self._app_protocol.connection_made(self.app_transport)
            except Exception as exc:
                self._wake_waiter(exc)
                self._fatal_error(exc, "protocol.connection_made() failed")
                return
        self._wake_waiter(None)
        if self._state is _OPEN:
            if self._backlog and not self._raw_write_paused:
                self._encrypt()
            # The peer may have sent data right behind its last handshake message.
            self._decrypt()

    def _handshake_failed(self, exc: BaseException) -> None:
        self._cancel_timer()
        if isinstance(exc, ssl.CertificateError):
            message = "SSL handshake failed on verifying the certificate"
        else:
            message = "SSL handshake failed"
        self._wake_waiter(exc)
        # Send the alert OpenSSL prepared, so the peer learns why.
        self._fatal_error(exc, message, send_alert=True)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._state is _HANDSHAKING:
            exc = ConnectionAbortedError(
                f"SSL handshake is taking longer than {self._handshake_timeout} "
                "seconds: aborting the connection"
            )
            self._wake_waiter(exc)
            self._fatal_error(exc, "SSL handshake timed out")

    def _wake_waiter(self, exc: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    # ---- reading ----------------------------------------------------------

    def _decrypt(self) -> None:
        """In OPEN: hand decrypted data to the application while it reads."""
        if self._state is not _OPEN:
            return
        if not self._app_read_paused:
            sslobj = self._sslobj
            try:
                if not self._peer_closed and (self._incoming.pending or sslobj.pending()):
                    if self._app_buffered:
                        self._read_into_app_buffers()
                    else:
                        self._read_and_deliver()
            except ssl.SSLError as exc:
                self._fatal_error(exc, "Fatal error on SSL protocol", send_alert=True)
                return
            except Exception as exc:
                self._fatal_error(exc, "Fatal error on SSL protocol")
                return
            if self._state is not _OPEN:
                return  # the application closed or aborted meanwhile
            if not self._app_read_paused and (self._peer_closed or self._raw_eof):
                self._on_eof()
                return
        if self._outgoing.pending:  # a TLS 1.2 renegotiation, or a key update
            self._send_outgoing()
        if self._write_blocked and not self._raw_write_paused:
            self._encrypt()
        self._control_raw_reading()

    def _read_and_deliver(self) -> None:
        read = self._sslobj.read
        chunks = []
        try:
            while True:
                chunk = read(_READ_CHUNK)
                if not chunk:
                    self._peer_closed = True
                    break
                chunks.append(chunk)
        except ssl.SSLZeroReturnError:
            self._peer_closed = True
        except _AGAIN:
            pass  # no complete record left (or only a session ticket)
        if chunks:
            self._app_protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _read_into_app_buffers(self) -> None:
        sslobj = self._sslobj
        incoming = self._incoming
        protocol = self._app_protocol
        while True:
            view = memoryview(protocol.get_buffer(incoming.pending or -1))
            filled = 0
            more = True
            try:
                if view.itemsize != 1 or view.ndim != 1:
                    cast = view.cast("B")
                    view.release()
                    view = cast
                size = view.nbytes
                if not size:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                try:
                    while filled < size:
                        count = sslobj.read(size - filled, view[filled:])
                        if not count:
                            self._peer_closed = True
                            more = False
                            break
                        filled += count
                except ssl.SSLZeroReturnError:
                    self._peer_closed = True
                    more = False
                except _AGAIN:
                    more = False
            finally:
                # Let go of the protocol's buffer before it hears of the data.
                view.release()
            if filled:
                protocol.buffer_updated(filled)
            if not more or self._app_read_paused or self._state is not _OPEN:
                return
            if protocol is not self._app_protocol:
                # set_protocol() from the callback: carry on with the new one.
                self._read_handle = self._read_handle or self._loop.call_soon(self._resume_read)
                return
            if not incoming.pending and not sslobj.pending():
                return

    def _on_eof(self) -> None:
        """The peer is done sending (close_notify, or a bare EOF): shut down."""
        self._call_app_eof_received()
        if self._state is _OPEN:
            self._start_shutdown()

    def _call_app_eof_received(self) -> None:
        if self._app_state is not _APP_MADE:
            return
        self._app_state = _APP_EOF
        try:
            keep_open = self._app_protocol.eof_received()
        except Exception as exc:
            self._fatal_error(exc, "Error calling eof_received()")
            return
        if keep_open:
            logger.warning("returning true from eof_received() has no effect when using ssl")

    def _control_raw_reading(self) -> None:
        raw = self._raw
        if raw is None:
            return
        pending = self._incoming.pending
        if self._raw_read_paused:
            if pending <= self._read_low:
                self._raw_read_paused = False
                raw.resume_reading()
        elif pending >= self._read_high and pending:
            self._raw_read_paused = True
            raw.pause_reading()

    def _pause_reading(self) -> None:
        self._app_read_paused = True

    def _resume_reading(self) -> None:
        if not self._app_read_paused:
            return
        self._app_read_paused = False
        if self._read_handle is None and self._state is _OPEN:
            # Later, not now: the caller may be in the middle of its own
            # buffer handling (StreamReader.read() resumes from inside).
            self._read_handle = self._loop.call_soon(self._resume_read)

    def _resume_read(self) -> None:
        self._read_handle = None
        self._decrypt()

    # ---- writing ----------------------------------------------------------

    def _write(self, data: Any) -> None:
        """Queue application data (non-empty, bytes-like) for encryption."""
        state = self._state
        if state is not _OPEN and state is not _HANDSHAKING and state is not _NEW:
            if self._lost_writes >= _LOG_LOST_WRITES_AFTER:
                logger.warning("SSL connection is closed")
            self._lost_writes += 1
            return
        backlog = self._backlog
        if data.__class__ is bytes:
            view = None
            size = len(data)
        else:
            view = memoryview(data)
            if view.itemsize != 1 or view.ndim != 1:
                view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
            size = view.nbytes
        self._backlog_size += size
        if state is _OPEN:
            if size >= _SMALL_WRITE:
                self._tail_open = False
                if not self._raw_write_paused:
                    self._encrypt_now(data, view)
                    self.app_transport._maybe_pause_protocol()
                    return
            elif self._flush_handle is None:
                # The first write of a batch goes out at once (latency);
                # later ones are coalesced and follow at the end of the batch.
                self._flush_handle = self._loop.call_soon(self._flush)
                if not backlog and not self._raw_write_paused:
                    self._encrypt_now(data, view)
                    self.app_transport._maybe_pause_protocol()
                    return
        if size < _SMALL_WRITE:
            # Coalesce: a copy, so the caller may reuse a mutable buffer.
            if self._tail_open:
                tail = backlog[-1]
                tail += data if view is None else view
            else:
                tail = bytearray(data if view is None else view)
                backlog.append(tail)
                self._tail_open = True
            if len(tail) >= _SMALL_WRITE:
                self._tail_open = False
            if state is _OPEN and self._backlog_size >= _FLUSH_NOW and not self._raw_write_paused:
                self._encrypt()
        else:
            self._tail_open = False
            backlog.append(data if view is None else view.tobytes())
        self.app_transport._maybe_pause_protocol()

    def _encrypt_now(self, data: Any, view: memoryview | None) -> None:
        """Queue *data* without copying it and encrypt; copy whatever has to wait."""
        backlog = self._backlog
        backlog.append(data if view is None else view)
        self._encrypt()
        if view is not None and backlog:
            last = backlog[-1]
            if last.__class__ is memoryview and last.obj is view.obj:
                # Not all taken: keep a copy, the caller may reuse its buffer.
                backlog[-1] = last.tobytes()

    def _flush(self) -> None:
        """End of the batch: encrypt what the application wrote meanwhile."""
        self._flush_handle = None
        if self._state is _OPEN and not self._raw_write_paused and self._backlog:
            self._encrypt()

    def _encrypt(self) -> None:
        """Turn queued plaintext into TLS records for the raw transport, while it accepts them."""
        backlog = self._backlog
        write = self._sslobj.write
        self._tail_open = False
        self._write_blocked = False
        try:
            while backlog and not self._raw_write_paused:
                budget = _SEND_CHUNK
                while backlog and budget > 0:
                    data = backlog[0]
                    size = len(data)
                    if size > budget:
                        view = data if data.__class__ is memoryview else memoryview(data)
                        count = write(view[:budget])
                        backlog[0] = view[count:]
                    else:
                        count = write(data)
                        if count < size:
                            view = data if data.__class__ is memoryview else memoryview(data)
                            backlog[0] = view[count:]
                        else:
                            backlog.popleft()
                    self._backlog_size -= count
                    budget -= count
                # May call our pause_writing() before it returns.
                self._send_outgoing()
        except _AGAIN:
            # Renegotiation (TLS 1.2): the peer must answer before we can
            # write; _decrypt() tries again when it has.
            self._write_blocked = True
            self._send_outgoing()
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol", send_alert=True)
            return
        if self._state is _OPEN:
            self.app_transport._maybe_resume_protocol()

    def _send_outgoing(self) -> None:
        """Hand everything OpenSSL produced to the raw transport."""
        outgoing = self._outgoing
        if outgoing.pending:
            data = outgoing.read()
            raw = self._raw
            if raw is not None and self._state is not _CLOSED:
                raw.write(data)

    def _drop_backlog(self) -> None:
        self._backlog.clear()
        self._backlog_size = 0
        self._tail_open = False

    # ---- closing ----------------------------------------------------------

    def _start_shutdown(self) -> None:
        """Graceful close: write the backlog, exchange close_notify, close the raw transport."""
        state = self._state
        if state is _OPEN:
            self._state = _FLUSHING
            self.app_transport._closing = True
            self._cancel_timer()
            self._timer = self._loop.call_later(self._shutdown_timeout, self._shutdown_timed_out)
            self._continue_shutdown()
        elif state is _NEW or state is _HANDSHAKING:
            self._abort()

    def _continue_shutdown(self) -> None:
        if self._backlog:
            if not self._raw_write_paused:
                self._encrypt()
            if self._backlog or self._state is not _FLUSHING:
                return  # resume_writing() (or the shutdown timeout) goes on
        self._state = _SHUTTING_DOWN
        if self._raw_eof:
            # Nobody is left to read our close_notify or to send theirs.
            self._finish_shutdown()
        else:
            self._discard_and_unwrap()

    def _discard_incoming(self) -> None:
        """Read and drop application data: we closed, and OpenSSL would choke on it."""
        sslobj = self._sslobj
        incoming = self._incoming
        scratch = self.get_buffer(-1)
        try:
            while not self._peer_closed and (incoming.pending or sslobj.pending()):
                if not sslobj.read(len(scratch), scratch):
                    self._peer_closed = True
        except ssl.SSLZeroReturnError:
            self._peer_closed = True
        except _AGAIN:
            pass

    def _discard_and_unwrap(self) -> None:
        """In SHUTTING_DOWN: send our close_notify, wait for the peer's."""
        try:
            self._discard_incoming()
            self._sslobj.unwrap()
        except _AGAIN:
            self._send_outgoing()
            self._control_raw_reading()
            return
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol", send_alert=True)
            return
        self._send_outgoing()
        self._finish_shutdown()

    def _finish_shutdown(self) -> None:
        self._cancel_timer()
        # As the stdlib: the application hears of the peer's end of stream.
        self._call_app_eof_received()
        if self._state is _CLOSING or self._state is _CLOSED:
            return
        self._state = _CLOSING
        self._raw.close()

    def _shutdown_timed_out(self) -> None:
        self._timer = None
        if self._state is _FLUSHING or self._state is _SHUTTING_DOWN:
            self._fatal_error(TimeoutError("SSL shutdown timed out"), "SSL shutdown timed out")

    def _abort(self) -> None:
        """Close at once; connection_lost(None) follows from the raw transport."""
        if self._state is _CLOSED:
            return
        self._state = _CLOSING
        self._cancel_callbacks()
        self._drop_backlog()
        self.app_transport._closing = True
        if self._raw is not None:
            self._raw.abort()

    def _fatal_error(self, exc: BaseException, message: str, *, send_alert: bool = False) -> None:
        """Report *exc* and end the connection; the application's connection_lost gets it."""
        if self._state is _CLOSING or self._state is _CLOSED:
            return
        self._close_exc = exc
        self.app_transport._report_fatal_error(exc, message)
        if send_alert and self._raw is not None:
            # Close (not abort) so that the alert OpenSSL queued gets out first.
            self._send_outgoing()
            self._state = _CLOSING
            self._cancel_callbacks()
            self._drop_backlog()
            self.app_transport._closing = True
            self._raw.close()
        else:
            self._abort()

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _cancel_callbacks(self) -> None:
        self._cancel_timer()
        for name in ("_flush_handle", "_read_handle"):
            handle = getattr(self, name)
            if handle is not None:
                setattr(self, name, None)
                handle.cancel()


class _SSLTransport(TransportBase):
    """The transport the application protocol of a TLS connection sees."""

    # start_tls() may run TLS over this transport in turn.
    _start_tls_compatible = True

    def __init__(self, loop: Any, tls: TLSProtocol) -> None:
        super().__init__(loop, None)
        self._tls = tls
        self._high_water, self._low_water = check_water_marks(_WRITE_HIGH_WATER, None)

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<{type(self).__name__} {state} {self._tls!r}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        tls = self.__dict__.get("_tls")
        if tls is not None and not self._closing and tls._state is _OPEN:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    # ---- info and protocol ------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``sslcontext``, ``ssl_object``, ``peercert``, ``cipher``, ``compression``,
        and whatever the raw transport knows (``peername``, ``socket``, ...)."""
        return self._tls._get_extra_info(name, default)

    @property
    def _sslcontext(self) -> ssl.SSLContext | None:
        # The name under which uvloop's TLS transport holds its context, and
        # which code that inspects transports (aiohttp's tests) falls back on.
        return self.get_extra_info("sslcontext")  # type: ignore[no-any-return]

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls._set_app_protocol(protocol)

    # ---- reading ----------------------------------------------------------

    def is_reading(self) -> bool:
        tls = self._tls
        return not tls._app_read_paused and tls._state in (_NEW, _HANDSHAKING, _OPEN)

    def pause_reading(self) -> None:
        """Stop calling the protocol's data_received() (or buffer_updated())."""
        self._tls._pause_reading()

    def resume_reading(self) -> None:
        """Deliver data to the protocol again."""
        self._tls._resume_reading()

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Ciphertext buffered (while the protocol is paused) before the raw transport is."""
        tls = self._tls
        tls._read_high, tls._read_low = check_water_marks(
            _READ_HIGH_WATER if high is None and low is None else high, low
        )
        tls._control_raw_reading()

    def get_read_buffer_limits(self) -> tuple[int, int]:
        return (self._tls._read_low, self._tls._read_high)

    def get_read_buffer_size(self) -> int:
        return self._tls._incoming.pending

    # ---- writing ----------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        """Plaintext written but not yet encrypted."""
        return self._tls._backlog_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None and low is None:
            high = _WRITE_HIGH_WATER
        super().set_write_buffer_limits(high, low)
        self._maybe_resume_protocol()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send *data* (soon: small writes are batched into few records)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, got {type(data).__name__}")
        if data:
            self._tls._write(data)

    def writelines(self, list_of_data: Any) -> None:
        """Write each buffer; they share TLS records as consecutive writes do."""
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        """False: TLS has no half-close here, as with the stdlib."""
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS transports cannot half-close: use close()")

    # ---- closing ----------------------------------------------------------

    def close(self) -> None:
        """Send what is buffered and a close_notify, then close the raw transport.

        The protocol's ``connection_lost(None)`` follows; no more data is
        delivered meanwhile.
        """
        if self._closing:
            return
        self._closing = True
        self._tls._start_shutdown()

    def abort(self) -> None:
        """Close the raw transport at once, dropping buffered data."""
        self._closing = True
        self._tls._abort()


def _overrides(transport: Any, name: str, base: type) -> bool:
    impl = getattr(type(transport), name, None)
    return callable(impl) and impl is not getattr(base, name, None)


def _supports_start_tls(transport: Any) -> bool:
    """Whether start_tls() can take over *transport*.

    Transports may say so with ``_start_tls_compatible`` (as the stdlib's
    do); any other stream transport qualifies if it really implements
    switching protocols and pausing reading (not just the abstract methods).
    """
    flag = getattr(transport, "_start_tls_compatible", None)
    if flag is not None:
        return bool(flag)
    return (
        _overrides(transport, "set_protocol", asyncio.BaseTransport)
        and _overrides(transport, "pause_reading", asyncio.ReadTransport)
        and _overrides(transport, "resume_reading", asyncio.ReadTransport)
        and _overrides(transport, "write", asyncio.WriteTransport)
        and _overrides(transport, "close", asyncio.BaseTransport)
    )


class TLSMixin:
    """``loop.start_tls()``: upgrade a connected stream transport to TLS."""

    async def start_tls(
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport | None:
        """Run a TLS handshake over *transport* and return the TLS transport.

        From then on *protocol* must use the returned transport; the old one
        belongs to the TLS layer. On failure (or cancellation) the old
        transport is closed and the error raised, as in the stdlib. A
        transport already closing gives None, as in the stdlib.
        """
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not _supports_start_tls(transport):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        if transport.is_closing():
            # None, as the stdlib returns for a transport whose closing is
            # under way (and as aiohttp expects). Once the transport has
            # finished closing the stdlib would instead wait for the
            # handshake timeout. The protocol keeps its transport, and hears
            # of the close through its own connection_lost().
            return None
        loop: Any = self
        waiter = loop.create_future()
        tls = TLSProtocol(
            loop,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            call_connection_made=False,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        raw: Any = transport
        # Paused while the protocol is switched, so no data can reach either
        # protocol half-way; then the handshake starts and reading resumes.
        app_transport = tls.app_transport  # tls lets go of it once closed
        raw.pause_reading()
        raw.set_protocol(tls)
        try:
            tls.connection_made(raw)
            raw.resume_reading()
            await waiter
        except BaseException:
            raw.close()
            raise
        return app_transport
