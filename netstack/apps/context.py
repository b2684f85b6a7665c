"""What an app running inside the stack component gets: a place for its results and a log."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class AppContext:
    """``results`` appear in the component's statistics (``capnet run --stats-json``);
    ``log`` prints one line on the component's output."""

    name: str
    results: dict = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.results[key] = self.results.get(key, 0) + n

    def log(self, message: str) -> None:
        print(f"{self.name}: {message}", file=sys.stdout, flush=True)
