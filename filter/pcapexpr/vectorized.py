"""The batch evaluator: one decision graph over a whole batch of frames with numpy.

Frames stay in the data region. Loads at fixed offsets read columns of one gathered window
(the first bytes of every frame, `data[offsets[:, None] + arange(width)]`); loads at per-frame
offsets (after the IPv4 header length, say) are gathers `data[offsets + addr]`. Every load
carries a bounds mask. Verdicts are computed bottom-up over the decision graph (a node's
verdict is its successors' chosen by its relation, and reject where its loads fail), so a
load past the end of a frame rejects that frame only on the path libpcap's program takes. The graph is compiled once into numbered value slots
and node tuples; a batch only runs numpy operations, with no per-frame Python loop.
"""

import numpy as np

from filter.pcapexpr.decision import Test, topological
from filter.pcapexpr.syntax import Binary, Compare, Const, Length, Load, Negate, Value

MASK = np.uint64(0xFFFFFFFF)
WINDOW_LIMIT = 128
_COMPARE = {"=": np.equal, "!=": np.not_equal, ">": np.greater, ">=": np.greater_equal,
            "<": np.less, "<=": np.less_equal}
_ARITH = {"+": np.add, "-": np.subtract, "*": np.multiply, "&": np.bitwise_and,
          "|": np.bitwise_or, "^": np.bitwise_xor}


class _Plan:
    """Values numbered into slots, each defined by a tuple over earlier slots."""

    def __init__(self) -> None:
        self.slots: dict[Value, int] = {}
        self.defs: list[tuple] = []
        self.width = 0

    def slot(self, v: Value) -> int:
        found = self.slots.get(v)
        if found is not None:
            return found
        if isinstance(v, Const):
            d: tuple = ("const", np.uint64(v.k))
        elif isinstance(v, Length):
            d = ("len",)
        elif isinstance(v, Load):
            if isinstance(v.addr, Const) and v.addr.k + v.size <= WINDOW_LIMIT:
                d = ("column", v.addr.k, v.size)
                self.width = max(self.width, v.addr.k + v.size)
            else:
                d = ("gather", self.slot(v.addr), v.size)
        elif isinstance(v, Negate):
            d = ("neg", self.slot(v.operand))
        else:
            assert isinstance(v, Binary)
            d = ("bin", v.op, self.slot(v.left), self.slot(v.right))
        self.defs.append(d)
        self.slots[v] = len(self.defs) - 1
        return self.slots[v]


class _Batch:
    """One batch's evaluated slots: (values, rejected-or-None) each."""

    def __init__(self, plan: _Plan, data: np.ndarray, offsets: np.ndarray,
                 lengths: np.ndarray) -> None:
        self.defs = plan.defs
        self.data = data
        self.offsets = offsets.astype(np.int64, copy=False)
        self.lengths = lengths.astype(np.uint64, copy=False)
        self.n = len(offsets)
        self.values: list[tuple | None] = [None] * len(plan.defs)
        self.width = plan.width
        self.shortest = int(self.lengths.min()) if self.n else 0
        self._window: np.ndarray | None = None

    def window(self) -> np.ndarray:
        if self._window is None:
            data, width = self.data, self.width
            if len(data) >= width and int(self.offsets.max()) + width <= len(data):
                # one row gather from a strided view: rows are copied, not indexed bytewise
                rows = np.lib.stride_tricks.sliding_window_view(data, width)
                self._window = rows[self.offsets]
            else:
                idx = self.offsets[:, None] + np.arange(width, dtype=np.int64)
                np.minimum(idx, len(data) - 1, out=idx)
                self._window = data[idx]
        return self._window

    def get(self, slot: int) -> tuple:
        hit = self.values[slot]
        if hit is None:
            hit = self.values[slot] = self._compute(self.defs[slot])
        return hit

    def _compute(self, d: tuple) -> tuple:
        kind = d[0]
        if kind == "const":
            return d[1], None
        if kind == "len":
            return self.lengths, None
        if kind == "column":
            _, k, size = d
            if len(self.data) == 0:
                return np.zeros(self.n, np.uint64), np.ones(self.n, bool)
            cols = self.window()[:, k:k + size]
            if size > 1:
                cols = cols.view(">u2" if size == 2 else ">u4")
            values = cols.reshape(self.n).astype(np.uint64)
            if k + size <= self.shortest:
                return values, None
            return values, self.lengths < np.uint64(k + size)
        if kind == "gather":
            return self._gather(d[1], d[2])
        if kind == "neg":
            a, bad = self.get(d[1])
            return (np.uint64(0) - a) & MASK, bad
        _, op, left, right = d
        a, bad_a = self.get(left)
        b, bad_b = self.get(right)
        bad = _union(bad_a, bad_b)
        if op in _ARITH:
            r = _ARITH[op](a, b)
        elif op in ("/", "%"):
            zero = b == 0
            if np.any(zero):
                bad = _union(bad, np.broadcast_to(zero, (self.n,)))
            safe = np.where(zero, np.uint64(1), b)
            r = a // safe if op == "/" else a % safe
        else:
            shift = np.minimum(b, np.uint64(31))
            moved = a << shift if op == "<<" else a >> shift
            r = np.where(b < 32, moved, np.uint64(0))
        return r & MASK, bad

    def _gather(self, addr_slot: int, size: int) -> tuple:
        addr, bad = self.get(addr_slot)
        if np.ndim(addr) == 0:
            addr = np.full(self.n, addr, dtype=np.uint64)
        ok = addr + np.uint64(size) <= self.lengths
        last = len(self.data) - size
        if last < 0:
            return np.zeros(self.n, dtype=np.uint64), np.ones(self.n, dtype=bool)
        where = self.offsets + np.where(ok, addr, np.uint64(0)).astype(np.int64)
        np.minimum(where, last, out=where)
        out = self.data[where].astype(np.uint64)
        for k in range(1, size):
            out = (out << np.uint64(8)) | self.data[where + k]
        return out, (bad if ok.all() else _union(bad, ~ok))

    def relation(self, compare, left: int, right: int) -> tuple:
        a, bad_a = self.get(left)
        b, bad_b = self.get(right)
        holds = compare(a, b)
        if holds.ndim == 0:
            holds = np.full(self.n, bool(holds))
        return holds, _union(bad_a, bad_b)


def _union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a | b


class BatchEvaluator:
    """Evaluates one decision graph on batches of frames held in a data region."""

    def __init__(self, graph, prologue: Compare | None = None) -> None:
        self._constant = None if isinstance(graph, Test) else bool(graph)
        self._plan = _Plan()
        order = topological(graph)
        index = {id(node): i for i, node in enumerate(order)}

        def target(t):
            return index[id(t)] if isinstance(t, Test) else bool(t)

        def relation(c: Compare) -> tuple:
            return _COMPARE[c.op], self._plan.slot(c.left), self._plan.slot(c.right)

        self._nodes = [relation(node.relation) + (target(node.yes), target(node.no))
                       for node in order]
        self._prologue = relation(prologue) if prologue is not None else None

    def run(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """A bool per frame: data is the region (uint8), offsets/lengths the descriptors."""
        offsets = np.asarray(offsets)
        n = len(offsets)
        if self._constant is not None:
            return np.full(n, self._constant)
        if n == 0:
            return np.zeros(0, dtype=bool)
        data = np.asarray(data)
        if data.dtype != np.uint8:
            data = data.view(np.uint8)
        with np.errstate(all="ignore"):
            return self._run(_Batch(self._plan, data.reshape(-1), offsets, np.asarray(lengths)))

    def _run(self, batch: _Batch) -> np.ndarray:
        # Bottom-up: a node's verdict for a frame is its successor's verdict chosen by the
        # relation, and reject where the relation's loads fail; only the nodes on a frame's
        # own path decide its verdict, so nodes it never reaches cannot reject it.
        verdicts: list = [None] * len(self._nodes)
        for i in range(len(self._nodes) - 1, -1, -1):
            compare, left, right, yes, no = self._nodes[i]
            holds, bad = batch.relation(compare, left, right)
            on_yes = yes if isinstance(yes, bool) else verdicts[yes]
            on_no = no if isinstance(no, bool) else verdicts[no]
            if on_yes is True and on_no is False:
                verdict = holds
            elif on_yes is False and on_no is True:
                verdict = ~holds
            else:
                verdict = np.where(holds, on_yes, on_no)
            if bad is not None:
                verdict = verdict & ~bad
            verdicts[i] = verdict
        accepted = verdicts[0]
        if self._prologue is not None:
            _, bad = batch.relation(*self._prologue)
            if bad is not None:
                accepted = accepted & ~bad
        return accepted
