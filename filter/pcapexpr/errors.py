"""The one error a bad pcap-filter expression raises."""


class FilterSyntaxError(ValueError):
    """An expression libpcap would reject; `.column` is the 0-based offset of the fault."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = max(0, column)

    def __str__(self) -> str:
        return f"column {self.column + 1}: {self.message}"

    def caret(self, expression: str) -> str:
        """The expression on one line and a caret under the fault on the next."""
        line = expression.replace("\n", " ").replace("\t", " ")
        return f"{line}\n{' ' * min(self.column, len(line))}^"
