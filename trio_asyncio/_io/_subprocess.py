"""Subprocesses: ``subprocess_exec`` and ``subprocess_shell``.

The transport starts the child with :class:`subprocess.Popen`, wraps its
stdin/stdout/stderr pipes in our pipe transports and has the loop's
:class:`~._child_watching.ChildReaper` reap it (pidfd, or a waiter thread),
so no asyncio child watcher is involved.

The order of protocol calls is the stdlib's: ``connection_made`` first (the
pipe callbacks that happen earlier are queued until then), then
``pipe_data_received`` / ``pipe_connection_lost`` / ``process_exited`` as
they happen, and ``connection_lost(None)`` once the child has been reaped
*and* every pipe is closed; ``wait()`` returns at that point too.
:mod:`asyncio.subprocess` drives this transport through its public methods
plus the private ``_wait()`` coroutine.

When the loop closes, children still running are killed and reaped and
their pipes closed, without protocol calls (the loop can no longer run them).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import subprocess
import warnings
from collections.abc import Callable
from typing import Any

from ._child_watching import ChildReaper, _Watch
from ._pipes import ReadPipeTransport, WritePipeTransport, _PipeLifecycle

logger = logging.getLogger("asyncio")

PIPE = subprocess.PIPE


class _PipeProtocol(asyncio.Protocol):
    """Forwards one child pipe's events to the subprocess transport."""

    def __init__(self, owner: SubprocessTransport, fd: int) -> None:
        self.owner: SubprocessTransport | None = owner
        self.fd = fd
        self.pipe: Any = None
        self.disconnected = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.fd} pipe={self.pipe!r}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.pipe = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.disconnected = True
        owner, self.owner = self.owner, None
        if owner is not None:
            owner._pipe_connection_lost(self.fd, exc)

    def data_received(self, data: bytes) -> None:
        if self.owner is not None:
            self.owner._pipe_data_received(self.fd, data)

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner._protocol.resume_writing()


class SubprocessTransport(asyncio.SubprocessTransport):
    """The transport of ``subprocess_exec`` / ``subprocess_shell``."""

    # Class defaults, so __repr__ and __del__ work on a half-built transport.
    _closed = False
    _proc: subprocess.Popen[bytes] | None = None
    _pid: int | None = None
    _returncode: int | None = None
    _watch: _Watch | None = None

    def __init__(
        self,
        loop: Any,
        protocol: asyncio.SubprocessProtocol,
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(extra)
        self._loop = loop
        self._protocol: Any = protocol
        self._pipes: dict[int, _PipeProtocol] = {}
        # Protocol calls made before connection_made() wait here; None after.
        self._pending_calls: (
            collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] | None
        ) = collections.deque()
        self._exit_waiters: list[asyncio.Future[int]] = []
        self._finished = False  # connection_lost() scheduled
        try:
            self._proc = subprocess.Popen(
                args,
                shell=shell,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                universal_newlines=False,
                bufsize=bufsize,
                **kwargs,
            )
        except BaseException:
            self._closed = True
            raise
        proc = self._proc
        self._pid = proc.pid
        self._extra["subprocess"] = proc
        if loop.get_debug():
            program = args if isinstance(args, (bytes, str)) else args[0]
            logger.debug("process %r created: pid %s", program, self._pid)
        # Watch first: whatever fails next, the child gets killed and reaped.
        try:
            self._watch = loop._child_reaper_for_loop().watch(
                self._pid, self._process_exited, lambda: proc.returncode
            )
        except BaseException:
            # Cannot watch it (no thread could start): do not leave it behind.
            self._closed = True
            proc.kill()
            proc.wait()
            for file in (proc.stdin, proc.stdout, proc.stderr):
                if file is not None:
                    file.close()
            raise
        loop._subprocess_transports.add(self)
        try:
            for fd, pipe in ((0, proc.stdin), (1, proc.stdout), (2, proc.stderr)):
                if pipe is None:
                    continue
                pipe_protocol = _PipeProtocol(self, fd)
                self._pipes[fd] = pipe_protocol
                make = WritePipeTransport if fd == 0 else ReadPipeTransport
                pipe_protocol.pipe = make(loop, pipe, pipe_protocol)
        except BaseException:
            self.close()
            for file in (proc.stdin, proc.stdout, proc.stderr):
                if file is not None:
                    file.close()
            raise
        # The pipes' connection_made() calls were queued above: this runs after them.
        loop.call_soon(self._connected, waiter)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._closed:
            info.append("closed")
        if self._pid is not None:
            info.append(f"pid={self._pid}")
        if self._returncode is not None:
            info.append(f"returncode={self._returncode}")
        elif self._pid is not None:
            info.append("running")
        else:
            info.append("not started")
        for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
            proto = getattr(self, "_pipes", {}).get(fd)
            if proto is not None:
                info.append(f"{name}={proto.pipe!r}")
        return "<{}>".format(" ".join(info))

    # ---- protocol calls -------------------------------------------------------

    def _connected(self, waiter: asyncio.Future[Any] | None) -> None:
        loop = self._loop
        loop.call_soon(self._protocol.connection_made, self)
        pending, self._pending_calls = self._pending_calls, None
        for callback, args in pending or ():
            loop.call_soon(callback, *args)
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        if self._pending_calls is not None:
            self._pending_calls.append((callback, args))
        else:
            self._loop.call_soon(callback, *args)

    def _pipe_data_received(self, fd: int, data: bytes) -> None:
        self._call(self._protocol.pipe_data_received, fd, data)

    def _pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _process_exited(self, returncode: int) -> None:
        """The child was reaped (called by the reaper, in the loop's thread)."""
        if self._returncode is not None:
            return
        self._returncode = returncode
        self._watch = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.returncode = returncode  # Popen must not wait for it, nor warn
        loop = self._loop
        if loop.is_closed():
            return  # reaped by loop close: nothing may be scheduled any more
        if loop.get_debug():
            logger.info("%r exited with return code %r", self, returncode)
        self._call(self._protocol.process_exited)
        self._try_finish()

    def _try_finish(self) -> None:
        if self._finished or self._returncode is None:
            return
        if all(proto.disconnected for proto in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            waiters, self._exit_waiters = self._exit_waiters, []
            for waiter in waiters:
                if not waiter.cancelled():
                    waiter.set_result(self._returncode)  # type: ignore[arg-type]
            self._loop._subprocess_transports.discard(self)
            self._proc = None  # from now on, signalling raises ProcessLookupError
            self._protocol = None

    async def _wait(self) -> int:
        """Wait for the child's exit and all its pipes to close; its returncode. Asyncio-flavoured.

        (Private, but awaited by :meth:`asyncio.subprocess.Process.wait`.)
        """
        if self._returncode is not None:
            return self._returncode
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._exit_waiters.append(waiter)
        return await waiter

    # ---- SubprocessTransport ----------------------------------------------------

    def get_pid(self) -> int | None:
        return self._pid

    def get_returncode(self) -> int | None:
        return self._returncode

    def get_pipe_transport(self, fd: int) -> asyncio.BaseTransport | None:
        proto = self._pipes.get(fd)
        return None if proto is None else proto.pipe

    def send_signal(self, signal: int) -> None:
        """Send *signal* to the child.

        Raises ProcessLookupError once the transport has finished (as the
        stdlib does); does nothing after the child was reaped, so a pid
        reused by another process is never signalled.
        """
        if self._proc is None:
            raise ProcessLookupError()
        watch = self._watch
        if self._returncode is not None or watch is None:
            return
        try:
            watch.send_signal(signal)
        except ProcessLookupError:
            pass  # exited, not reaped yet

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the pipes and kill the child if it still runs (it is reaped later)."""
        if self._closed:
            return
        self._closed = True
        for proto in self._pipes.values():
            if proto.pipe is not None:
                proto.pipe.close()
        self._kill_if_running()

    def _kill_if_running(self) -> None:
        proc = self._proc
        if proc is None or self._returncode is not None or self._watch is None:
            return
        # As the stdlib: a child that Popen knows to be finished (it may
        # have reaped it) is not killed. poll() may reap one that just
        # exited; the reaper then takes the exit code from Popen.
        if proc.poll() is not None:
            return
        if self._loop.get_debug():
            logger.warning("Close running child process: kill %r", self)
        try:
            # Through Popen.kill(), as the stdlib does, so that code wrapping
            # it sees the call.
            proc.kill()
        except (ProcessLookupError, PermissionError):
            pass  # exited already, or setuid

    def _abandon(self) -> None:
        """At loop close: kill the child and close the pipes, with no protocol calls.

        Does not mark the transport closed: one its owner never closed still
        warns when garbage-collected, as in the stdlib.
        """
        self._kill_if_running()
        for proto in self._pipes.values():
            pipe = proto.pipe
            if isinstance(pipe, _PipeLifecycle):
                pipe._force_close()
            proto.owner = None

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not self._closed:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()


def _format_pipe(fd: Any) -> str:
    if fd == subprocess.PIPE:
        return "<pipe>"
    if fd == subprocess.STDOUT:
        return "<stdout>"
    return repr(fd)


class SubprocessMixin:
    """``subprocess_exec`` and ``subprocess_shell`` (mixin of the loop)."""

    _child_reaper: ChildReaper | None = None
    # Subprocess transports whose connection_lost() has not run yet.
    _subprocess_transports: set[SubprocessTransport]

    def _child_reaper_for_loop(self) -> ChildReaper:
        reaper = self._child_reaper
        if reaper is None:
            reaper = self._child_reaper = ChildReaper(self)
            self._subprocess_transports = set()
        return reaper

    async def subprocess_exec(
        self,
        protocol_factory: Callable[[], asyncio.SubprocessProtocol],
        program: Any,
        *args: Any,
        stdin: Any = PIPE,
        stdout: Any = PIPE,
        stderr: Any = PIPE,
        universal_newlines: bool = False,
        shell: bool = False,
        bufsize: int = 0,
        encoding: str | None = None,
        errors: str | None = None,
        text: bool | None = None,
        **kwargs: Any,
    ) -> tuple[SubprocessTransport, asyncio.SubprocessProtocol]:
        """Run *program* with *args* in a child process. Asyncio-flavoured.

        Returns ``(transport, protocol)`` once ``protocol.connection_made()``
        has run. The streams are bytes only, as in the stdlib: text mode,
        encodings, buffering and ``shell=True`` are refused with ValueError.
        """
        _check_popen_args(universal_newlines, shell, False, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        if self.get_debug():  # type: ignore[attr-defined]
            _log_subprocess(f"execute program {program!r}", stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, (program, *args), False, stdin, stdout, stderr, bufsize, **kwargs
        )
        return transport, protocol

    async def subprocess_shell(
        self,
        protocol_factory: Callable[[], asyncio.SubprocessProtocol],
        cmd: str | bytes,
        *,
        stdin: Any = PIPE,
        stdout: Any = PIPE,
        stderr: Any = PIPE,
        universal_newlines: bool = False,
        shell: bool = True,
        bufsize: int = 0,
        encoding: str | None = None,
        errors: str | None = None,
        text: bool | None = None,
        **kwargs: Any,
    ) -> tuple[SubprocessTransport, asyncio.SubprocessProtocol]:
        """Run the shell command *cmd* in a child process. Asyncio-flavoured.

        Like :meth:`subprocess_exec`, with ``/bin/sh -c cmd``.
        """
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        _check_popen_args(universal_newlines, shell, True, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        if self.get_debug():  # type: ignore[attr-defined]
            _log_subprocess(f"run shell command {cmd!r}", stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs
        )
        return transport, protocol

    async def _make_subprocess_transport(
        self,
        protocol: asyncio.SubprocessProtocol,
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SubprocessTransport:
        """Start the child and wait until the protocol is connected. Asyncio-flavoured."""
        self._check_closed()  # type: ignore[attr-defined]
        # Before the child exists: its pipe transports would refuse a foreign
        # thread only once it runs, leaving it unwatched.
        self._check_thread("subprocess_shell" if shell else "subprocess_exec")  # type: ignore[attr-defined]
        waiter = self.create_future()  # type: ignore[attr-defined]
        transport = SubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter, extra, **kwargs
        )
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        if self.get_debug():  # type: ignore[attr-defined]
            logger.info("process started: %r", transport)
        return transport

    def _close_subprocesses(self) -> None:
        """At loop close: kill, reap and disconnect every child still known.

        Idempotent. Must run before the selector closes (it unregisters fds).
        Children are reaped with a bounded wait; see ``ChildReaper.close``.
        """
        reaper = self._child_reaper
        if reaper is None:
            return
        transports, self._subprocess_transports = self._subprocess_transports, set()
        for transport in transports:
            transport._abandon()
        reaper.close()

    def _close_selector(self) -> None:
        # Runs when the loop closes, while the selector is still usable.
        self._close_subprocesses()
        super()._close_selector()  # type: ignore[misc]


def _check_popen_args(
    universal_newlines: bool,
    shell: bool,
    shell_wanted: bool,
    bufsize: int,
    text: bool | None,
    encoding: str | None,
    errors: str | None,
) -> None:
    """The stdlib's checks, in its order: byte streams only, no buffering."""
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bool(shell) != shell_wanted:
        raise ValueError(f"shell must be {shell_wanted}")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


def _log_subprocess(message: str, stdin: Any, stdout: Any, stderr: Any) -> None:
    info = [message]
    if stdin is not None:
        info.append(f"stdin={_format_pipe(stdin)}")
    if stdout is not None and stderr == subprocess.STDOUT:
        info.append(f"stdout=stderr={_format_pipe(stdout)}")
    else:
        if stdout is not None:
            info.append(f"stdout={_format_pipe(stdout)}")
        if stderr is not None:
            info.append(f"stderr={_format_pipe(stderr)}")
    logger.debug(" ".join(info))
