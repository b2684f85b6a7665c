"""pcap-filter expressions on the link types of loopback and newer Linux captures (BSD NULL,
OpenBSD LOOP, Linux cooked v2) against the real tcpdump/libpcap, as on Ethernet, RAW and SLL
in test_pcapexpr_oracle."""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from filter.pcapexpr import FilterSyntaxError, compile_filter
from tests.pcapexpr_corpus import (
    ethernet_frames,
    tcpdump_matches,
    tcpdump_path,
    write_pcap,
)
from tests.test_pcapexpr_oracle import EXPRESSIONS, _region

LINKTYPES = {"null": 0, "loop": 108, "sll2": 276}
FAMILY_OF = {0x0800: (2,), 0x86DD: (24, 28, 30)}      # IPv6's number differs between BSDs


def _payloads(eth: list[bytes]):
    """(ethertype, payload, frame) of each untagged Ethernet frame of the corpus."""
    for f in eth:
        if len(f) >= 14 and int.from_bytes(f[12:14], "big") not in (0x8100, 0x88A8, 0x9100):
            yield int.from_bytes(f[12:14], "big"), f[14:], f


def loopback_frames(eth: list[bytes], order: str) -> list[bytes]:
    """DLT_NULL (``order`` '<', the writer's byte order) or DLT_LOOP ('>') frames: the
    corpus's IP datagrams behind a 4-byte address family, cycling IPv6 through its numbers,
    plus a few other families and runts."""
    out = []
    for i, (etype, payload, _) in enumerate(_payloads(eth)):
        family = FAMILY_OF.get(etype, (i % 40 + 3,))
        out.append(struct.pack(order + "I", family[i % len(family)]) + payload)
    return out + [b"", b"\x02\x00", struct.pack(order + "I", 2), struct.pack(order + "I", 7) * 9]


def sll2_frames(eth: list[bytes]) -> list[bytes]:
    """LINKTYPE_LINUX_SLL2: protocol, reserved, interface index, ARPHRD, packet type, address
    length and 8 address bytes (20 bytes) before the payload."""
    out = []
    for etype, payload, f in _payloads(eth):
        proto = etype if etype > 1500 else 4
        pkttype = 1 if f[0:6] == b"\xff" * 6 else (2 if f[0] & 1 else 0)
        out.append(struct.pack(">HHIHBB8s", proto, 0, 3, 1, pkttype, 6, f[6:12]) + payload)
    return out + [b"", b"\x08\x00" + b"\x00" * 17, b"\x86\xdd" + b"\x00" * 18 + b"\x60"]


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, tuple[str, list[bytes]]]:
    if tcpdump_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tcpdump is not installed")
        pytest.skip("tcpdump is not installed")
    tmp = tmp_path_factory.mktemp("linktypes")
    eth = ethernet_frames()
    out = {}
    for name, frames in (("null", loopback_frames(eth, "<")), ("loop", loopback_frames(eth, ">")),
                         ("sll2", sll2_frames(eth))):
        path = str(tmp / f"{name}.pcap")
        write_pcap(path, frames, LINKTYPES[name])
        out[name] = (path, frames)
    return out


CASES = [(cap, e) for cap in LINKTYPES for e in EXPRESSIONS[::3]]


@pytest.fixture(scope="module")
def oracle(captures):
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda c: tcpdump_matches(captures[c[0]][0], c[1]), CASES)
        return dict(zip(CASES, results, strict=True))


@pytest.mark.parametrize("capture,expression", CASES)
def test_matches_tcpdump(captures, oracle, capture, expression):
    path, frames = captures[capture]
    expected = oracle[(capture, expression)]
    if isinstance(expected, str):
        with pytest.raises(FilterSyntaxError):
            compile_filter(expression, LINKTYPES[capture])
        return
    prog = compile_filter(expression, LINKTYPES[capture])
    reference = {i for i, f in enumerate(frames) if prog.matches(f)}
    assert reference == expected, (
        f"reference differs from tcpdump: extra {sorted(reference - expected)[:10]}, "
        f"missing {sorted(expected - reference)[:10]}")
    data, offsets, lengths = _region(frames)
    batch = set(np.nonzero(prog.match_batch(data, offsets, lengths))[0].tolist())
    assert batch == expected


@pytest.mark.parametrize("capture", ["null", "loop"])
def test_the_families_decide(captures, capture):
    """IPv4 and every IPv6 family number match, other families neither, as with tcpdump."""
    path, frames = captures[capture]
    verdicts = {}
    for proto in ("ip", "ip6"):
        prog = compile_filter(proto, LINKTYPES[capture])
        verdicts[proto] = {i for i, f in enumerate(frames) if prog.matches(f)}
        assert verdicts[proto] == tcpdump_matches(path, proto)
    order = "<" if capture == "null" else ">"
    families = {struct.unpack(order + "I", frames[i][:4])[0] for i in verdicts["ip6"]}
    assert families == {24, 28, 30}
    assert verdicts["ip"] and not verdicts["ip"] & verdicts["ip6"]
    assert len(verdicts["ip"]) + len(verdicts["ip6"]) < len(frames)
