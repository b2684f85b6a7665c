"""The reference evaluator: one frame in plain Python, walking the decision graph.

Each relation becomes a small closure over the frame's bytes. A reached load past the
frame's end, or a division by zero, raises `Reject`, which rejects the frame whatever the
rest of the expression says (BPF returns 0).
"""

import operator
from collections.abc import Callable

from filter.pcapexpr.decision import Test, topological
from filter.pcapexpr.syntax import Binary, Compare, Const, Length, Load, Negate, Value

MASK = 0xFFFFFFFF


class Reject(Exception):
    """A reached out-of-bounds load or division by zero."""


def _divide(a: int, b: int) -> int:
    if b == 0:
        raise Reject
    return a // b


def _modulo(a: int, b: int) -> int:
    if b == 0:
        raise Reject
    return a % b


_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _divide, "%": _modulo,
          "&": operator.and_, "|": operator.or_, "^": operator.xor,
          "<<": lambda a, b: a << b if b < 32 else 0, ">>": lambda a, b: a >> b if b < 32 else 0}
_RELATION = {"=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
             "<": operator.lt, "<=": operator.le}


def value_fn(v: Value) -> Callable[[bytes], int]:
    """A function computing v from a frame."""
    if isinstance(v, Const):
        k = v.k
        return lambda frame: k
    if isinstance(v, Length):
        return len
    if isinstance(v, Load):
        size = v.size
        if isinstance(v.addr, Const):
            start, end = v.addr.k, v.addr.k + size

            def load_fixed(frame: bytes) -> int:
                if end > len(frame):
                    raise Reject
                return int.from_bytes(frame[start:end], "big")
            return load_fixed
        addr = value_fn(v.addr)

        def load(frame: bytes) -> int:
            at = addr(frame)
            if at + size > len(frame):
                raise Reject
            return int.from_bytes(frame[at:at + size], "big")
        return load
    if isinstance(v, Negate):
        inner = value_fn(v.operand)
        return lambda frame: -inner(frame) & MASK
    assert isinstance(v, Binary)
    left, right, op = value_fn(v.left), value_fn(v.right), _ARITH[v.op]
    return lambda frame: op(left(frame), right(frame)) & MASK


def relation_fn(c: Compare) -> Callable[[bytes], bool]:
    """A function testing one relation on a frame."""
    left, right, rel = value_fn(c.left), value_fn(c.right), _RELATION[c.op]
    return lambda frame: rel(left(frame), right(frame))


class ReferenceEvaluator:
    """Walks the decision graph for one frame at a time."""

    def __init__(self, graph, prologue: Compare | None = None) -> None:
        self._root = graph
        self._tests = {id(node): relation_fn(node.relation) for node in topological(graph)}
        self._prologue = relation_fn(prologue) if prologue is not None else None

    def __call__(self, frame: bytes | bytearray | memoryview) -> bool:
        data = bytes(frame)
        node = self._root
        tests = self._tests
        try:
            if self._prologue is not None:
                self._prologue(data)
            while isinstance(node, Test):
                node = node.yes if tests[id(node)](data) else node.no
        except Reject:
            return False
        return bool(node)
