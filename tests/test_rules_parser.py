"""The rule language's parser: good files parse to what they say; every kind of error names
FILE:LINE:COL and puts a caret under the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from filter.rules import RuleError, parse
from filter.rules.values import TCP_FLAGS

ROOT = Path(__file__).resolve().parent.parent


def test_example_rule_files_parse():
    for path in sorted((ROOT / "examples" / "rules").glob("*.rules")):
        rs = parse(path.read_text(), str(path))
        assert rs.chains[rs.base].policy in ("accept", "drop"), path


def test_rules_read_as_written():
    rs = parse("""
set trusted { type ipv4_addr; elements = { 10.0.0.0/8, 192.0.2.1 } }
chain input {
  type filter hook input priority 0; policy drop
  ip saddr @trusted tcp dport { 22, 8000-8080 } counter accept  # comment
  ip6 daddr 2001:db8::/32 udp sport != 53 drop
  tcp flags & (syn|ack) == syn mark set 0x10 jump extra
  ct state established,related accept
}
chain extra { ip ttl < 5 drop; return }
""", "t.rules")
    assert rs.base == "input" and rs.policy == "drop"
    r1, r2, r3, r4 = rs.chains["input"].rules
    assert r1.line == 5 and r1.verdict.kind == "accept"
    fields = [m.fields for m in r1.matches]
    assert ("ip.saddr",) in fields and ("th.dport",) in fields and ("meta.l4proto",) in fields
    dport = next(m for m in r1.matches if m.fields == ("th.dport",))
    assert dport.elements[0][0] == ((22, 22), (8000, 8080))
    assert rs.sets["trusted"].elements[0][0] == ((0x0A000000, 0x0AFFFFFF),)
    sport = next(m for m in r2.matches if m.fields == ("th.sport",))
    assert sport.negate and sport.elements[0][0] == ((53, 53),)
    flags = next(m for m in r3.matches if m.fields == ("tcp.flags",))
    allowed = {v for lo, hi in flags.elements[0][0] for v in range(lo, hi + 1)}
    mask = TCP_FLAGS["syn"] | TCP_FLAGS["ack"]
    assert allowed == {v for v in range(256) if v & mask == TCP_FLAGS["syn"]}
    assert r3.statements[0].value == 0x10 and r3.verdict.target == "extra"
    assert r4.stateful[0].states == {"established", "related"}
    ttl = rs.chains["extra"].rules[0].matches[0]
    assert ttl.elements[0][0] == ((0, 4),)


def test_bare_tcp_flags_match_any_listed_flag():
    rs = parse("chain c { policy accept\n tcp flags syn|fin drop\n}")
    flags = rs.chains["c"].rules[0].matches[1]
    allowed = {v for lo, hi in flags.elements[0][0] for v in range(lo, hi + 1)}
    assert allowed == {v for v in range(256) if v & 0x03}


ERRORS = [
    # (rule text, line, column, words in the message)
    ("chain c {\n policy drop\n tcp dport 70000 accept\n}", 3, 12, "out of range"),
    ("chain c {\n policy drop\n ip saddr 10.0.0.1/8 accept\n}", 3, 11, "host bits"),
    ("chain c {\n policy drop\n ip saddr 10.0.0.256 accept\n}", 3, 11, "not an IPv4"),
    ("chain c {\n policy drop\n ip6 saddr 10.0.0.1 accept\n}", 3, 12, "not an IPv6"),
    ("chain c {\n policy drop\n tcp dport 90-80 accept\n}", 3, 12, "empty"),
    ("chain c {\n policy drop\n frobnicate accept\n}", 3, 2, "unknown word 'frobnicate'"),
    ("chain c {\n policy drop\n tcp port 22 accept\n}", 3, 2, "unknown field 'tcp port'"),
    ("chain c {\n policy drop\n ip saddr @nope accept\n}", 3, 12, "no set named 'nope'"),
    ("chain c {\n policy drop\n jump nowhere\n}", 3, 7, "no chain named 'nowhere'"),
    ("chain c {\n policy drop\n jump a\n}\nchain a { jump b }\nchain b { jump a }", 6, 16,
     "jump loop"),
    ("chain c {\n tcp dport 22 accept\n}", 1, 1, "no base chain"),
    ("chain c { policy drop }\nchain d {\n policy accept\n}", 3, 2, "only one base chain"),
    ("chain c { policy drop }\nchain c { policy drop }", 2, 7, "already defined"),
    ("chain c {\n policy maybe\n}", 2, 9, "'accept' or 'drop'"),
    ("chain c {\n policy drop\n accept drop\n}", 3, 9, "nothing may follow"),
    ('chain c {\n policy drop\n log prefix "oops\n}', 3, 13, "unterminated string"),
    ("chain c {\n policy drop\n tcp dport 22 $ accept\n}", 3, 15, "unexpected character"),
    ("chain c {\n policy drop\n ct state sleepy accept\n}", 3, 11, "unknown connection state"),
    ("set s { type ipv4_addr . inet_service; elements = { 10.0.0.1 } }\n"
     "chain c { policy drop }", 1, 62, "this key has 2 parts"),
    ("set s { type ether_addr }\nchain c { policy drop }", 1, 14, "unknown set type"),
    ("set s { type inet_service }\nchain c {\n policy drop\n ip saddr @s accept\n}", 4, 12,
     "holds port keys"),
    ("chain c {\n policy drop\n limit rate 10/fortnight accept\n}", 3, 13, "rate unit"),
    ("chain c {\n policy drop\n reject with tcp hug\n}", 3, 14, "unknown reject type"),
    ("chain c {\n policy drop\n snat to 10.0.0.300\n}", 3, 10, "not an IPv4"),
    ('chain c {\n policy drop\n pcap "tcp and and udp" accept\n}', 3, 16, "pcap expression"),
    ("chain c {\n policy drop\n", 2, 13, "not closed"),
]


@pytest.mark.parametrize("text,line,col,words", ERRORS)
def test_every_error_is_located_with_a_caret(text, line, col, words):
    with pytest.raises(RuleError) as info:
        parse(text, "bad.rules")
    err = info.value
    shown = str(err)
    assert words in err.message, shown
    assert (err.line, err.col) == (line, col), shown
    head, quoted, caret = shown.split("\n")[:3] if err.source else (shown, "", "")
    assert head.startswith(f"bad.rules:{line}:{col}: error: ")
    if err.source:
        assert quoted == text.splitlines()[line - 1]
        assert caret.index("^") == col - 1


def test_no_byte_sequence_crashes_the_parser():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.sampled_from(list("chain{}policydrop accept;\n@.-/:0123456789"
                                                  "tcpudpipsaddrportflags|&!=<>\"#")),
                   max_size=80))
    def run(text):
        try:
            parse(text, "fuzz.rules")
        except RuleError as exc:
            assert str(exc).startswith("fuzz.rules:")
    run()
