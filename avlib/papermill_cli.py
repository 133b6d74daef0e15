"""avlib's errors on papermill's command line: one line and exit status 2, no traceback.

``papermill NB OUT -p cls cat`` runs the notebook, whose first cell after the parameters
raises a :class:`ConfigError`; the executed notebook shows that one line (IPython's
``_render_traceback_``, :mod:`avlib.errors`), but papermill's command line lets its own
``PapermillExecutionError`` escape, and Python prints the call stack of papermill and click
around it. Users call papermill directly, so the command must stay as it is.

papermill imports every ``papermill.engine`` entry point when it is imported (its documented
way for packages to add engines). avlib declares one in ``pyproject.toml``, so importing papermill
imports this module, which installs :func:`excepthook`. That hook handles one case only: a
``PapermillExecutionError`` that reached the top of papermill's command line and whose cell
failed with one of avlib's errors; it prints ``papermill: error: ...`` and exits with status 2.
Every other error, and any program that catches the error itself (``avlib reproduce``), is
left as it was. The engine is papermill's own, its kernels on local sockets (IPC) as every kernel
avlib starts (:mod:`avlib.kernels`); it is also made papermill's default, so that a plain
``papermill NB OUT`` prints no "Kernel is running over TCP without encryption" warning.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
from types import TracebackType

from avlib import errors
from avlib.kernels import ipc_kernel_config

EXIT_STATUS = 2   # bad input, as every avlib command


def avlib_error_names() -> set[str]:
    """The class names of :class:`avlib.errors.AvlibError` and its subclasses (a cell's ``ename``)."""
    names, pending = set(), [errors.AvlibError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def from_command_line(trace: TracebackType | None) -> bool:
    """Whether the error passed through papermill's command line (not a caller's own code)."""
    while trace is not None:
        if trace.tb_frame.f_globals.get("__name__") == "papermill.cli":
            return True
        trace = trace.tb_next
    return False


def one_line(error: BaseException, trace: TracebackType | None) -> str | None:
    """The line papermill's command line shows for ``error``; None where Python's own report stays."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if type(error).__name__ != "PapermillExecutionError" or ename not in avlib_error_names():
        return None
    if not from_command_line(trace):
        return None
    return f"papermill: error: the notebook failed in cell {error.exec_count}: {ename}: {' '.join(str(evalue).split())}"


def excepthook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    line = one_line(error, trace)
    if line is None:
        return _previous_hook(kind, error, trace)
    print(line, file=sys.stderr)
    _exit(EXIT_STATUS)


def _exit(status: int) -> None:
    """End the process as Python ends it after an uncaught error (threads joined, ``atexit``
    functions run, streams flushed), with ``status``: after an excepthook Python itself always
    exits with 1."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(status)


def install() -> None:
    """Make :func:`excepthook` the process's hook, in front of the one installed before (once)."""
    global _previous_hook
    if sys.excepthook is not excepthook:
        _previous_hook, sys.excepthook = sys.excepthook, excepthook


def __getattr__(name: str):
    # The entry point's engine, built only when papermill looks it up (importing this module
    # alone imports nothing of papermill's).
    if name == "Engine":
        return local_socket_engine()
    raise AttributeError(name)


def local_socket_engine():
    """papermill's default engine, starting kernels on local sockets (:mod:`avlib.kernels`)
    unless the caller brings a kernel manager or a configuration of its own; registered as
    papermill's default too, so that ``papermill NB OUT`` prints no TCP warning."""
    from papermill.engines import NBClientEngine, papermill_engines

    class LocalSocketEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            if "km" in kwargs or "config" in kwargs:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            with ipc_kernel_config() as config:
                return super().execute_managed_notebook(nb_man, kernel_name, config=config, **kwargs)

    papermill_engines.register(None, LocalSocketEngine)
    return LocalSocketEngine


_previous_hook = sys.excepthook
install()
