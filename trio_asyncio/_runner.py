"""``python -m trio_asyncio``: run an unchanged asyncio program, or a REPL, on our loop.

Usage::

    python -m trio_asyncio path/to/program.py [args ...]
    python -m trio_asyncio -m package.module [args ...]
    python -m trio_asyncio                      # asyncio REPL with top-level await

A program runs as it would under ``python program.py`` (or ``python -m
package.module``): ``__name__ == "__main__"``, ``sys.argv`` is
``[program, *args]``, ``sys.path[0]`` is the program's directory (the current
directory for ``-m``). The exit status is the program's: ``SystemExit`` is
honoured; an uncaught exception prints its traceback (through
``sys.excepthook``, without this runner's frames) and exits with status 1;
an uncaught ``KeyboardInterrupt`` is re-raised, so the interpreter exits the
way it does for Ctrl+C.

How an unchanged program ends up on our loop
--------------------------------------------

* **Python 3.10 to 3.13.** Importing ``trio_asyncio`` (which this runner does
  before the program starts) installs :class:`~trio_asyncio.TrioPolicy`.
  Everything that asks the policy for a loop then gets a
  :class:`~trio_asyncio.SyncTrioEventLoop`: ``asyncio.run()`` and
  ``asyncio.Runner()`` without ``loop_factory`` (they call
  ``asyncio.new_event_loop()``), ``asyncio.new_event_loop()`` itself, and the
  loop that ``asyncio.get_event_loop()`` creates implicitly in the main
  thread. A program that picks its own loop (``loop_factory=``,
  ``asyncio.SelectorEventLoop()``, ``uvloop.install()``, its own policy) keeps
  its choice: that is deliberate, the runner does not fight the program.

* **Python 3.14 and later.** Event loop policies are deprecated (they go in
  3.16) and ``trio_asyncio`` no longer installs one. What is needed instead,
  and what :func:`route_new_event_loop` does on those versions, is to replace
  the module function ``asyncio.events.new_event_loop`` (re-exported as
  ``asyncio.new_event_loop``) for the program's lifetime.
  ``asyncio.run()`` and ``asyncio.Runner`` look that function up at call time
  when no ``loop_factory`` is given, so both, and direct calls, get our loop;
  a later ``from asyncio import new_event_loop`` in the program gets the
  replacement too, because the program only starts after it is in place.
  ``asyncio.get_event_loop()`` no longer creates a loop on 3.14, so nothing
  is needed there. The same limits as above apply: explicit loop classes and
  factories are left alone. The function is exercised on every supported
  version by the tests, because it does not depend on the policy machinery.

The REPL
--------

Like ``python -m asyncio``: the loop runs ``run_forever()`` in the *main*
thread, and the interactive console reads input in a second thread. The loop
must own the main thread: Ctrl+C (``KeyboardInterrupt``) and signal handlers
are delivered there, and Trio's guest run expects its host loop there. Each
input is compiled with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`` and handed to the
loop with ``call_soon_threadsafe``. It runs in a loop callback, so
``asyncio.get_running_loop()`` works even in input without ``await``; input
that awaits becomes a task. The console thread waits for the outcome. Ctrl+C
while input runs cancels it (or interrupts it, if it is synchronous code) and
prints ``KeyboardInterrupt``; the REPL goes on. ``exit()`` or end of input
leaves it: the remaining tasks are cancelled and the loop is closed, as
``asyncio.run()`` would do.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import code
import concurrent.futures
import inspect
import os
import runpy
import sys
import threading
import traceback
import types
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import trio

import trio_asyncio

from ._policy import POLICIES_SUPPORTED
from ._sync_loop import SyncTrioEventLoop, new_event_loop

USAGE = """\
usage: python -m trio_asyncio [-h] [--version] [-m module | program] [args ...]
"""

HELP = (
    USAGE
    + """
Run an unchanged asyncio program on trio-asyncio's event loop (a
SyncTrioEventLoop), where Trio code is available through trio_asyncio.trio_as_aio
and loop.run_trio.

  program      a Python file (or a directory or zip file with __main__.py),
               run as __main__ with sys.argv = [program, args...], as
               "python program args..." would
  -m module    run a module (or a package's __main__) as __main__, as
               "python -m module args..." would
  (nothing)    an asyncio REPL on trio-asyncio's loop, with top-level await
  -h, --help   show this help and exit
  --version    show trio-asyncio's version and exit

Everything after the program or module belongs to it. asyncio.run(),
asyncio.Runner() and asyncio.new_event_loop() create trio-asyncio loops
unless the program asks for another loop explicitly.
"""
)


# ---- command line ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point of ``python -m trio_asyncio``; returns the exit status for ``sys.exit()``.

    The program's own ``SystemExit`` (and ``KeyboardInterrupt``) propagate.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    module: str | None = None
    program: str | None = None
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            sys.stdout.write(HELP)
            return 0
        if arg == "--version":
            sys.stdout.write(f"trio-asyncio {trio_asyncio.__version__}\n")
            return 0
        if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            module = arg[2:] or (args.pop(0) if args else "")
            if not module:
                return _usage_error("-m needs a module name")
            break
        if arg == "--":
            if not args:
                return _usage_error("a program is needed after --")
            program = args.pop(0)
            break
        if arg.startswith("-") and arg != "-":
            return _usage_error(f"unknown option {arg}")
        program = arg
        break

    if module is None and program is None:
        return run_repl()
    use_our_loops()
    if module is not None:
        sys.argv = [module, *args]  # runpy puts the module's file in argv[0]
        return _run_main(runpy.run_module, module, run_name="__main__", alter_sys=True)
    assert program is not None
    if program == "-":
        return _usage_error("reading the program from stdin is not supported")
    if not os.path.exists(program):
        sys.stderr.write(f"python -m trio_asyncio: can't open file {program!r}: not found\n")
        return 2
    sys.argv = [program, *args]
    _set_sys_path_for(program)
    return _run_main(runpy.run_path, program, run_name="__main__")


def _usage_error(message: str) -> int:
    sys.stderr.write(f"{USAGE}python -m trio_asyncio: error: {message}\n")
    return 2


def _set_sys_path_for(program: str) -> None:
    """Make ``sys.path[0]`` what ``python program`` would have made it."""
    if getattr(sys.flags, "safe_path", False):
        return  # python -P: nothing is prepended
    # `python -m trio_asyncio` put the current directory first; a script
    # run directly would not see it.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    if os.path.isdir(program) or zipfile.is_zipfile(program):
        return  # runpy.run_path() prepends the directory or archive itself
    sys.path.insert(0, os.path.dirname(os.path.realpath(program)))


def _run_main(run: Callable[..., Any], target: str, **kwargs: Any) -> int:
    try:
        run(target, **kwargs)
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        # Let the interpreter report it and exit as for Ctrl+C.
        raise exc.with_traceback(_program_frames(exc.__traceback__)) from None
    except BaseException as exc:
        tb = _program_frames(exc.__traceback__)
        if tb is None and isinstance(exc, ImportError):
            # runpy could not find or load the module itself ("No module
            # named ..."): a one-line message, as from `python -m`.
            sys.stderr.write(f"python -m trio_asyncio: {exc}\n")
            return 1
        # The excepthook shows exc.__traceback__ rather than its argument.
        _report(exc.with_traceback(tb))
        return 1
    return 0


_OUR_FILES = {os.path.normcase(os.path.abspath(__file__)), runpy.__file__, "<frozen runpy>"}


def _report(exc: BaseException) -> None:
    """Report an uncaught exception as the interpreter does: through sys.excepthook."""
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
    if sys.version_info >= (3, 12):
        sys.last_exc = exc
    sys.excepthook(type(exc), exc, exc.__traceback__)


def _program_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """Drop this runner's and runpy's frames from the top of a traceback."""
    while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _is_ours(filename: str) -> bool:
    if filename in _OUR_FILES:
        return True
    return os.path.normcase(os.path.abspath(filename)) in _OUR_FILES


# ---- making the program use our loop -------------------------------------------------


def use_our_loops() -> None:
    """Make ``asyncio.run()`` & co. create trio-asyncio loops (see the module docs)."""
    if not POLICIES_SUPPORTED:
        route_new_event_loop()
    # Before 3.14 the policy installed by ``import trio_asyncio`` does it.


def route_new_event_loop() -> None:
    """Replace ``asyncio.new_event_loop`` by :func:`trio_asyncio.new_event_loop`.

    For Python 3.14+, where no policy is installed. ``asyncio.run()`` and
    ``asyncio.Runner`` without ``loop_factory`` call the module function
    ``asyncio.events.new_event_loop`` when they need a loop.
    """
    events = asyncio.events
    if getattr(events.new_event_loop, "__module__", None) == __name__:
        return

    def routed_new_event_loop() -> SyncTrioEventLoop:
        return new_event_loop()

    routed_new_event_loop.__doc__ = events.new_event_loop.__doc__
    routed_new_event_loop.__qualname__ = routed_new_event_loop.__name__ = "new_event_loop"
    events.new_event_loop = routed_new_event_loop
    asyncio.new_event_loop = routed_new_event_loop


# ---- the REPL ---------------------------------------------------------------------------


def _banner() -> str:
    return (
        f"trio-asyncio {trio_asyncio.__version__} REPL: asyncio on trio-asyncio's loop "
        f"(SyncTrioEventLoop), Python {sys.version.split()[0]} on {sys.platform}\n"
        'Use "await" directly instead of "asyncio.run()". Trio code runs through '
        '"await trio_asyncio.trio_as_aio(fn)(*args)".\n'
        "asyncio, trio and trio_asyncio are imported. Type exit() or Ctrl+D to leave.\n"
    )


class AsyncioConsole(code.InteractiveConsole):
    """An interactive console whose input runs on an asyncio loop in another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, namespace: dict[str, Any]) -> None:
        super().__init__(namespace, filename="<stdin>")
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.loop = loop
        # Only touched in the loop's thread:
        self._pending: concurrent.futures.Future[Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled_by_user = False

    # -- console thread ----------------------------------------------------

    def runcode(self, code_obj: types.CodeType) -> None:
        """Run one input on the loop and wait for it (called in the console thread)."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self._start, code_obj, done)
        try:
            done.result()
        except SystemExit:
            raise  # leaves interact()
        except KeyboardInterrupt:
            self.write("\nKeyboardInterrupt\n")
        except BaseException as exc:
            self._show_error(exc)

    def _show_error(self, exc: BaseException) -> None:
        tb = exc.__traceback__
        # Show the input's frames, not the machinery that ran it.
        first = tb
        while first is not None and first.tb_frame.f_code.co_filename != self.filename:
            first = first.tb_next
        if first is not None:
            exc = exc.with_traceback(first)
        if sys.excepthook is sys.__excepthook__:
            sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
            if sys.version_info >= (3, 12):
                sys.last_exc = exc
            self.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        else:
            _report(exc)

    # -- loop thread ---------------------------------------------------------

    def _start(self, code_obj: types.CodeType, done: concurrent.futures.Future[Any]) -> None:
        if done.done():
            return  # interrupted before it could start
        self._pending = done
        self._cancelled_by_user = False
        try:
            result = types.FunctionType(code_obj, self.locals)()  # type: ignore[arg-type]
        except BaseException as exc:
            # Also SystemExit (exit()) and KeyboardInterrupt in synchronous input.
            self._finish(done, exc=exc)
            return
        if not inspect.iscoroutine(result):
            self._finish(done, result=result)
            return
        try:
            task = self.loop.create_task(result)
        except BaseException as exc:
            result.close()
            self._finish(done, exc=exc)
            return
        self._task = task
        task.add_done_callback(lambda t: self._task_done(t, done))

    def _task_done(self, task: asyncio.Task[Any], done: concurrent.futures.Future[Any]) -> None:
        if self._task is task:
            self._task = None
        if task.cancelled():
            exc: BaseException = (
                KeyboardInterrupt() if self._cancelled_by_user else asyncio.CancelledError()
            )
            self._finish(done, exc=exc)
        elif task.exception() is not None:
            self._finish(done, exc=task.exception())
        else:
            self._finish(done, result=task.result())

    def _finish(
        self,
        done: concurrent.futures.Future[Any],
        result: Any = None,
        exc: BaseException | None = None,
    ) -> None:
        if self._pending is done:
            self._pending = None
        if done.done():
            return
        if exc is None:
            done.set_result(result)
        else:
            done.set_exception(exc)

    def interrupt(self) -> None:
        """Ctrl+C reached the loop (call in the loop's thread): stop the current input."""
        task = self._task
        if task is not None and not task.done():
            self._cancelled_by_user = True
            task.cancel()
        elif self._pending is not None:
            # Interrupted between two steps of our own machinery.
            self._finish(self._pending, exc=KeyboardInterrupt())
        else:
            self.write("\nKeyboardInterrupt\n")


def run_repl() -> Any:
    """Run the asyncio REPL on a new trio-asyncio loop; return the exit status.

    The status is a ``SystemExit`` code: an int, None or a message.
    """
    sys.argv = [""]
    main_module = types.ModuleType("__main__")
    main_module.__dict__.update(
        {"__builtins__": builtins, "asyncio": asyncio, "trio": trio, "trio_asyncio": trio_asyncio}
    )
    sys.modules["__main__"] = main_module
    namespace = main_module.__dict__

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    console = AsyncioConsole(loop, namespace)
    exit_code: list[Any] = [0]

    _setup_line_editing(namespace)

    def console_thread() -> None:
        try:
            startup = os.environ.get("PYTHONSTARTUP")
            if startup and os.path.isfile(startup):
                with open(startup, encoding="utf-8") as file:
                    console.runsource(file.read(), startup, "exec")
            console.interact(banner=_banner(), exitmsg="")
        except SystemExit as exc:
            exit_code[0] = exc.code
        except BaseException:  # pragma: no cover - a bug in the console itself
            console.showtraceback()
            exit_code[0] = 1
        finally:
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # pragma: no cover - closed already
                pass

    thread = threading.Thread(target=console_thread, name="trio-asyncio REPL", daemon=True)
    thread.start()
    try:
        while True:
            try:
                loop.run_forever()
            except KeyboardInterrupt:
                console.interrupt()
                continue
            except SystemExit as exc:
                # exit() in a task, or a callback that raised SystemExit.
                exit_code[0] = exc.code
            break
    finally:
        _close_loop(loop)
        asyncio.set_event_loop(None)
    console.write("exiting trio-asyncio REPL...\n")
    return exit_code[0]


def _setup_line_editing(namespace: dict[str, Any]) -> None:
    if not sys.stdin.isatty():
        return
    hook = getattr(sys, "__interactivehook__", None)
    if hook is not None:
        hook()  # history and tab completion, as in the plain REPL
    try:
        import readline
        import rlcompleter
    except ImportError:
        return
    readline.set_completer(rlcompleter.Completer(namespace).complete)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left, shut down async generators and the executor, close."""
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
