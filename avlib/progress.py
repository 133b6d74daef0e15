"""No progress bars in a notebook kernel without a live front end (papermill, nbval, ``avlib
reproduce``): stored in a notebook, a widget bar reads "0%" forever and a text bar leaves its
finished line and timings in the outputs. A kernel counts as live when a Jupyter server started
it (the server sets ``JPY_SESSION_NAME``) and ``AVLIB_HEADLESS`` is unset.

:func:`quiet_progress_bars` runs when avlib is first imported, before any bar is made; it turns
off every tqdm bar in such a kernel, those of diffusers and of avlib's ``progress=True`` calls
included (tqdm's own ``TQDM_DISABLE`` yields to an explicit ``disable=False`` and is ignored by
the widget bars). Scripts, the CLI and tests keep their bars.
"""
from __future__ import annotations

import os
import sys

HEADLESS_ENV = "AVLIB_HEADLESS"


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell), without importing IPython."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and type(ipython.get_ipython()).__name__ == "ZMQInteractiveShell"


def live_frontend() -> bool:
    """A kernel a Jupyter server started, not told to run headless."""
    return "JPY_SESSION_NAME" in os.environ and os.environ.get(HEADLESS_ENV, "") in ("", "0")


def quiet_progress_bars() -> None:
    """In a kernel without a live front end, make every tqdm bar (text or widget) disabled."""
    if not in_kernel() or live_frontend():
        return
    import tqdm.notebook
    import tqdm.std

    for cls in (tqdm.std.tqdm, tqdm.notebook.tqdm):
        if not cls.__dict__.get("_avlib_quiet"):
            cls.__init__ = _disabled(cls.__init__)
            cls._avlib_quiet = True


def _disabled(init):
    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    return quiet_init
