"""The one exception capture reading raises: a bad byte sequence at a named file offset."""

from __future__ import annotations


class CaptureFormatError(ValueError):
    """A capture file is malformed or truncated at byte ``offset``.

    ``offset`` is the byte offset (from the start of the file) of the record or block that is
    bad; records before it were read and are valid.
    """

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"offset {offset}: {message}")
        self.offset = offset
        self.message = message

    def __reduce__(self):
        return (type(self), (self.offset, self.message))
