"""User-facing errors.

Anything a user can cause (a missing file, a wrong checkpoint, an unknown experiment)
raises :class:`AvlibError` with one message that names the problem and the fix. The CLI
prints it on one line and exits non-zero; tracebacks are for bugs, not for bad input.
In Jupyter (and so in papermill's error) it shows as that one line too.
"""


class AvlibError(Exception):
    """A problem with the user's input, config or files (not a bug in avlib)."""

    def _render_traceback_(self) -> list[str]:
        # IPython's hook for an exception's own display: the message, not avlib's internals.
        return [f"{type(self).__name__}: {self}"]


class ConfigError(AvlibError):
    """An experiment config, override or parameter that does not validate."""


class CheckpointError(AvlibError):
    """A checkpoint that is missing, unreadable, or of the wrong layout."""


class MediaError(AvlibError):
    """An audio or video file that is missing, unreadable or unusable."""


class AvlibWarning(UserWarning):
    """Something avlib accepted but the user should know: shown as one line by the CLI."""
