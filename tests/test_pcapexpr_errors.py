"""Expressions libpcap refuses are refused here too, with a column and a clear message."""

from __future__ import annotations

import os
import socket

import pytest

from filter.pcapexpr import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    FilterSyntaxError,
    compile_filter,
)
from filter.pcapexpr.names import IP_PROTOCOLS, SERVICES
from tests.pcapexpr_corpus import tcpdump_path, tcpdump_rejects, write_pcap

# (linktype, expression, column of the fault as we report it)
REJECTED = [
    (1, "tcp port", 4), (1, "port 70000", 5), (1, "tcp port 70000", 9),
    (1, "udp portrange 70000-1", 14), (1, "tcp portrange 1-70000", 14), (1, "host", 0),
    (1, "host foo.example.com", 5), (1, "host 1.2.3.4.5", 5), (1, "ip host 256.256.256.256", 8),
    (1, "net 10.0.0.0/33", 4), (1, "net 1.2.3.4/24", 4), (1, "host 1.2.3.0/24", 5),
    (1, "host 1.2.3.0 mask 255.255.255.0", 5), (1, "ip6 net fe80:0:0:0:0:0:0:0/129", 8),
    (1, "ip6 host fe80::10.20.256.40", 9), (1, "ip6 host fe80:0:0:0:0:0:0:0:0", 27),
    (1, "ether ab:cd:ef:0g:00:00", 6), (1, "ether host 1:2:3:4:5", 11),
    (1, "host 00:11:22:33:44:55", 5), (1, "tcp host 10.0.0.1", 9), (1, "ip6 host 10.0.0.1", 9),
    (1, "ip host fe80::1", 8), (1, "tcp and", 7), (1, "and tcp", 0), (1, "tcp or or udp", 7),
    (1, "(tcp", 4), (1, "tcp)", 3), (1, "not", 3), (1, "ip[", 3), (1, "ip[0", 4),
    (1, "ip[0] =", 7), (1, "ip[0:3] = 1", 5), (1, "ip[0:0] = 1", 5),
    (1, "tcp[tcpflags] & tcp-syn", 23), (1, "1 = 2", 0), (1, "ip and arp", 0),
    (1, "tcp and udp", 0), (1, "icmp and ip6", 0), (1, "ip broadcast and ip6", 0),
    (1, "len = 1 / 0", 8), (1, "len = 1 % 0", 8), (1, "len = 1 << 32", 8),
    (1, "len = 1 << (40 + 1)", 8), (1, "len-1 > 5", 0), (1, "ip[1-1] = 0", 3), (1, "08", 0),
    (1, "0x100000000", 0), (1, "4294967296", 0), (1, "003777777777778", 0),
    (1, "vlan 4096", 5), (1, "mpls 1048576", 5), (1, "port nosuchport", 5),
    (1, "proto nosuchprotocol", 6), (1, "ip proto \\nosuch", 9), (1, "ether proto \\lldp", 12),
    (1, "portrange nosuch-port", 10), (1, "src tcp", 4), (1, "src or 10.0.0.1", 4),
    (1, "gateway 1.2.3.4", 8), (1, "port 80 or foo", 11), (1, "tcp[0]", 6), (1, "\\", 0),
    (1, "$", 0), (1, "ip6 net fe80::/10 mask", 18), (1, "ether host 0200.0000", 11),
    (1, "port 80 and 1.2.3.4", 12), (1, "link host 120", 10), (1, "byte 1 << 2", 7),
    (1, "less", 4), (1, "greater 10 20", 11), (1, "TCP", 0), (1, "tcp port 80 and not", 19),
    (1, "vlan and mpls and vlan", 18), (1, "mpls and arp", 9), (1, "ip6 host fe80::/16", 9),
    (1, "ip[0] = 1 and", 13), (1, "tcp port 80 or", 14), (1, "host 10.0.0.1 mask", 14),
    (101, "vlan", 0), (101, "mpls", 0), (101, "broadcast", 0), (101, "multicast", 0),
    (101, "ether host 02:00:00:00:00:0a", 11), (101, "arp", 0), (101, "ether proto 100", 0),
    (113, "vlan", 0), (113, "mpls", 0), (113, "broadcast", 0),
    (113, "ether src 02:00:00:00:00:0a", 10),
]


@pytest.fixture(scope="module")
def empty_captures(tmp_path_factory) -> dict[int, str]:
    if tcpdump_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tcpdump is not installed")
        pytest.skip("tcpdump is not installed")
    tmp = tmp_path_factory.mktemp("empty")
    paths = {}
    for linktype in (1, 101, 113):
        paths[linktype] = str(tmp / f"{linktype}.pcap")
        write_pcap(paths[linktype], [], linktype)
    return paths


@pytest.mark.parametrize("linktype,expression,column", REJECTED)
def test_rejected_like_libpcap(empty_captures, linktype, expression, column):
    assert tcpdump_rejects(empty_captures[linktype], expression) is not None
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter(expression, linktype)
    err = caught.value
    assert isinstance(err, ValueError)
    assert err.column == column, str(err)
    assert "\n" not in str(err) and err.message in str(err)
    line, caret = err.caret(expression).split("\n")
    assert line == expression and caret == " " * column + "^"


def test_host_names_are_refused_with_a_clear_message():
    for expression in ("host example.com", "src host router", "ether host gw", "net corp"):
        with pytest.raises(FilterSyntaxError, match="host names are not supported; use an "
                           "address"):
            compile_filter(expression)


@pytest.mark.parametrize("expression", ["protochain 6", "decnet", "pppoes", "geneve", "inbound",
                                        "ip protochain 17", "llc", "atalk", "ipx"])
def test_unsupported_primitives_say_so(expression):
    with pytest.raises(FilterSyntaxError, match="not supported"):
        compile_filter(expression)


def test_unknown_linktype_is_a_value_error():
    for linktype in (2, 105, 127, -1, "eth"):
        with pytest.raises(ValueError, match="link type") as caught:
            compile_filter("tcp", linktype)
        assert not isinstance(caught.value, FilterSyntaxError)


def test_program_attributes_and_link_types():
    prog = compile_filter("tcp port 80", LINKTYPE_LINUX_SLL)
    assert prog.expression == "tcp port 80" and prog.linktype == 113
    ipv4 = compile_filter("ip", LINKTYPE_IPV4)
    assert ipv4.matches(b"") and ipv4.linktype == 228
    with pytest.raises(FilterSyntaxError, match="rejects all packets"):
        compile_filter("ip6", LINKTYPE_IPV4)
    v6 = compile_filter("udp port 53", LINKTYPE_IPV6)
    datagram = bytes.fromhex("6000000000081140") + bytes(32) + bytes.fromhex("0035003500080000")
    assert v6.matches(datagram) and not v6.matches(datagram[:41])
    raw = compile_filter("ip6 and udp", LINKTYPE_RAW)
    assert raw.matches(datagram) and not raw.matches(b"\x45" + datagram[1:])
    assert compile_filter("", LINKTYPE_ETHERNET).matches(b"")


def test_builtin_names_agree_with_this_machine():
    """The built-in tables copy Debian's /etc/services and /etc/protocols entries."""
    checked = 0
    for name, (tcp, udp) in SERVICES.items():
        for proto, port in (("tcp", tcp), ("udp", udp)):
            try:
                system = socket.getservbyname(name, proto)
            except OSError:
                system = None
            if os.path.exists("/etc/services"):
                assert system == port, (name, proto)
                checked += 1
    for name, number in IP_PROTOCOLS.items():
        if os.path.exists("/etc/protocols"):
            assert socket.getprotobyname(name) == number, name
            checked += 1
    assert checked or os.environ.get("CI") != "true"
