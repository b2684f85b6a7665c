"""Problems found in a system description: each names the file, the key path and what is valid."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    message: str
    hint: str = ""
    line: int | None = None
    column: int | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.severity}: {self.key}: {self.message}" if self.key else \
            f"{where}: {self.severity}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class DescriptionError(Exception):
    """A description with at least one error; nothing may be started from it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
