"""nbval's kernels (`pytest --nbval notebooks/`) over local sockets, as `avlib reproduce` and
`make lab` start theirs: ipykernel warns that a kernel on loopback TCP runs without encryption,
and a socket file in a folder of this session's own is reachable by nobody else."""
from __future__ import annotations

import shutil
import tempfile

import nbval.kernel
import pytest
from jupyter_client.manager import KernelManager

SOCKETS = tempfile.mkdtemp(prefix="avlib-nbval-kernel-")


class LocalSocketKernelManager(KernelManager):
    """jupyter_client's manager with IPC sockets under :data:`SOCKETS` (an absolute path: the
    default ``kernel-ipc-N`` is relative to wherever the kernel starts)."""

    def __init__(self, **kwargs):
        super().__init__(transport="ipc", ip=f"{SOCKETS}/ipc", **kwargs)


nbval.kernel.KernelManager = LocalSocketKernelManager  # the class nbval's start_new_kernel builds


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    shutil.rmtree(SOCKETS, ignore_errors=True)
