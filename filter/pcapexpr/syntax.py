"""The compiled form of an expression: value and predicate trees over the frame's bytes.

Values are unsigned 32-bit; `Load(addr, size)` reads `size` big-endian bytes at the absolute
frame offset `addr` (itself a value). Predicates combine with short-circuit `And`/`Or`/`Not`
evaluated left to right. As in BPF, a load past the captured bytes, or a division by zero,
that is actually reached rejects the whole frame, whatever the rest of the expression says.
"""

from dataclasses import dataclass


class Value:
    """An unsigned 32-bit quantity computed from the frame."""


class Pred:
    """A test on the frame."""


@dataclass(frozen=True)
class Const(Value):
    k: int


@dataclass(frozen=True)
class Load(Value):
    """`size` bytes at `addr`. `indexed` marks a `proto[expr]` load: libpcap emits those as
    X-indexed loads, whose value its optimizer never identifies with a primitive's load."""

    addr: Value
    size: int
    indexed: bool = False


@dataclass(frozen=True)
class Length(Value):
    """The frame's length in bytes (BPF's `len`)."""


@dataclass(frozen=True)
class Binary(Value):
    op: str  # one of + - * / % & | ^ << >>
    left: Value
    right: Value


@dataclass(frozen=True)
class Negate(Value):
    operand: Value


@dataclass(frozen=True)
class Compare(Pred):
    op: str  # one of = != > >= < <=
    left: Value
    right: Value


@dataclass(frozen=True)
class Truth(Pred):
    value: bool


@dataclass(frozen=True)
class And(Pred):
    left: Pred
    right: Pred


@dataclass(frozen=True)
class Or(Pred):
    left: Pred
    right: Pred


@dataclass(frozen=True)
class Not(Pred):
    operand: Pred


TRUE = Truth(True)
FALSE = Truth(False)
MASK32 = 0xFFFFFFFF


def const(k: int) -> Const:
    return Const(k & MASK32)


def add(a: Value, k: int) -> Value:
    """a + k, folding constants."""
    if k == 0:
        return a
    if isinstance(a, Const):
        return Const((a.k + k) & MASK32)
    if isinstance(a, Binary) and a.op == "+" and isinstance(a.right, Const):
        return Binary("+", a.left, Const((a.right.k + k) & MASK32))
    return Binary("+", a, Const(k & MASK32))


def conj(*preds: Pred) -> Pred:
    """Left-to-right short-circuit conjunction, dropping TRUE operands."""
    out: Pred | None = None
    for p in preds:
        if p == TRUE:
            continue
        out = p if out is None else And(out, p)
    return TRUE if out is None else out


def disj(*preds: Pred) -> Pred:
    """Left-to-right short-circuit disjunction, dropping FALSE operands."""
    out: Pred | None = None
    for p in preds:
        if p == FALSE:
            continue
        out = p if out is None else Or(out, p)
    return FALSE if out is None else out


def negate(p: Pred) -> Pred:
    if isinstance(p, Truth):
        return Truth(not p.value)
    return Not(p)
