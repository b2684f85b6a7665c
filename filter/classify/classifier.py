"""The compiled classifier: a whole batch classified in place with numpy.

``Classifier(ruleset).classify(data, offsets, lengths, iif, now)`` reads the batch's fields
in place (``fields.extract``), ANDs each field's rows of entry bits (``tables``), and resolves
each packet's first match. Entries that need nothing per frame (a verdict with at most a
``counter``, a skip, a stateless jump) are resolved for all packets at once; the others (ct
state, limit, meta mark, log, mark set, NAT) are handled per frame, only for the packets that
land on them. The result is the reference evaluator's (``filter.reference``), batch-wide.

When every entry is a plain verdict (an ACL), a packet's first candidate decides it: packets
of flows seen before are answered by the flow memo (``flowmemo``) without reading their fields,
the others through the tables (whose row tuples are memoised too, ``cache``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from filter.classify import fast
from filter.classify.cache import FirstHits
from filter.classify.fields import extract
from filter.classify.flatten import FINAL, flatten
from filter.classify.flowmemo import FlowMemo
from filter.classify.state import Limits
from filter.classify.tables import Dimension, first_set, words_for
from filter.reference import limit_id
from filter.rules import ast
from filter.rules.fields import FIELDS
from filter.rules.pcap import compile_expression
from filter.rules.values import complement, contains

VERDICTS = ("accept", "drop", "reject")
CODE = {v: i for i, v in enumerate(VERDICTS)}
PURE_FINAL, PURE_SKIP, PURE_ENTER, SLOW = 0, 1, 2, 3
CHUNK = 2048                  # frames classified at once (larger batches go by chunks)


@dataclass
class Result:
    """Per packet: ``verdict`` (index into ``VERDICTS``), deciding rule ``line`` (0: policy),
    ``mark``, ``reject_with``; per batch: ``counters`` (line -> [packets, bytes]), ``logs``
    ((packet, line, prefix)), ``nat`` ((packet, line, Nat))."""

    verdict: np.ndarray
    line: np.ndarray
    mark: np.ndarray
    reject_with: dict = field(default_factory=dict)
    counted: list = field(default_factory=list)     # (packets, lines, bytes) arrays
    logs: list = field(default_factory=list)
    nat: list = field(default_factory=list)

    def count(self, packets, lines, sizes) -> None:
        self.counted.append((np.asarray(packets), np.asarray(lines), np.asarray(sizes)))

    @property
    def counters(self) -> dict:
        out: dict = {}
        for _, lines, sizes in self.counted:
            for line, size in zip(lines.tolist(), sizes.tolist(), strict=True):
                c = out.setdefault(int(line), [0, 0])
                c[0] += 1
                c[1] += int(size)
        return out

    def head(self, k: int) -> Result:
        """The results of the first ``k`` packets only."""
        return Result(self.verdict[:k], self.line[:k], self.mark[:k],
                      {p: w for p, w in self.reject_with.items() if p < k},
                      [(p[p < k], ln[p < k], b[p < k]) for p, ln, b in self.counted],
                      [x for x in self.logs if x[0] < k], [x for x in self.nat if x[0] < k])


class Classifier:
    def __init__(self, ruleset: ast.Ruleset, linktype: int = 1, limits: Limits | None = None,
                 ct_state=None) -> None:
        self.ruleset, self.linktype = ruleset, linktype
        self.limits = limits if limits is not None else Limits()
        self.ct_state = ct_state
        flat = flatten(ruleset)
        self.entries, self.iif_names = flat.entries, flat.iif_names
        self.pcap = [compile_expression(e, linktype) for e in flat.pcap]
        self.words = words_for(len(self.entries))
        names = sorted({n for e in self.entries for n in e.conds})
        self.dims = [Dimension(n, self.entries, self.words) for n in names]
        every = np.zeros(self.words * 64, dtype=bool)
        every[:len(self.entries)] = True
        self.every_entry = np.packbits(every, bitorder="little").view("<u8")
        self.policy = CODE[ruleset.policy]
        self.wanted = frozenset(names) | {k for e in self.entries if e.rule
                                          for m in e.rule.stateful if isinstance(m, ast.Limit)
                                          for k in m.key} \
            | {k for e in self.entries if e.rule for st in e.rule.statements
               if isinstance(st, ast.Nat) for k in st.key}
        self.ordered = any(isinstance(m, ast.Limit) for e in self.entries if e.rule
                           for m in e.rule.stateful)
        self._entry_arrays()
        self.plain = bool((self.kind == PURE_FINAL).all())
        self.any_counted = bool(self.counted.any())
        self.memo = FirstHits([len(dim.bounds) + 1 for dim in self.dims])
        self.flows = FlowMemo(names) if self.plain and linktype == 1 and names \
            and FlowMemo.usable(names) else None

    def _entry_arrays(self) -> None:
        n = len(self.entries)
        self.kind = np.full(n, SLOW, dtype=np.int8)
        self.target = np.zeros(n, dtype=np.int64)
        self.code = np.zeros(n, dtype=np.int8)
        self.line = np.zeros(n, dtype=np.int32)
        self.counted = np.zeros(n, dtype=bool)
        for i, e in enumerate(self.entries):
            if e.rule is None:
                self.kind[i], self.target[i] = PURE_SKIP, e.skip_to
                continue
            self.line[i] = e.rule.line
            v = e.verdict
            plain = not e.rule.stateful
            only_counters = all(isinstance(s, ast.Counter) for s in e.rule.statements)
            if plain and only_counters and v is not None and v.kind in FINAL \
                    and not v.reject_with:
                self.kind[i], self.code[i] = PURE_FINAL, CODE[v.kind]
                self.counted[i] = bool(e.rule.statements)
            elif plain and not e.rule.statements and v is not None \
                    and v.kind in ("jump", "goto"):
                self.kind[i], self.target[i] = PURE_ENTER, i + 1

    def field_values(self, data, offsets, lengths, iif: str) -> dict[str, np.ndarray]:
        values = extract(data, offsets, lengths, self.linktype, self.wanted)
        index = self.iif_names.index(iif) if iif in self.iif_names else len(self.iif_names)
        values["iif"] = np.full(len(offsets), index, dtype=np.int64)
        for k, prog in enumerate(self.pcap):
            values[f"pcap:{k}"] = prog.match_batch(data, offsets, lengths).astype(np.int64)
        return values

    def classify(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                 iif: str = "", now: int = 0, ct_states=None) -> Result:
        """Classify a batch; ``ct_states`` (a state name per frame) answers ``ct state``
        matches when given, else the ``ct_state(frame, now)`` callable, else they fail."""
        n = len(offsets)
        res = Result(np.full(n, self.policy, dtype=np.int8), np.zeros(n, dtype=np.int32),
                     np.zeros(n, dtype=np.int64))
        if n == 0:
            return res
        if self.plain:                       # every entry a verdict: one round decides all
            self._decide(res, self._first_hits(data, offsets, lengths, iif), lengths)
            return res
        values = self.field_values(data, offsets, lengths, iif)
        index = [dim.row_index(values[dim.name]) for dim in self.dims]
        bits = _Bits(list(zip(self.dims, index, strict=True)), self.every_entry, n)
        first_hit = self.memo.first_hits(index, bits.first_hits) if self.memo.usable \
            else bits.first_hits()
        active = np.arange(n)
        start = np.zeros(n, dtype=np.int64)
        first = True
        while len(active):
            hit = first_hit if first else first_set(bits.of(active), start)
            first = False
            done = hit < 0                       # fell off the end: the policy stays
            active, start, hit = active[~done], start[~done], hit[~done]
            kind = self.kind[hit]
            final = kind == PURE_FINAL
            if final.any():
                who, e = active[final], hit[final]
                res.verdict[who], res.line[who] = self.code[e], self.line[e]
                counted = self.counted[e]
                if counted.any():
                    res.count(who[counted], self.line[e[counted]], lengths[who[counted]])
            moving = (kind == PURE_SKIP) | (kind == PURE_ENTER)
            start_next = np.where(moving, self.target[hit], -1)
            slow = np.flatnonzero(kind == SLOW)
            if len(slow) and self.ordered:
                # token buckets must see packets in arrival order: finish the rest one by one
                for k in np.flatnonzero(~final).tolist():
                    nxt = int(start_next[k]) if moving[k] else \
                        self._slow(int(active[k]), int(hit[k]), res, values, data, offsets,
                                   lengths, now, ct_states)
                    self._sequential(int(active[k]), nxt, bits, res, values, data, offsets,
                                     lengths, now, ct_states)
                break
            for k in slow:
                start_next[k] = self._slow(int(active[k]), int(hit[k]), res, values, data,
                                           offsets, lengths, now, ct_states)
            going = start_next >= 0
            active, start = active[going], start_next[going]
        return res

    def _first_hits(self, data, offsets, lengths, iif: str) -> np.ndarray:
        """Each frame's first candidate entry (-1: none): from the flow memo when it has the
        frame's header bytes, else through the tables (and the row-number memo)."""
        if len(offsets) > CHUNK:           # the working set of a chunk stays in cache
            return np.concatenate([self._first_hits(data, offsets[k:k + CHUNK],
                                                    lengths[k:k + CHUNK], iif)
                                   for k in range(0, len(offsets), CHUNK)])
        head = fast.gather_heads(data, offsets, self.flows.head_size) \
            if self.flows is not None else None
        if head is not None:
            queue = self.iif_names.index(iif) if iif in self.iif_names else len(self.iif_names)
            return self.flows.first_hits(
                head, lengths, queue,
                lambda rows: self._table_hits(data, offsets[rows], lengths[rows], iif))
        return self._table_hits(data, offsets, lengths, iif)

    def _table_hits(self, data, offsets, lengths, iif: str) -> np.ndarray:
        values = self.field_values(data, offsets, lengths, iif)
        index = [dim.row_index(values[dim.name]) for dim in self.dims]
        bits = _Bits(list(zip(self.dims, index, strict=True)), self.every_entry, len(offsets))
        return self.memo.first_hits(index, bits.first_hits) if self.memo.usable \
            else bits.first_hits()

    def _decide(self, res: Result, hit: np.ndarray, lengths: np.ndarray) -> None:
        """Verdicts when every entry is ``PURE_FINAL``: the first candidate decides."""
        matched = hit >= 0
        if matched.all():
            res.verdict[:], res.line[:] = self.code[hit], self.line[hit]
        elif matched.any():
            who, e = np.flatnonzero(matched), hit[matched]
            res.verdict[who], res.line[who] = self.code[e], self.line[e]
        else:
            return
        if self.any_counted:
            who = np.flatnonzero(matched)
            e = hit[who]
            counted = self.counted[e]
            if counted.any():
                res.count(who[counted], self.line[e[counted]], lengths[who[counted]])

    def _sequential(self, p: int, start: int, bits, res, values, data, offsets, lengths, now,
                    ct_states) -> None:
        """Resolve packet ``p`` from entry ``start`` on, alone."""
        row = bits.of(np.array([p]))
        while start >= 0:
            hit = int(first_set(row, np.array([start]))[0])
            if hit < 0:
                return
            kind = self.kind[hit]
            if kind == PURE_FINAL:
                res.verdict[p], res.line[p] = self.code[hit], self.line[hit]
                if self.counted[hit]:
                    res.count([p], [self.line[hit]], [lengths[p]])
                return
            if kind in (PURE_SKIP, PURE_ENTER):
                start = int(self.target[hit])
                continue
            start = self._slow(p, hit, res, values, data, offsets, lengths, now, ct_states)

    def _slow(self, p: int, i: int, res: Result, values, data, offsets, lengths, now,
              ct_states) -> int:
        """One packet on entry ``i`` that needs per-frame work; the next start (-1: decided)."""
        e = self.entries[i]
        rule = e.rule
        for m in rule.stateful:
            if not self._holds(m, rule, p, res, values, data, offsets, lengths, now, ct_states):
                return e.fail_to
        length = int(lengths[p])
        for st in rule.statements:
            if isinstance(st, ast.Counter):
                res.count([p], [rule.line], [length])
            elif isinstance(st, ast.Log):
                res.logs.append((p, rule.line, st.prefix))
            elif isinstance(st, ast.MarkSet):
                res.mark[p] = st.value
            elif isinstance(st, ast.Nat):
                key = tuple(self._value(values, name, p) for name in st.key)
                res.nat.append((p, rule.line, st.resolve(key)))
        v = e.verdict
        if v is None or v.kind == "continue":
            return e.fail_to
        if v.kind in FINAL:
            res.verdict[p], res.line[p] = CODE[v.kind], rule.line
            if v.kind == "reject":
                res.reject_with[p] = v.reject_with
            return -1
        if v.kind == "return":
            return e.skip_to
        return i + 1                             # jump/goto: into the inlined chain

    def _holds(self, m, rule, p, res, values, data, offsets, lengths, now, ct_states) -> bool:
        if isinstance(m, ast.Match):            # meta mark: the mark set so far
            elements = m.elements if m.setref is None else self.ruleset.sets[m.setref].elements
            union = tuple(iv for el in elements for iv in el[0])
            if m.negate:
                union = complement(union, FIELDS["meta.mark"].top)
            return contains(union, int(res.mark[p]))
        if isinstance(m, ast.CtMatch):
            if ct_states is not None:
                state = ct_states[p]
            elif self.ct_state is not None:
                state = self.ct_state(self._frame(data, offsets, lengths, p), now)
            else:
                return False
            return (state in m.states) != m.negate
        if isinstance(m, ast.Limit):
            key = tuple(self._value(values, name, p) for name in m.key)
            return self.limits.check(limit_id(rule, m), m, key, int(lengths[p]), now)
        raise TypeError(f"unknown stateful match {m!r}")

    @staticmethod
    def _frame(data, offsets, lengths, p: int) -> bytes:
        return bytes(data[int(offsets[p]):int(offsets[p]) + int(lengths[p])])

    def _value(self, values, name: str, p: int):
        """One packet's field as the reference parser has it (None when absent)."""
        if name == "iif":
            k = int(values["iif"][p])
            return self.iif_names[k] if k < len(self.iif_names) else None
        if name == "meta.mark":
            return None
        v = values[name][p]
        if isinstance(v, bytes):
            return int.from_bytes(v.ljust(17, b"\0"), "big") - (1 << 128) if v else None
        return None if v < 0 else int(v)


class _Bits:
    """A batch's candidate entries: per packet, the AND of its rows in every field's table.
    The first round searches blocks of words in order (each twice the last) and stops for each
    packet at its first non-empty block (most packets match early rules); later rounds build
    full rows, only for the packets that go on."""

    BLOCK = 4                     # words (256 entries) per step of the first search

    def __init__(self, rows, every: np.ndarray, n: int) -> None:
        self.rows, self.every, self.n = rows, every, n

    def of(self, packets: np.ndarray, w0: int = 0, w1: int | None = None) -> np.ndarray:
        out = None
        for dim, index in self.rows:
            part = dim.rows[index[packets], w0:w1]
            out = part if out is None else np.bitwise_and(out, part, out=out)
        if out is None:
            out = np.repeat(self.every[None, w0:w1], len(packets), axis=0)
        return out

    def first_hits(self, packets: np.ndarray | None = None) -> np.ndarray:
        """The first candidate entry (-1: none) of each of ``packets`` (default: all)."""
        packets = np.arange(self.n) if packets is None else packets
        width = len(self.every)
        hit = np.full(len(packets), -1, dtype=np.int64)
        remaining = np.arange(len(packets))
        w0, step = 0, self.BLOCK
        while w0 < width and len(remaining):
            w1 = min(width, w0 + step)
            block = self.of(packets[remaining], w0, w1)
            found = first_set(block, np.zeros(len(remaining), dtype=np.int64))
            ok = found >= 0
            hit[remaining[ok]] = found[ok] + w0 * 64
            remaining = remaining[~ok]
            w0, step = w1, step * 2           # blocks double: few steps for the unmatched
        return hit
