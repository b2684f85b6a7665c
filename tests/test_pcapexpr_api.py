"""The compiled program's API: batches read in place, odd descriptors, equivalent spellings."""

from __future__ import annotations

import numpy as np
import pytest

from filter.pcapexpr import compile_filter
from tests.pcapexpr_corpus import ethernet_frames, raw_frames

FRAMES = ethernet_frames(count=60, seed=3)


def _packed(frames):
    lengths = np.array([len(f) for f in frames], dtype=np.uint32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.uint64)
    return np.frombuffer(b"".join(frames), dtype=np.uint8), offsets, lengths


def test_batch_reads_a_read_only_region_with_unsigned_descriptors():
    data, offsets, lengths = _packed(FRAMES)
    assert not data.flags.writeable
    prog = compile_filter("tcp port 80 or udp port 53")
    got = prog.match_batch(data, offsets, lengths)
    assert got.dtype == bool and got.shape == (len(FRAMES),)
    assert got.tolist() == [prog.matches(f) for f in FRAMES]
    assert got.any() and not got.all()


def test_empty_batches_and_frames_at_the_end_of_the_region():
    prog = compile_filter("len = 0 or ip[0] & 0xf = 5")  # len first: no load on empty frames
    empty = np.zeros(0, np.int64)
    assert prog.match_batch(np.zeros(16, np.uint8), empty, empty).shape == (0,)
    region = np.frombuffer(bytes(10) + FRAMES[0], np.uint8)
    end = len(region)
    got = prog.match_batch(region, np.array([10, end, end - 3]), np.array([len(FRAMES[0]), 0, 3]))
    assert got.tolist() == [True, True, False]
    assert compile_filter("len = 0").match_batch(np.zeros(0, np.uint8), np.array([0]),
                                                 np.array([0])).tolist() == [True]


def test_matches_accepts_bytes_bytearray_and_memoryview():
    prog = compile_filter("tcp[tcpflags] & tcp-syn != 0")
    frame = FRAMES[0]
    assert prog.matches(frame) and prog.matches(bytearray(frame))
    assert prog.matches(memoryview(frame)) and not prog.matches(frame[:30])


@pytest.mark.parametrize("short,long", [
    ("tcp port 22 or 80", "tcp port 22 or tcp port 80"),
    ("host 10.0.0.1 or 10.0.0.2", "host 10.0.0.1 or host 10.0.0.2"),
    ("src host 10.0.0.1 and not 10.0.0.2", "src host 10.0.0.1 and not src host 10.0.0.2"),
    ("tcp or udp and port 53", "(tcp or udp) and port 53"),
    ("not tcp or udp", "(not tcp) or udp"),
    ("port 53", "tcp port 53 or udp port 53 or sctp port 53"),
    ("ip6 or arp", "ether proto 0x86dd or ether proto 0x806"),
    ("greater 100", "len >= 100"),
    ("less 100", "len <= 100"),
    ("tcp[tcpflags] & (tcp-syn|tcp-ack) != 0", "tcp[13] & 18 != 0"),
])
def test_equivalent_spellings(short, long):
    a, b = compile_filter(short), compile_filter(long)
    data, offsets, lengths = _packed(FRAMES)
    assert a.match_batch(data, offsets, lengths).tolist() == \
        b.match_batch(data, offsets, lengths).tolist()
    assert [a.matches(f) for f in FRAMES] == [b.matches(f) for f in FRAMES]


def test_raw_link_type_reads_the_version_nibble():
    frames = raw_frames(FRAMES)
    v4, v6 = compile_filter("ip", 101), compile_filter("ip6", 101)
    for f in frames:
        version = f[0] >> 4 if f else None
        assert v4.matches(f) == (version == 4) and v6.matches(f) == (version == 6)
