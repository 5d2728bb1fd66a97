"""Errors that carry a message a person can act on.

Everything raised on bad input derives from FerError, so the CLI and the dashboard can show the
message as one line instead of a traceback.
"""


class FerError(Exception):
    """Base class: bad input or a failed operation, with a readable message."""


class DataError(FerError):
    """A dataset file or folder could not be read; the message names the file, line and problem."""


class CheckpointError(FerError):
    """A checkpoint could not be loaded or does not fit its architecture."""


class RunError(FerError):
    """A run folder is busy, missing, or in a state that forbids the request."""


class ExportError(FerError):
    """An export folder is busy or holds another export, or one of its files is missing, cut
    short or changed; the message names the file."""
