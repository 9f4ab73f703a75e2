"""The loop's exception-handler API, with the stdlib's logging as the default.

Drivers decide what an *unhandled* error means (async mode raises it out of
``open_loop``); this module only provides the API and the logging default.
"""

from __future__ import annotations

import logging
import reprlib
import traceback
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("asyncio")

ExceptionHandler = Callable[[Any, dict[str, Any]], object]


class ExceptionHandlingMixin:
    def __init__(self) -> None:
        self._exception_handler: ExceptionHandler | None = None

    def get_exception_handler(self) -> ExceptionHandler | None:
        return self._exception_handler

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        """Install *handler* (``handler(loop, context)``), or restore the default with None."""
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log *context* at ERROR level on the ``asyncio`` logger, as the stdlib loop does."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = False
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        current = getattr(self, "_current_handle", None)
        if "source_traceback" not in context and current is not None:
            source_tb = getattr(current, "_source_traceback", None)
            if source_tb:
                context["handle_traceback"] = source_tb
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                text = "".join(traceback.format_list(value)).rstrip()
                value = "Object created at (most recent call last):\n" + text
            elif key == "handle_traceback":
                text = "".join(traceback.format_list(value)).rstrip()
                value = "Handle created at (most recent call last):\n" + text
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Report *context* to the installed handler, or to :meth:`_unhandled_error`."""
        handler = self._exception_handler
        if handler is None:
            try:
                self._unhandled_error(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            run_in = _context_of(context)
            if run_in is None:
                handler(self, context)
            else:
                run_in.run(handler, self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error(
                    "Exception in default exception handler while handling an "
                    "unexpected error in custom exception handler",
                    exc_info=True,
                )

    def _unhandled_error(self, context: dict[str, Any]) -> None:
        """What an error nobody handles does; drivers may override. Default: log."""
        self.default_exception_handler(context)


def _context_of(context: dict[str, Any]) -> Any:
    """The contextvars of the task, future or handle that *context* reports about.

    A custom handler runs in them, as in the stdlib (3.12+, where tasks and
    handles have ``get_context()``); None where there are none.
    """
    thing = context.get("task")
    if thing is None:
        thing = context.get("future")  # may hold a task
    if thing is None:
        thing = context.get("handle")
    get_context = getattr(thing, "get_context", None)
    if get_context is None:
        return None
    run_in = get_context()
    return run_in if hasattr(run_in, "run") else None


def short_repr(obj: object) -> str:
    return reprlib.repr(obj)
