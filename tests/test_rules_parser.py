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

    pieces = list("chain{}policydrop accept;\n@.-/:0123456789tcpudpipsaddrportflags|&!=<>\"#[]")
    pieces += [" snat to ", " dnat ip6 to ", " map ", " vlan id ", "2001:db8::1", " : "]

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(pieces), max_size=80).map("".join))
    def run(text):
        try:
            parse(text, "fuzz.rules")
        except RuleError as exc:
            assert str(exc).startswith("fuzz.rules:")
    run()


def _nat_rule(text: str):
    rs = parse(f"chain c {{\n policy drop\n {text} accept\n}}", "nat.rules")
    rule = rs.chains["c"].rules[0]
    family = next(m for m in rule.matches if m.fields == ("meta.nfproto",))
    return rule.statements[0], family.elements[0][0]


def test_nat_targets_of_both_families():
    import ipaddress

    def ip(text):
        return int(ipaddress.ip_address(text))
    nat, fam = _nat_rule("snat to [2001:db8::1]:1024-2000")
    assert (nat.kind, nat.family, nat.address, nat.last, nat.ports) == \
        ("snat", 6, ip("2001:db8::1"), None, (1024, 2000)) and fam == ((10, 10),)
    nat, fam = _nat_rule("dnat ip6 to 2001:db8::80")          # no brackets: no port
    assert (nat.family, nat.address, nat.ports) == (6, ip("2001:db8::80"), None)
    nat, fam = _nat_rule("dnat to [2001:db8::1-2001:db8::8]:80")
    assert (nat.address, nat.last, nat.ports) == (ip("2001:db8::1"), ip("2001:db8::8"), (80, 80))
    nat, fam = _nat_rule("snat ip to 10.0.0.1-10.0.0.9:1000-2000")
    assert (nat.family, nat.address, nat.last, nat.ports) == \
        (4, ip("10.0.0.1"), ip("10.0.0.9"), (1000, 2000)) and fam == ((2, 2),)
    nat, fam = _nat_rule("masquerade ip6 to :2000-3000")
    assert (nat.kind, nat.family, nat.address, nat.ports) == ("masquerade", 6, None, (2000, 3000))
    nat, fam = _nat_rule("masquerade")
    assert (nat.family, fam) == (4, ((2, 2),))


NAT_ERRORS = [
    ("snat ip to 2001:db8::1", 13, "not an IPv4 address"),
    ("dnat ip6 to 10.0.0.1:80", 14, "not an IPv6 address"),
    ("snat to [10.0.0.1]:80", 11, "brackets hold an IPv6"),
    ("snat to 10.0.0.1-2001:db8::1", 10, "[ADDRESS]:PORT"),
    ("dnat to 10.0.0.9-10.0.0.1", 10, "start above end"),
    ("dnat to [2001:db8::1]:0", 23, "port 0"),
    ("dnat to [2001:db8::1]:http-x", 23, "not a valid port"),
    ("dnat to [2001:db8::1 accept", 23, "']'"),
    ("snat to :80", 10, "needs an address"),
]


@pytest.mark.parametrize("text,col,words", NAT_ERRORS)
def test_nat_target_errors_are_located(text, col, words):
    with pytest.raises(RuleError) as info:
        parse(f"chain c {{\n policy drop\n {text}\n}}", "bad.rules")
    err = info.value
    assert words in err.message and (err.line, err.col) == (3, col), str(err)


def test_vlan_and_protocol_selectors():
    rs = parse("chain c {\n policy drop\n vlan id { 10, 20-30 } vlan pcp 5 meta protocol ip6"
               " accept\n vlan type arp drop\n}", "v.rules")
    r1, r2 = rs.chains["c"].rules
    got = {m.fields[0]: m.elements[0][0] for m in r1.matches}
    assert got == {"vlan.id": ((10, 10), (20, 30)), "vlan.pcp": ((5, 5),),
                   "meta.protocol": ((0x86DD, 0x86DD),)}
    assert r2.matches[0].fields == ("vlan.type",) and r2.matches[0].elements[0][0] == \
        ((0x0806, 0x0806),)
    for text, col, words in (("vlan id 4096", 10, "out of range"), ("vlan pcp 8", 11, "0-7"),
                             ("vlan tag 3", 2, "unknown field 'vlan tag'")):
        with pytest.raises(RuleError) as info:
            parse(f"chain c {{\n policy drop\n {text} accept\n}}", "v.rules")
        assert words in info.value.message and info.value.col == col, str(info.value)


def test_nat_data_maps_pick_the_target_by_key():
    import ipaddress

    def ip(text):
        return int(ipaddress.ip_address(text))
    rs = parse("chain c {\n policy drop\n dnat to tcp dport map { 80 : 10.0.0.80, 8000-8999 : "
               "10.0.0.81:80 } accept\n snat ip6 to ip6 saddr . udp dport map {\n"
               "   fd00::/64 . 53 : [2001:db8::1]:5300,\n   fd00::5 . 1-65535 : 2001:db8::2\n"
               " } accept\n}", "m.rules")
    r1, r2 = rs.chains["c"].rules
    dnat, snat = r1.statements[0], r2.statements[0]
    assert dnat.key == ("th.dport",) and dnat.family == 4
    assert dnat.resolve((8080,)) == type(dnat)("dnat", ip("10.0.0.81"), (80, 80), 4)
    assert dnat.resolve((80,)).address == ip("10.0.0.80") and dnat.resolve((81,)) is None
    # the rule holds only for keys in the map (and the key's protocol)
    fields = {m.fields: m.elements for m in r1.matches}
    assert fields[("th.dport",)] == ((((80, 80), (8000, 8999)),),)
    assert fields[("meta.l4proto",)] == ((((6, 6),),),)
    assert snat.family == 6 and snat.key == ("ip6.saddr", "th.dport")
    assert snat.resolve((ip("fd00::5"), 53)).ports == (5300, 5300)        # first entry wins
    assert snat.resolve((ip("fd00::5"), 54)) == type(snat)("snat", ip("2001:db8::2"), None, 6)
    assert fields != {m.fields: m.elements for m in r2.matches}
    assert ("ip6.saddr", "th.dport") in {m.fields for m in r2.matches}


MAP_ERRORS = [
    ("dnat to tcp dport { 80 : 10.0.0.1 }", 20, "expected 'map"),
    ("dnat to tcp dport map { 80:10.0.0.1 }", 26, "not a valid port"),
    ("dnat to tcp dport map { }", 26, "expected a port"),
    ("dnat to iif map { lan : 10.0.0.1 }", 10, "cannot key a NAT map"),
    ("dnat ip6 to tcp dport map { 80 : 10.0.0.1 }", 35, "not an IPv6 address"),
    ("dnat to tcp dport map { 80 : 10.0.0.1 81 : 10.0.0.2 }", 40, "expected ',' or '}'"),
    ("dnat to tcp dport map @nosuch", 25, "no data map named 'nosuch'"),
    ("dnat to tcp dport map @", 25, "expected a map name"),
    ("dnat to tcp dport map nosuch", 24, "or '@NAME' after 'map'"),
    ("dnat ip addr . port to tcp dport map { 80 : 10.0.0.1 }", 10, "needs a port"),
]


@pytest.mark.parametrize("text,col,words", MAP_ERRORS)
def test_nat_map_errors_are_located(text, col, words):
    with pytest.raises(RuleError) as info:
        parse(f"chain c {{\n policy drop\n {text}\n}}", "bad.rules")
    err = info.value
    assert words in err.message and (err.line, err.col) == (3, col), str(err)
