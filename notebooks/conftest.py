"""nbval's kernels (`pytest --nbval notebooks/`) over local sockets, as every kernel avlib starts
(:mod:`avlib.kernels`): ipykernel warns that a kernel on loopback TCP runs without encryption,
and a socket file in a folder of this session's own is reachable by nobody else."""
from __future__ import annotations

from pathlib import Path

import nbval.kernel
import pytest
from jupyter_client.manager import KernelManager

from avlib.kernels import ipc_kernel_config

_sockets = ipc_kernel_config()            # one socket folder for the session, removed at its end
CONFIG = _sockets.__enter__()
SOCKETS = str(Path(CONFIG.KernelManager.ip).parent)


class LocalSocketKernelManager(KernelManager):
    """jupyter_client's manager with the configuration :func:`ipc_kernel_config` gives."""

    def __init__(self, **kwargs):
        super().__init__(config=CONFIG, **kwargs)


nbval.kernel.KernelManager = LocalSocketKernelManager  # the class nbval's start_new_kernel builds


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    _sockets.__exit__(None, None, None)
