"""Random expressions against tcpdump, and the two evaluators against each other (hypothesis).

Expressions are drawn from a grammar over fields the corpus actually holds; frames are the
corpus, the corpus mutated, and arbitrary bytes. No byte sequence makes either evaluator raise.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filter.pcapexpr import FilterSyntaxError, compile_filter
from tests.pcapexpr_corpus import ethernet_frames, tcpdump_matches, tcpdump_path, write_pcap

PRIMITIVES = [
    "tcp", "udp", "icmp", "ip", "ip6", "arp", "sctp", "icmp6", "vlan", "vlan 5", "mpls",
    "mpls 100", "host 10.0.0.1", "src host 10.0.0.2", "dst 8.8.8.8", "net 10.0.0.0/8",
    "src net 192.168", "ip6 host 2001:db8::1", "ip6 net fe80::/10", "port 53", "tcp port 80",
    "udp dst port 53", "src port 1024", "portrange 20-100", "ether broadcast", "multicast",
    "ip multicast", "ip6 multicast", "ether src 02:00:00:00:00:0a", "tcp[13] & 2 != 0",
    "tcp[tcpflags] & tcp-ack != 0", "ip[2:2] > 100", "ip[8] = 64", "len > 100", "less 80",
    "greater 200", "udp[2:2] = 53", "icmp[icmptype] = icmp-echo", "ip6[6] = 58",
    "ip[6:2] & 0x1fff != 0", "ether[12:2] = 0x800", "ip[0] & 0xf > 5", "ip proto 17",
    "ip6 proto 6", "1 + ip[0] = 70", "len - 14 = ip[2:2]", "tcp[100] = 0", "ip[60] = 0",
]
IDS = ["10.0.0.2", "80", "443", "53", "8.8.8.8", "10.0.0.0/24", "2001:db8::2"]


def _expressions():
    base = st.sampled_from(PRIMITIVES)

    def extend(inner):
        return st.one_of(
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"({e})"),
            st.tuples(inner, st.sampled_from([" and ", " or "]), inner).map("".join),
            st.tuples(inner, st.sampled_from([" and ", " or "]), st.sampled_from(IDS)).map(
                "".join),
        )
    return st.recursive(base, extend, max_leaves=5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if tcpdump_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tcpdump is not installed")
        pytest.skip("tcpdump is not installed")
    frames = ethernet_frames(count=120, seed=11)
    path = str(tmp_path_factory.mktemp("random") / "corpus.pcap")
    write_pcap(path, frames, 1)
    data = np.frombuffer(b"".join(frames), np.uint8)
    lengths = np.array([len(f) for f in frames], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return path, frames, data, offsets, lengths


@settings(max_examples=70, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=_expressions())
def test_random_expressions_match_tcpdump(corpus, expression):
    path, frames, data, offsets, lengths = corpus
    expected = tcpdump_matches(path, expression)
    if isinstance(expected, str):
        with pytest.raises(FilterSyntaxError):
            compile_filter(expression)
        return
    prog = compile_filter(expression)
    assert {i for i, f in enumerate(frames) if prog.matches(f)} == expected
    assert set(np.nonzero(prog.match_batch(data, offsets, lengths))[0].tolist()) == expected


def _mutated(frames):
    frame = st.sampled_from(frames)
    edits = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6)
    cut = st.integers(0, 300)

    def apply(args):
        f, changes, end = args
        b = bytearray(f)
        for pos, value in changes:
            if pos < len(b):
                b[pos] = value
        return bytes(b[:end])
    return st.tuples(frame, edits, cut).map(apply)


FRAMES = ethernet_frames(count=40, seed=5)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(expression=_expressions(), linktype=st.sampled_from([1, 101, 113, 228, 229]),
       batch=st.lists(st.one_of(_mutated(FRAMES), st.binary(max_size=120)), min_size=1,
                      max_size=24))
def test_reference_equals_batch_on_any_bytes(expression, linktype, batch):
    try:
        prog = compile_filter(expression, linktype)
    except FilterSyntaxError:
        return
    reference = [prog.matches(f) for f in batch]
    # frames scattered in a region with junk between them, in a shuffled order
    gap = 7
    offsets, pos = [], 3
    for f in batch:
        offsets.append(pos)
        pos += len(f) + gap
    region = np.full(pos + 3, 0x5A, np.uint8)
    for f, off in zip(batch, offsets, strict=True):
        region[off:off + len(f)] = np.frombuffer(f, np.uint8)
    order = np.arange(len(batch))[::-1]
    got = prog.match_batch(region, np.array(offsets)[order], np.array([len(f) for f in batch])[order])
    assert got.dtype == bool and got.tolist() == [reference[i] for i in order]
