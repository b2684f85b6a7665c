"""Rule-file errors: ``FILE:LINE:COL: error: message``, the line, and a caret under the fault."""

from __future__ import annotations


class RuleError(Exception):
    """A fault in a rule file (or in a set element given at run time), with its place."""

    def __init__(self, message: str, line: int = 0, col: int = 0, length: int = 1,
                 path: str = "<rules>", source: str = "") -> None:
        super().__init__(message)
        self.message, self.line, self.col, self.length = message, line, col, max(1, length)
        self.path, self.source = path, source

    def located(self, path: str, text: str) -> RuleError:
        """This error, naming ``path`` and quoting its line from ``text``."""
        lines = text.splitlines()
        source = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
        return RuleError(self.message, self.line, self.col, self.length, path, source)

    def __str__(self) -> str:
        head = f"{self.path}:{self.line}:{self.col}: error: {self.message}"
        if not self.source:
            return head
        shown = self.source.expandtabs(1)
        width = min(self.length, max(1, len(shown) - self.col + 1))
        return f"{head}\n{shown}\n{' ' * (self.col - 1)}^{'~' * (width - 1)}"
