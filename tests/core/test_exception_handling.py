"""The exception-handler API, and what unhandled errors do to ``open_loop()``."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import subprocess
import sys
import threading

import pytest
import trio

import trio_asyncio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def _boom():
    raise ZeroDivisionError("boom")


# ---- the handler API (differential) -----------------------------------------


def test_no_handler_by_default_and_set_get_roundtrip(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        default = loop.get_exception_handler()

        def handler(loop, context):
            pass

        loop.set_exception_handler(handler)
        installed = loop.get_exception_handler() is handler
        loop.set_exception_handler(None)
        with pytest.raises(TypeError):
            loop.set_exception_handler("not callable")
        return default, installed, loop.get_exception_handler()

    assert aio_run(scenario) == (None, True, None)


def test_a_failing_callback_reaches_the_handler_with_the_usual_context(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        contexts = []
        loop.set_exception_handler(lambda loop, context: contexts.append(context))
        handle = loop.call_soon(_boom)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
        [context] = contexts
        return (
            sorted(context),
            context["message"].startswith("Exception in callback"),
            context["handle"] is handle,
            type(context["exception"]).__name__,
        )

    assert aio_run(scenario) == (
        ["exception", "handle", "message"],
        True,
        True,
        "ZeroDivisionError",
    )


def test_a_never_retrieved_task_exception_reaches_the_handler(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        contexts = []
        loop.set_exception_handler(lambda loop, context: contexts.append(context))

        async def fail():
            raise KeyError("lost")

        task = loop.create_task(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()
        del task
        gc.collect()
        loop.set_exception_handler(None)
        [context] = contexts
        return (
            sorted(context),
            context["message"],
            repr(context["exception"]),
            isinstance(context["future"], asyncio.Task),
        )

    assert aio_run(scenario) == (
        ["exception", "future", "message"],
        "Task exception was never retrieved",
        "KeyError('lost')",
        True,
    )


def test_a_handler_that_raises_is_logged_not_propagated(aio_run, caplog):
    async def scenario():
        loop = asyncio.get_running_loop()

        def bad_handler(loop, context):
            raise RuntimeError("handler broke")

        loop.set_exception_handler(bad_handler)
        ran_after = []
        loop.call_soon(_boom)
        loop.call_soon(ran_after.append, True)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
        return ran_after

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert aio_run(scenario) == [True]
    [record] = [r for r in caplog.records if "exception handler" in r.getMessage()]
    assert record.name == "asyncio"
    assert record.getMessage().startswith("Unhandled error in exception handler")
    assert isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="get_context() of tasks/handles: 3.12+")
def test_a_custom_handler_runs_in_the_context_of_what_failed(aio_run):
    var = contextvars.ContextVar("var", default="outside")

    async def scenario():
        loop = asyncio.get_running_loop()
        seen = []
        loop.set_exception_handler(lambda loop, context: seen.append(var.get()))

        def callback():
            var.set("callback")
            _boom()

        async def failing():
            var.set("task")
            _boom()

        loop.call_soon(callback)
        await asyncio.sleep(0)
        loop.create_task(failing())  # never awaited: reported when collected
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gc.collect()
        loop.set_exception_handler(None)
        return seen

    assert aio_run(scenario) == ["callback", "task"]


def test_default_exception_handler_logs_message_extra_keys_and_traceback(aio_run, caplog):
    async def scenario():
        loop = asyncio.get_running_loop()
        try:
            _boom()
        except ZeroDivisionError as exc:
            error = exc
        loop.default_exception_handler(
            {"message": "something odd", "exception": error, "detail": [1, 2]}
        )
        return error

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        error = aio_run(scenario)
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    text = record.getMessage()
    assert text.splitlines()[0] == "something odd"
    assert "detail: [1, 2]" in text
    assert record.exc_info[1] is error


def test_default_exception_handler_without_a_message(aio_run, caplog):
    async def scenario():
        asyncio.get_running_loop().default_exception_handler({})

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        aio_run(scenario)
    [record] = caplog.records
    assert record.getMessage() == "Unhandled exception in event loop"
    assert not record.exc_info


# ---- unhandled errors and open_loop() ----------------------------------------


@pytest.mark.trio
async def test_an_exception_escaping_a_callback_surfaces_out_of_open_loop():
    failure = ZeroDivisionError("from a callback")

    def fail():
        raise failure

    with pytest.raises(ZeroDivisionError) as info:
        async with trio_asyncio.open_loop() as loop:
            loop.call_soon(fail)
            await trio.sleep_forever()  # cancelled by the failure
    assert info.value is failure
    if sys.version_info >= (3, 11):
        assert any("Exception in callback" in note for note in info.value.__notes__)


@pytest.mark.trio
async def test_an_unretrieved_task_exception_surfaces_out_of_open_loop():
    async def fail():
        raise KeyError("task failed")

    with pytest.raises(KeyError, match="task failed"):
        async with trio_asyncio.open_loop() as loop:
            # Nobody keeps the task: it is collected once it has failed.
            loop.call_soon(lambda: loop.create_task(fail()) and None)
            await loop.synchronize()
            await loop.synchronize()
            gc.collect()  # (3.12+ needs the cycle collector for it)
            await trio.sleep_forever()


@pytest.mark.trio
async def test_an_error_surfacing_cancels_pending_asyncio_work_first():
    cleaned = []

    async def waiter():
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("waiter finally")

    with pytest.raises(ZeroDivisionError):
        async with trio_asyncio.open_loop() as loop:
            loop.call_later(0, _boom)
            # The body is blocked in asyncio code when the error arrives.
            await trio_asyncio.aio_as_trio(waiter)()
    assert cleaned == ["waiter finally"]


@pytest.mark.trio
async def test_several_unhandled_errors_come_out_as_a_group():
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio_asyncio.open_loop() as loop:
            loop.call_soon(_boom)
            loop.call_soon(lambda: {}["missing"])
            await trio.sleep_forever()
    assert sorted(type(e).__name__ for e in info.value.exceptions) == [
        "KeyError",
        "ZeroDivisionError",
    ]


@pytest.mark.trio
async def test_a_report_without_an_exception_is_only_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        async with trio_asyncio.open_loop() as loop:
            loop.call_exception_handler({"message": "Unclosed client session"})

            async def also_from_asyncio():
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "Unclosed connector", "connector": "x"}
                )

            await trio_asyncio.aio_as_trio(also_from_asyncio)()
            await trio.sleep(0)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert messages[0] == "Unclosed client session"
    assert messages[1].startswith("Unclosed connector")
    assert "connector: 'x'" in messages[1]


@pytest.mark.trio
async def test_with_a_custom_handler_nothing_is_raised():
    contexts = []

    async def fail():
        raise KeyError("handled")

    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(lambda loop, context: contexts.append(context))
        loop.call_soon(_boom)
        loop.call_soon(lambda: loop.create_task(fail()) and None)
        await loop.synchronize()
        await loop.synchronize()
        gc.collect()
    assert sorted(type(c["exception"]).__name__ for c in contexts) == [
        "KeyError",
        "ZeroDivisionError",
    ]


@pytest.mark.trio
async def test_call_exception_handler_from_trio_code_with_an_exception_surfaces():
    error = ValueError("reported from Trio")
    with pytest.raises(ValueError) as info:
        async with trio_asyncio.open_loop() as loop:
            loop.call_exception_handler({"message": "custom report", "exception": error})
            await trio.sleep_forever()
    assert info.value is error


@pytest.mark.trio
async def test_the_loop_keeps_working_after_a_handled_error():
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(lambda loop, context: None)
        loop.call_soon(_boom)

        async def later():
            await asyncio.sleep(0)
            return "still fine"

        assert await trio_asyncio.aio_as_trio(later)() == "still fine"


# ---- KeyboardInterrupt ------------------------------------------------------


def _run_in_thread(fn, timeout=10):
    """Run ``fn()`` in a thread; its outcome, or a failure if it hangs."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail("deadlock: trio.run() did not return")
    return result


@pytest.mark.parametrize("where", ["callback", "task", "awaited task", "timer"])
def test_keyboardinterrupt_in_asyncio_code_propagates_out_of_trio_run(where, caplog):
    async def main():
        async with trio_asyncio.open_loop() as loop:

            async def interrupt():
                await asyncio.sleep(0)
                raise KeyboardInterrupt

            def interrupt_now():
                raise KeyboardInterrupt

            if where == "callback":
                loop.call_soon(interrupt_now)
            elif where == "timer":
                loop.call_later(0.01, interrupt_now)
            elif where == "task":
                loop.call_soon(lambda: loop.create_task(interrupt()) and None)
            else:
                await trio_asyncio.aio_as_trio(interrupt)()
            await trio.sleep_forever()

    outcome = _run_in_thread(lambda: trio.run(main))
    assert isinstance(outcome.get("error"), KeyboardInterrupt), outcome
    outcome.clear()
    gc.collect()  # an interrupted task may log that nobody retrieved it


_KI_IN_MAIN_THREAD = """
import asyncio, trio, trio_asyncio

async def main():
    async with trio_asyncio.open_loop() as loop:
        def interrupt():
            raise KeyboardInterrupt
        loop.call_soon(interrupt)
        await trio.sleep_forever()

try:
    trio.run(main)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


def test_keyboardinterrupt_in_a_callback_in_the_main_thread():
    try:
        result = subprocess.run(
            [sys.executable, "-c", _KI_IN_MAIN_THREAD], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock after KeyboardInterrupt")
    assert result.stdout.strip() == "KeyboardInterrupt", result.stderr
