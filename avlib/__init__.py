"""avlib: audio (optionally with text) in, video out -- the AudioVisGen report, reproducibly."""

__version__ = "0.1.0"
