"""Exceptions for bad input. The CLI prints them as one line, without a traceback, and exits non-zero."""


class LensSearchError(ValueError):
    """Bad input: a file, key, row or value that is not what was expected.

    The message names what and where (file, line, key or row) and what was expected.
    """


class InputFileError(LensSearchError):
    """A file that is missing, corrupt or malformed."""


class LensToolError(InputFileError):
    """A malformed or unsupported LensTool parameter or catalogue file."""
