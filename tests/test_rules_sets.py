"""Named sets and verdict maps: elements with prefixes, ranges and concatenated keys; changes
at run time (add/delete) seen by both evaluators; bad elements refused with their place."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from filter.classify import VERDICTS, compile_ruleset
from filter.reference import Reference
from filter.rules import RuleError, add_elements, delete_elements, parse

RULES = """\
set blocked { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.0.2.1-192.0.2.9 } }
set svc { type ipv4_addr . inet_service; elements = { 203.0.113.5 . 22, 203.0.113.0/24 . 80-90 } }
map ports { type inet_service : verdict; elements = { 53 : accept, 25 : jump mail } }
chain input {
  policy accept
  ip saddr @blocked drop
  ip daddr . tcp dport @svc accept
  ip daddr . tcp dport != @svc tcp dport 1-1023 reject
  udp dport vmap @ports
  udp dport 53 drop
}
chain mail { ip saddr 198.51.100.0/24 drop }
"""


def frame(src: str, dst: str, proto: int, dport: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, proto, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return b"\x02" * 12 + b"\x08\x00" + ip + struct.pack("!HHHH", 40000, dport, 8, 0) + \
        b"\x00" * 12


CASES = [  # (frame, verdict, line)
    (frame("10.1.2.3", "203.0.113.5", 6, 22), "drop", 6),
    (frame("192.0.2.5", "203.0.113.5", 6, 22), "drop", 6),
    (frame("192.0.2.10", "203.0.113.5", 6, 22), "accept", 7),
    (frame("192.0.2.10", "203.0.113.7", 6, 85), "accept", 7),
    (frame("192.0.2.10", "203.0.113.7", 6, 22), "reject", 8),
    (frame("192.0.2.10", "203.0.113.7", 6, 2000), "accept", 0),
    (frame("192.0.2.10", "203.0.113.7", 17, 53), "accept", 9),
    (frame("198.51.100.7", "203.0.113.7", 17, 25), "drop", 12),
    (frame("192.0.2.10", "203.0.113.7", 17, 25), "accept", 0),
]


def _classify(ruleset, frames):
    data = np.frombuffer(b"".join(f.ljust(128, b"\0") for f in frames), dtype=np.uint8)
    offsets = np.arange(len(frames), dtype=np.int64) * 128
    res = compile_ruleset(ruleset).classify(data, offsets, np.array([len(f) for f in frames]))
    return [(VERDICTS[v], int(n)) for v, n in zip(res.verdict, res.line, strict=True)]


def test_sets_maps_and_concatenations():
    rs = parse(RULES, "sets.rules")
    frames = [c[0] for c in CASES]
    want = [(c[1], c[2]) for c in CASES]
    assert _classify(rs, frames) == want
    ref = Reference(rs)
    assert [(d.verdict, d.line) for d in map(ref.decide, frames)] == want


def test_elements_change_at_run_time():
    rs = parse(RULES, "sets.rules")
    probe = [frame("192.0.2.10", "203.0.113.7", 6, 2000), frame("192.0.2.10", "203.0.113.7",
                                                                17, 25)]
    assert _classify(rs, probe) == [("accept", 0), ("accept", 0)]
    assert add_elements(rs, "svc", "203.0.113.7 . 2000-2100") == 1
    assert add_elements(rs, "blocked", "192.0.2.10, 10.0.0.0/8") == 1      # one already there
    assert _classify(rs, probe) == [("drop", 6), ("drop", 6)]
    assert delete_elements(rs, "blocked", "192.0.2.10") == 1
    assert add_elements(rs, "ports", "25 : drop") == 1                     # verdict replaced
    assert add_elements(rs, "ports", "25 : drop") == 0                     # the same again
    assert _classify(rs, probe) == [("accept", 7), ("drop", 9)]
    ref = Reference(rs)
    assert [(ref.decide(f).verdict, ref.decide(f).line) for f in probe] == \
        [("accept", 7), ("drop", 9)]


@pytest.mark.parametrize("name,text,words,col", [
    ("blocked", "10.0.0.1/8", "host bits", 1),
    ("blocked", "10.0.0.1, banana", "not an IPv4 address", 11),
    ("svc", "203.0.113.5", "this key has 2 parts", 12),
    ("ports", "22", "expected ':'", 3),
    ("nosuch", "1", "no set or map named 'nosuch'", 0),
])
def test_bad_elements_are_refused_and_change_nothing(name, text, words, col):
    rs = parse(RULES, "sets.rules")
    before = {n: list(s.elements) for n, s in rs.sets.items()}
    with pytest.raises(RuleError) as info:
        add_elements(rs, name, text)
    assert words in str(info.value)
    if col:
        assert info.value.col == col, str(info.value)
    assert {n: list(s.elements) for n, s in rs.sets.items()} == before
