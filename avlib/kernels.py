"""Jupyter kernels over local sockets (IPC) instead of loopback TCP: the same speed, nothing
another user of the machine can connect to, and no "Kernel is running over TCP without
encryption" warning from ipykernel at every start. `avlib reproduce`, papermill's command line
(:mod:`avlib.papermill_cli`), `make lab` and nbval (notebooks/conftest.py) start theirs so."""
from __future__ import annotations

import contextlib
import shutil
import tempfile

from traitlets.config import Config


@contextlib.contextmanager
def ipc_kernel_config():
    """A ``KernelManager`` configuration (for papermill, nbclient or jupyter_client) whose
    kernels listen on sockets in a folder of their own, removed when the block ends.

    The sockets get an absolute path of their own: the default (``kernel-ipc-N``) is relative,
    so a kernel started in another folder than ours never meets us, and parallel runs would
    share names.
    """
    folder = tempfile.mkdtemp(prefix="avlib-kernel-")
    try:
        yield Config({"KernelManager": {"transport": "ipc", "ip": f"{folder}/ipc"}})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
