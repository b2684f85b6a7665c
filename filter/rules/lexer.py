"""Tokens of the rule language, each with its line and column (1-based).

Atoms are maximal runs of ``[A-Za-z0-9_.:/-]`` (names, numbers, addresses, prefixes, ranges,
``10/second``); the parser gives them meaning. Punctuation is ``{};,@&|()=<>![]`` and
``!= == <= >=`` (brackets hold IPv6 NAT targets: ``[2001:db8::1]:80``). Strings are
double-quoted. ``#`` starts a comment that runs to the end of the line. Newlines are tokens: they end rules, like ``;``.
"""

from __future__ import annotations

from dataclasses import dataclass

from filter.rules.errors import RuleError

ATOM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/-")
PUNCT2 = ("!=", "==", "<=", ">=")
PUNCT1 = "{};,@&|()=<>![]"


@dataclass(frozen=True)
class Token:
    kind: str          # "atom", "string", "punct", "newline", "eof"
    text: str
    line: int
    col: int

    def error(self, message: str) -> RuleError:
        return RuleError(message, self.line, self.col, len(self.text) or 1)

    def __str__(self) -> str:
        return {"newline": "end of line", "eof": "end of file"}.get(self.kind, repr(self.text))


def tokenize(text: str) -> list[Token]:
    """Every token of ``text``; raises ``RuleError`` on a character the language does not use."""
    tokens: list[Token] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if ch in " \t\r":
                i += 1
            elif ch == "#":
                break
            elif ch == '"':
                end = line.find('"', i + 1)
                if end < 0:
                    raise RuleError("unterminated string", lineno, i + 1, n - i)
                tokens.append(Token("string", line[i + 1:end], lineno, i + 1))
                i = end + 1
            elif ch in ATOM_CHARS:
                j = i
                while j < n and line[j] in ATOM_CHARS:
                    j += 1
                tokens.append(Token("atom", line[i:j], lineno, i + 1))
                i = j
            elif line[i:i + 2] in PUNCT2:
                tokens.append(Token("punct", line[i:i + 2], lineno, i + 1))
                i += 2
            elif ch in PUNCT1:
                tokens.append(Token("punct", ch, lineno, i + 1))
                i += 1
            else:
                raise RuleError(f"unexpected character {ch!r}", lineno, i + 1)
        tokens.append(Token("newline", "", lineno, n + 1))
    lines = text.splitlines() or [""]
    tokens.append(Token("eof", "", len(lines), len(lines[-1]) + 1))
    return tokens
