"""avlib: audio (optionally with text) in, video out -- the AudioVisGen report, reproducibly."""

__version__ = "0.1.0"

from avlib.progress import quiet_progress_bars as _quiet_progress_bars

_quiet_progress_bars()  # a notebook kernel run headless stores no progress bars (avlib.progress)
