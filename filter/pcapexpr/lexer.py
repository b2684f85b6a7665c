"""Tokens of a pcap-filter expression, cut as libpcap's flex scanner (scanner.l) cuts them.

flex takes the longest match at each position and, on a tie, the earliest rule; the rules'
order here is scanner.l's: keywords, operators, `$xx` ARCnet ids, MAC addresses, numbers,
dotted IPv4 ids, IPv6 addresses, named constants (`tcp-syn`, `icmptype`, ...), then names.
That is why `80-90` is one name (for `portrange`) and `len-1` is a name, not `len - 1`.
"""

import ipaddress
import re
from dataclasses import dataclass

from filter.pcapexpr.errors import FilterSyntaxError
from filter.pcapexpr.names import KEYWORDS, NAMED_CONSTANTS


@dataclass(frozen=True)
class Token:
    """kind: a keyword, an operator, or one of NUM ID HID HID6 EID AID END; col is 0-based."""

    kind: str
    text: str
    col: int
    value: int | None = None


_ID = re.compile(r"[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?")
_ESCAPED_ID = re.compile(r"\\[^ !()\n\t]+")
_AID = re.compile(r"\$[0-9A-Fa-f]{1,2}")
_B = r"[0-9A-Fa-f]{1,2}"
_B2 = r"[0-9A-Fa-f]{4}"
_MAC = re.compile(
    "|".join([":".join([_B] * 6), "-".join([_B] * 6), r"\.".join([_B] * 6),
              r"\.".join([_B2] * 3), _B2 * 3])
)
_NUM = re.compile(r"0[Xx][0-9A-Fa-f]+|[0-9]+")
_N = r"(?:0[Xx][0-9A-Fa-f]+|[0-9]+)"
_HID = re.compile(rf"{_N}\.{_N}\.{_N}\.{_N}|{_N}\.{_N}\.{_N}|{_N}\.{_N}")
_BAD_MAC = re.compile(rf"{_B}:+(?:{_B}:+)+")
_OPERATORS = [">=", "<=", "!=", "==", "<<", ">>", "&&", "||"]
_SINGLE = set("+-*/%:[]!<>()&|^=")
_V6_RUN = re.compile(r"[0-9A-Fa-f:.xX]+")


def _v6_regex() -> re.Pattern:
    w = "[0-9A-Fa-f]{1,4}"
    v4 = rf"{_N}\.{_N}\.{_N}\.{_N}"
    forms = [":".join([w] * 8), ":".join([w] * 6) + ":" + v4]
    for total in range(0, 8):
        for left in range(0, total + 1):
            forms.append(":".join([w] * left) + "::" + ":".join([w] * (total - left)))
    for total in range(0, 6):
        for left in range(0, total + 1):
            right = total - left
            forms.append(":".join([w] * left) + "::" + (w + ":") * right + v4)
    return re.compile("|".join(f"(?:{f})" for f in forms))


_V6 = _v6_regex()


def _v6_length(text: str, pos: int) -> int:
    run = _V6_RUN.match(text, pos)
    if not run or ":" not in run.group():
        return 0
    candidate = run.group()
    for end in range(len(candidate), 1, -1):
        if _V6.fullmatch(candidate, 0, end):
            return end
    return 0


def _number(text: str, col: int) -> int:
    """libpcap's stoulen: decimal, 0x hex or leading-0 octal; 32 bits at most."""
    if text[:2] in ("0x", "0X"):
        value = int(text[2:], 16)
    elif len(text) > 1 and text[0] == "0":
        if any(c in "89" for c in text):
            raise FilterSyntaxError(f"number {text} contains non-octal digit", col)
        value = int(text, 8)
    else:
        value = int(text)
    if value > 0xFFFFFFFF:
        raise FilterSyntaxError(f"number {text} overflows 32 bits", col)
    return value


def tokenize(text: str) -> list[Token]:
    """Cut text into tokens; FilterSyntaxError at the first character no rule accepts."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch in " \t\r\n":
            pos += 1
            continue
        token, length = _longest(text, pos)
        tokens.append(token)
        pos += length
    tokens.append(Token("END", "", len(text)))
    return tokens


def _longest(text: str, pos: int) -> tuple[Token, int]:
    # (length, -priority, builder) for each rule that matches here; longest then earliest wins.
    candidates: list[tuple[int, int, str]] = []
    ident = _ID.match(text, pos)
    if ident:
        word = ident.group()
        if word in KEYWORDS:
            candidates.append((len(word), 0, "KEYWORD"))
        elif word in NAMED_CONSTANTS:
            candidates.append((len(word), 9, "NAMED"))
        else:
            candidates.append((len(word), 10, "ID"))
    two = text[pos:pos + 2]
    if two in _OPERATORS:
        candidates.append((2, 1, "OP2"))
    elif text[pos] in _SINGLE:
        candidates.append((1, 1, "OP1"))
    for priority, (kind, regex) in enumerate(
        [("AID", _AID), ("EID", _MAC), ("NUM", _NUM), ("HID", _HID)], start=2
    ):
        m = regex.match(text, pos)
        if m:
            candidates.append((len(m.group()), priority, kind))
    v6 = _v6_length(text, pos)
    if v6:
        candidates.append((v6, 7, "HID6"))
    bad = _BAD_MAC.match(text, pos)
    if bad:
        candidates.append((len(bad.group()), 8, "BADMAC"))
    escaped = _ESCAPED_ID.match(text, pos)
    if escaped:
        candidates.append((len(escaped.group()), 11, "ESCAPED"))
    if not candidates:
        raise FilterSyntaxError(f"unexpected character {text[pos]!r}", pos)
    length, _, kind = max(candidates, key=lambda c: (c[0], -c[1]))
    word = text[pos:pos + length]
    if kind == "KEYWORD":
        return Token(KEYWORDS[word], word, pos), length
    if kind == "NAMED":
        return Token("NUM", word, pos, NAMED_CONSTANTS[word]), length
    if kind == "ID":
        return Token("ID", word, pos), length
    if kind == "ESCAPED":
        return Token("ID", word[1:], pos), length
    if kind == "OP2":
        op = {"&&": "and", "||": "or", "==": "="}.get(word, word)
        return Token(op, word, pos), length
    if kind == "OP1":
        return Token("not" if word == "!" else word, word, pos), length
    if kind == "NUM":
        return Token("NUM", word, pos, _number(word, pos)), length
    if kind == "HID6":
        try:
            ipaddress.IPv6Address(word)
        except ValueError:
            raise FilterSyntaxError(f"invalid IPv6 address {word}", pos) from None
        return Token("HID6", word, pos), length
    if kind == "BADMAC":
        raise FilterSyntaxError(f"invalid Ethernet address {word}", pos)
    return Token(kind, word, pos), length
