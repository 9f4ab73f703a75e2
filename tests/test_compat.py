"""Each private detail of asyncio/Trio that _compat relies on, checked on this Python."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
import sniffio
import trio
import trio.testing

from trio_asyncio import _compat


class _RecordingLoop:
    """The minimum a Handle needs from a loop, recording what it is told."""

    def __init__(self) -> None:
        self.cancelled: list[asyncio.TimerHandle] = []
        self.errors: list[dict[str, object]] = []

    def get_debug(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self.cancelled.append(handle)

    def call_exception_handler(self, context: dict[str, object]) -> None:
        self.errors.append(context)


def test_running_loop_accessors_round_trip() -> None:
    sentinel = object()
    assert _compat.get_running_loop_or_none() is None
    _compat.set_running_loop(sentinel)
    try:
        assert _compat.get_running_loop_or_none() is sentinel
        assert asyncio.get_running_loop() is sentinel
    finally:
        _compat.set_running_loop(None)


def test_handle_run_calls_in_context_and_reports_errors() -> None:
    loop = _RecordingLoop()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    context = contextvars.copy_context()
    context.run(var.set, "inside")
    seen: list[str] = []
    handle = asyncio.Handle(lambda: seen.append(var.get()), (), loop, context)  # type: ignore[arg-type]
    assert handle._cancelled is False
    handle._run()
    assert seen == ["inside"]

    failing = asyncio.Handle(lambda: 1 / 0, (), loop, None)  # type: ignore[arg-type]
    failing._run()
    assert isinstance(loop.errors[0]["exception"], ZeroDivisionError)
    assert loop.errors[0]["handle"] is failing


def test_handle_run_lets_keyboard_interrupt_through() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    handle = asyncio.Handle(interrupt, (), _RecordingLoop(), None)  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        handle._run()


def test_timer_handle_reports_cancel_to_loop() -> None:
    loop = _RecordingLoop()
    timer = asyncio.TimerHandle(5.0, print, (), loop, None)  # type: ignore[arg-type]
    assert timer._when == 5.0
    assert timer._scheduled is False
    timer._scheduled = True
    timer.cancel()
    assert loop.cancelled == [timer]
    assert timer._cancelled
    timer.cancel()  # a second cancel is not reported
    assert loop.cancelled == [timer]


def test_handle_parts() -> None:
    handle = asyncio.Handle(print, (1, 2), _RecordingLoop(), None)  # type: ignore[arg-type]
    callback, args, context = _compat.handle_parts(handle)
    assert callback is print
    assert args == (1, 2)
    assert isinstance(context, contextvars.Context)


def test_clock_is_default() -> None:
    async def main() -> tuple[bool, bool]:
        return _compat.clock_is_default(trio.lowlevel.current_clock()), True

    assert trio.run(main) == (True, True)
    assert trio.run(main, clock=trio.testing.MockClock()) == (False, True)


def test_hide_trio_task_makes_trio_calls_fail_clearly() -> None:
    async def main() -> None:
        me = trio.lowlevel.current_task()
        saved = _compat.hide_trio_task()
        try:
            assert saved is me
            with pytest.raises(RuntimeError, match="trio_as_aio"):
                trio.CancelScope().__enter__()
            # Scheduling primitives that our callbacks use still work.
            trio.lowlevel.current_trio_token()
            trio.current_time()
        finally:
            _compat.restore_trio_task(saved)
        assert trio.lowlevel.current_task() is me
        await trio.lowlevel.checkpoint()

    trio.run(main)


def test_restore_when_no_task_was_set() -> None:
    saved = _compat.hide_trio_task()
    assert saved is None
    _compat.restore_trio_task(saved)
    with pytest.raises(RuntimeError):
        trio.lowlevel.current_task()


def test_set_task_context_is_used_for_the_next_step() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="original")

    async def main() -> str:
        task = trio.lowlevel.current_task()
        context = contextvars.copy_context()
        context.run(var.set, "swapped")
        _compat.set_task_context(task, context)
        await trio.lowlevel.checkpoint()
        return var.get()

    assert trio.run(main) == "swapped"


def test_quiet_pending_task() -> None:
    loop = asyncio.new_event_loop()
    try:

        async def never() -> None:
            await asyncio.Event().wait()

        task = loop.create_task(never())
        _compat.quiet_pending_task(task)
        assert task._log_destroy_pending is False  # type: ignore[attr-defined]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(task)
    finally:
        loop.close()


def test_sniffio_state_is_the_thread_local() -> None:
    assert _compat.sniffio_state is sniffio.thread_local


def test_is_trio_signal_handler() -> None:
    import signal

    async def main() -> object:
        return signal.getsignal(signal.SIGINT)

    trio_handler = trio.run(main)
    # Trio restores the previous handler when the run ends, so look inside one.
    assert not _compat.is_trio_signal_handler(signal.default_int_handler)

    async def inside() -> bool:
        return _compat.is_trio_signal_handler(signal.getsignal(signal.SIGINT))

    assert trio.run(inside)
    assert trio_handler is not None


def test_fast_signal_functions_agree_with_the_signal_module() -> None:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        pytest.skip("signal handlers: main thread only")

    def handler(signum: int, frame: object) -> None:  # pragma: no cover - never called
        pass

    previous = signal.getsignal(signal.SIGINT)
    try:
        assert _compat.fast_getsignal(int(signal.SIGINT)) is previous
        assert _compat.fast_setsignal(int(signal.SIGINT), handler) is previous
        assert signal.getsignal(signal.SIGINT) is handler
        assert _compat.fast_getsignal(int(signal.SIGINT)) is handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert _compat.fast_getsignal(int(signal.SIGINT)) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
