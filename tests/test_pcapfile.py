"""Capture files: reading crafted pcap/pcapng, writing, round trips checked by tcpdump and
tshark, bad and truncated files, and a fuzz test that scanning never crashes."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.capture import (
    CaptureFormatError,
    CaptureWriter,
    Interface,
    copy_frames,
    map_fd,
    open_writer,
    scan,
    scan_file,
)

T0 = 1_700_000_000 * 10**9
RNG = np.random.default_rng(7)


def need_tool(name: str) -> str:
    """Path of a system tool; missing -> fail under CI=true, skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (apt-get install tcpdump tshark)")
        pytest.skip(f"{name} not installed")
    return path


def frames(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sizes = rng.choice([60, 61, 63, 576, 1500, 1514], count)
    return [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in sizes]


# -- hand-crafted files (independent of our writer) ----------------------------------------

def classic(pkts, times_ns, order="<", nano=False, linktype=1, snaplen=65535):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    offsets = []
    for data, ts in zip(pkts, times_ns, strict=True):
        sec, ns = divmod(ts, 10**9)
        offsets.append(len(out))
        out += struct.pack(order + "IIII", sec, ns if nano else ns // 1000, len(data), len(data))
        out += data
    return out, offsets


def block(order, btype, body):
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def option(order, code, value):
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(order):
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order, linktype=1, snaplen=0, tsresol=None, tsoffset=None, name=None):
    opts = b""
    if name:
        opts += option(order, 2, name.encode())
    if tsresol is not None:
        opts += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += b"\0" * 4
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order, iface, units, data, origlen=None):
    head = struct.pack(order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data),
                       len(data) if origlen is None else origlen)
    return block(order, 6, head + data + b"\0" * (-len(data) % 4) + option(order, 1, b"hi")
                 + b"\0" * 4)


def opb(order, iface, units, data):
    head = struct.pack(order + "HHIIII", iface, 0, units >> 32, units & 0xFFFFFFFF, len(data),
                       len(data))
    return block(order, 2, head + data)


def spb(order, data):
    return block(order, 3, struct.pack(order + "I", len(data)) + data)


def multi_section():
    """Two sections (LE then BE), four interfaces, every packet block and unknown blocks.

    Returns (file bytes, expected [(interface, ts_ns, data)]).
    """
    p = frames(8, seed=3)
    out = shb("<") + idb("<", 1, 262144, None, name="eth0") + idb("<", 101, 0, 9)
    out += block("<", 0x0BAD, b"unknown block") + block("<", 4, b"\0" * 8)   # unknown, NRB
    out += epb("<", 0, 1_700_000_000_123_456, p[0])                         # µs
    out += epb("<", 1, T0 + 7, p[1])                                         # ns
    out += opb("<", 1, T0 + 9, p[2])
    out += spb("<", p[3])                    # iface 0 (µs): previous time, cut to µs
    out += block("<", 5, b"\0" * 12)                                         # ISB
    out += shb(">") + idb(">", 228, 0, 0x94) + idb(">", 229, 0, 3, tsoffset=5)
    out += epb(">", 0, (1_700_000_000 << 20) + 3, p[4])                      # 2**-20 s
    out += epb(">", 1, 1_700_000_000_250, p[5])                              # ms, +5 s
    out += block(">", 0x40000BAD, b"custom")
    out += epb(">", 0, (1_700_000_001 << 20) + (1 << 19), p[6])
    expected = [
        (0, 1_700_000_000_123_456_000, p[0]), (1, T0 + 7, p[1]), (1, T0 + 9, p[2]),
        (0, T0, p[3]), (2, T0 + (3 * 10**9 >> 20), p[4]),
        (3, 1_700_000_005_250_000_000, p[5]), (2, T0 + 1_500_000_000, p[6]),
    ]
    return out, expected


def assert_records(buf, result, expected):
    assert result.error is None
    rec = result.records
    assert len(rec) == len(expected)
    for r, (iface, ts, data) in zip(rec, expected, strict=True):
        start = int(r["data_offset"])
        assert bytes(buf[start:start + int(r["caplen"])]) == data
        assert int(r["ts_ns"]) == ts
        assert int(r["interface"]) == iface
        assert int(r["origlen"]) == len(data)


# -- reading ----------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_both_byte_orders_and_resolutions(order, nano):
    pkts = frames(20)
    times = [T0 + i * 1_234_000 + (i * 7 if nano else 0) for i in range(20)]
    buf, offsets = classic(pkts, times, order, nano, linktype=1)
    result = scan(buf)
    assert (result.format, result.byte_order, result.nanosecond) == ("pcap", order, nano)
    assert result.interfaces[0].linktype_name == "ETHERNET"
    assert_records(buf, result, [(0, t, p) for t, p in zip(times, pkts, strict=True)])
    assert [int(o) - 16 for o in result.records["data_offset"]] == offsets


def test_modified_pcap_with_24_byte_record_headers():
    pkts = frames(3)
    out = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    for i, p in enumerate(pkts):
        out += struct.pack("<IIII", 1_700_000_000, i, len(p), len(p)) + b"\0" * 8 + p
    result = scan(out)
    assert result.extra.get("modified") and not result.nanosecond
    assert_records(out, result, [(0, T0 + i * 1000, p) for i, p in enumerate(pkts)])


@pytest.mark.parametrize("linktype,name", [(1, "ETHERNET"), (101, "RAW"), (228, "IPV4"),
                                           (229, "IPV6"), (113, "LINUX_SLL"),
                                           (276, "LINUX_SLL2"), (147, "LINKTYPE_147")])
def test_link_types_are_reported(linktype, name):
    buf, _ = classic(frames(2), [T0, T0 + 1000], linktype=linktype)
    assert scan(buf).interfaces[0].linktype == linktype
    assert scan(buf).interfaces[0].linktype_name == name
    ng = shb("<") + idb("<", 1) + idb("<", linktype) + epb("<", 1, 5, b"x" * 20)
    assert [i.linktype for i in scan(ng).interfaces] == [1, linktype]


def test_pcapng_sections_interfaces_resolutions_and_unknown_blocks():
    buf, expected = multi_section()
    result = scan(buf)
    assert result.format == "pcapng" and result.sections == 2
    assert [(i.linktype, i.tsresol, i.section) for i in result.interfaces] == [
        (1, 6, 0), (101, 9, 0), (228, 0x94, 1), (229, 3, 1)]
    assert result.interfaces[0].name == "eth0"
    assert result.skipped_blocks == 4
    assert_records(buf, result, expected)


def test_scan_reads_an_mmapped_fd(tmp_path):
    buf, expected = multi_section()
    path = tmp_path / "m.pcapng"
    path.write_bytes(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        mapped = map_fd(fd)
    finally:
        os.close(fd)
    assert_records(mapped, scan(mapped), expected)
    assert_records(buf, scan_file(path)[0], expected)


# -- writing and round trips ---------------------------------------------------------------

def rewrite(buf, batch: bool) -> bytes:
    """Write back what scan() read, in the input's format and resolutions."""
    result = scan(buf)
    out = io.BytesIO()
    with CaptureWriter(out, fmt=result.format, interfaces=result.interfaces) as writer:
        rec = result.records
        if batch:
            writer.write_batch(np.frombuffer(buf, np.uint8), rec["data_offset"], rec["caplen"],
                               rec["ts_ns"], rec["origlen"], rec["interface"])
        else:
            for r in rec:
                start = int(r["data_offset"])
                writer.write(int(r["ts_ns"]), buf[start:start + int(r["caplen"])],
                             int(r["origlen"]), int(r["interface"]))
    return out.getvalue()


def same_frames(a, b):
    ra, rb = scan(a), scan(b)
    assert ra.error is None and rb.error is None
    assert ra.format == rb.format and ra.nanosecond == rb.nanosecond
    assert [(i.linktype, i.tsresol) for i in ra.interfaces] == \
        [(i.linktype, i.tsresol) for i in rb.interfaces]
    for field in ("caplen", "origlen", "ts_ns", "interface"):
        assert (ra.records[field] == rb.records[field]).all(), field
    for x, y in zip(ra.records, rb.records, strict=True):
        assert bytes(a[int(x["data_offset"]):][:int(x["caplen"])]) == \
            bytes(b[int(y["data_offset"]):][:int(y["caplen"])])


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("order,nano", [("<", False), (">", False), ("<", True), (">", True)])
def test_classic_round_trip_keeps_bytes_and_timestamps(order, nano, batch):
    times = [T0 + i * 999_999_000 + 1000 * (i % 3) + (i if nano else 0) for i in range(30)]
    buf, _ = classic(frames(30), times, order, nano)
    out = rewrite(buf, batch)
    same_frames(buf, out)
    assert struct.unpack_from("<I", out)[0] == (0xA1B23C4D if nano else 0xA1B2C3D4)


@pytest.mark.parametrize("batch", [False, True])
def test_pcapng_round_trip_keeps_interfaces_and_resolutions(batch):
    buf, expected = multi_section()
    out = rewrite(buf, batch)
    same_frames(buf, out)
    assert_records(out, scan(out), expected)


def test_snaplen_cuts_frames_and_keeps_origlen():
    out = io.BytesIO()
    with CaptureWriter(out, snaplen=100) as writer:
        writer.write(T0, b"a" * 300)
    rec = scan(out.getvalue()).records
    assert (int(rec[0]["caplen"]), int(rec[0]["origlen"])) == (100, 300)


def tcpdump_frames(path, nano):
    """[(ts string, bytes)] as tcpdump prints them."""
    cmd = [need_tool("tcpdump"), "-r", str(path), "-tt", "-nn", "-e", "-xx"]
    cmd += ["--nano"] if nano else []
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pkts = []
    for line in text.splitlines():
        if line.startswith("\t0x"):
            pkts[-1][1].extend(bytes.fromhex("".join(line.split(":", 1)[1].split()[:8])))
        else:
            pkts.append((line.split()[0], bytearray()))
    return pkts


def tshark_frames(path):
    """[(ts_ns, interface, bytes)] as tshark decodes them."""
    cmd = [need_tool("tshark"), "-r", str(path), "-T", "json", "-x"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = []
    for pkt in json.loads(out):
        layers = pkt["_source"]["layers"]
        sec, frac = layers["frame"]["frame.time_epoch"].split(".")
        ts = int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
        iface = int(layers["frame"].get("frame.interface_id", "0"))
        result.append((ts, iface, bytes.fromhex(layers["frame_raw"][0])))
    return result


def expected_from(buf):
    result = scan(buf)
    return [(int(r["ts_ns"]), int(r["interface"]),
             bytes(buf[int(r["data_offset"]):][:int(r["caplen"])])) for r in result.records]


@pytest.mark.parametrize("nano", [False, True])
def test_written_pcap_opens_in_tcpdump_and_tshark(tmp_path, nano):
    pkts = frames(40, seed=11)
    times = [T0 + i * 123_456_000 + (i * 11 if nano else 0) for i in range(40)]
    src, _ = classic(pkts, times, ">", nano)
    path = tmp_path / "out.pcap"
    path.write_bytes(rewrite(src, batch=True))
    dumped = tcpdump_frames(path, nano)
    assert len(dumped) == 40
    for (ts_text, data), ts, p in zip(dumped, times, pkts, strict=True):
        sec, frac = divmod(ts, 10**9)
        assert ts_text == (f"{sec}.{frac:09d}" if nano else f"{sec}.{frac // 1000:06d}")
        assert bytes(data) == p
    assert tshark_frames(path) == [(t, 0, p) for t, p in zip(times, pkts, strict=True)]


def test_written_pcapng_opens_in_tshark_and_tcpdump(tmp_path):
    buf, expected = multi_section()
    path = tmp_path / "multi.pcapng"
    path.write_bytes(rewrite(buf, batch=True))
    assert tshark_frames(path) == [(ts, i, d) for i, ts, d in expected]
    # libpcap reads pcapng with one link type across interfaces; give it several resolutions
    ifaces = [Interface(1, 262144, 6), Interface(1, 262144, 9), Interface(1, 0, 0x94)]
    pkts = frames(9, seed=5)
    times = [T0 + i * 1_000_000 * 1_000 for i in range(9)]
    path2 = tmp_path / "eth.pcapng"
    with open_writer(path2, fmt="pcapng", interfaces=ifaces) as writer:
        for i, (ts, p) in enumerate(zip(times, pkts, strict=True)):
            writer.write(ts, p, interface=i % 3)
    dumped = tcpdump_frames(path2, nano=True)
    assert [bytes(d) for _, d in dumped] == pkts
    assert [t for t, _ in dumped] == [f"{t // 10**9}.{t % 10**9:09d}" for t in times]
    assert [i for _, i, _ in tshark_frames(path2)] == [i % 3 for i in range(9)]


# -- bad and truncated files -----------------------------------------------------------------

def test_truncated_classic_names_the_record_and_keeps_the_prefix():
    buf, offsets = classic(frames(6), [T0 + i for i in range(6)])
    ends = offsets[1:] + [len(buf)]
    for cut in range(len(buf)):
        part = buf[:cut]
        if cut < 24:
            with pytest.raises(CaptureFormatError) as info:
                scan(part)
            assert info.value.offset == 0
            continue
        result = scan(part)
        complete = sum(1 for end in ends if end <= cut)
        assert len(result.records) == complete
        if cut in ends or cut == 24:
            assert result.error is None
        else:
            assert result.error.offset == offsets[complete]
            assert f"offset {offsets[complete]}" in str(result.error)


def pcapng_blocks(buf):
    """[(start, end, is_packet)] of every block, following each section's byte order."""
    blocks, off, order = [], 0, "<"
    while off < len(buf):
        btype = struct.unpack_from("<I", buf, off)[0]
        if btype == 0x0A0D0D0A:
            order = "<" if struct.unpack_from("<I", buf, off + 8)[0] == 0x1A2B3C4D else ">"
        btype = struct.unpack_from(order + "I", buf, off)[0]
        end = off + struct.unpack_from(order + "I", buf, off + 4)[0]
        blocks.append((off, end, btype in (2, 3, 6)))
        off = end
    return blocks


def test_truncated_pcapng_names_the_block_and_keeps_the_prefix():
    buf, expected = multi_section()
    blocks = pcapng_blocks(buf)
    for cut in range(1, len(buf)):
        if cut < blocks[0][1]:
            with pytest.raises(CaptureFormatError) as info:
                scan(buf[:cut])
            assert info.value.offset == 0
            continue
        result = scan(buf[:cut])
        error, result.error = result.error, None
        complete = sum(1 for _, end, packet in blocks if packet and end <= cut)
        assert_records(buf, result, expected[:complete])
        inside = [start for start, end, _ in blocks if start < cut < end]
        assert (error.offset if error else None) == (inside[0] if inside else None)


@pytest.mark.parametrize("mangle,message", [
    (lambda b, o: b[:o + 8] + struct.pack("<I", 10**6) + b[o + 12:], "exceeds snaplen"),
    (lambda b, o: b[:o + 8] + struct.pack("<I", 0xFFFFFFF0) + b[o + 12:], "exceeds snaplen"),
])
def test_crafted_classic_records_are_rejected_at_their_offset(mangle, message):
    buf, offsets = classic(frames(5), [T0 + i * 1000 for i in range(5)])
    result = scan(mangle(buf, offsets[3]))
    assert len(result.records) == 3
    assert result.error.offset == offsets[3] and message in result.error.message


@pytest.mark.parametrize("nano", [False, True])
def test_a_fraction_past_the_second_is_carried_as_libpcap_reads_it(nano):
    """tcpdump's own test captures hold such records (timestamp_invalid_*.pcap): libpcap
    reads every record, and so do we."""
    stamps = [T0 + i * 1000 for i in range(5)]
    buf, offsets = classic(frames(5), stamps, nano=nano)
    second = 10**9 if nano else 10**6
    sec = struct.unpack_from("<I", buf, offsets[3])[0]
    crafted = buf[:offsets[3] + 4] + struct.pack("<I", second + 7) + buf[offsets[3] + 8:]
    result = scan(crafted)
    assert result.error is None and len(result.records) == 5
    assert int(result.records["ts_ns"][3]) == (sec + 1) * 10**9 + 7 * (1 if nano else 1000)


def pcapng_cases():
    head = shb("<") + idb("<", 1, 1500)
    good = epb("<", 0, 1, b"x" * 64)
    at = len(head) + len(good)
    bad_len = bytearray(good)
    bad_len[4:8] = struct.pack("<I", len(good) - 2)
    trailer = bytearray(good)
    trailer[-4:] = struct.pack("<I", len(good) + 4)
    caplen = bytearray(good)
    caplen[20:24] = struct.pack("<I", 5000)
    return [
        (head + good + bytes(bad_len), at, "bad block length"),
        (head + good + bytes(trailer), at, "trailing block length"),
        (head + good + epb("<", 3, 1, b"y" * 8), at, "unknown interface"),
        (head + good + bytes(caplen), at, "exceeds its block"),
        (head + good + epb("<", 0, 1, b"z" * 1600 * 200), at, "exceeds snaplen"),
        (head + good + good[:30], at, "truncated"),
        (head + good + b"\x0a\x0d\x0d\x0a" + b"\0" * 4 + b"\x1a\x2b\x3c\x4e" + b"\0" * 20, at,
         "byte-order magic"),
    ]


@pytest.mark.parametrize("buf,offset,message", pcapng_cases())
def test_crafted_pcapng_blocks_are_rejected_at_their_offset(buf, offset, message):
    result = scan(buf)
    assert len(result.records) == 1
    assert result.error.offset == offset and message in result.error.message


@pytest.mark.parametrize("buf", [b"", b"\xd4\xc3", b"GIF89a" + b"\0" * 40,
                                 struct.pack("<IHH", 0xA1B2C3D4, 3, 0) + b"\0" * 16])
def test_unusable_headers_raise_with_offset_zero(buf):
    with pytest.raises(CaptureFormatError) as info:
        scan(buf)
    assert info.value.offset == 0


def _shb_version(major: int, minor: int) -> bytes:
    head = bytearray(shb("<"))
    head[12:16] = struct.pack("<HH", major, minor)
    return bytes(head) + idb("<", 1, 1500) + epb("<", 0, 1, b"x" * 64)


@pytest.mark.parametrize("buf, message", [
    # libpcap's own test files ask for these: pcap 1.4, 2.5; pcapng 0.1, 1.1; a link type
    # field with reserved bits (16-25) set
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 4, 0, 0, 65535, 1), "unsupported pcap version 1.4"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 5, 0, 0, 65535, 1), "unsupported pcap version 2.5"),
    (_shb_version(0, 1), "unsupported pcapng version 0.1"),
    (_shb_version(1, 1), "unsupported pcapng version 1.1"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0x00300001), "reserved bits"),
])
def test_versions_and_fields_libpcap_refuses_are_refused(buf, message):
    with pytest.raises(CaptureFormatError) as info:
        scan(buf)
    assert message in info.value.message


def _old_pcap(version: tuple[int, int], len_first: bool, order: str = "<") -> bytes:
    """Four records cut to a 60-byte snaplen, with the two length fields in either order."""
    out = bytearray(struct.pack(order + "IHHiIII", 0xA1B2C3D4, *version, 0, 0, 60, 1))
    for i, data in enumerate(frames(4, seed=3)):
        kept = data[:60]
        lens = (len(data), len(kept)) if len_first else (len(kept), len(data))
        out += struct.pack(order + "IIII", 1_700_000_000 + i, 1000 * i, *lens) + kept
    return bytes(out)


@pytest.mark.parametrize("version, len_first", [
    ((2, 2), True), ((2, 0), True), ((543, 0), True),   # before 2.3: len, then caplen
    ((2, 3), True), ((2, 3), False),                    # 2.3 was written both ways
    ((2, 4), False),
])
def test_old_pcap_length_orders_read_as_libpcap_reads_them(tmp_path, version, len_first):
    path = tmp_path / "old.pcap"
    path.write_bytes(_old_pcap(version, len_first))
    ours = scan(path.read_bytes())
    assert ours.error is None and len(ours.records) == 4
    assert list(ours.records["caplen"]) == [60] * 4
    # libpcap as the oracle: what it writes back (2.4, caplen first) reads the same
    again = tmp_path / "libpcap.pcap"
    subprocess.run([need_tool("tcpdump"), "-r", str(path), "-w", str(again)], check=True,
                   capture_output=True)
    theirs = scan(again.read_bytes())
    for field in ("caplen", "origlen", "ts_ns"):
        assert list(ours.records[field]) == list(theirs.records[field])
    data, back = path.read_bytes(), again.read_bytes()
    assert [data[o:o + 60] for o in ours.records["data_offset"].tolist()] == \
        [back[o:o + 60] for o in theirs.records["data_offset"].tolist()]


def test_pcapng_1_2_reads_as_1_0_as_libpcap_does():
    assert len(scan(_shb_version(1, 2)).records) == 1


def seeds():
    ng, _ = multi_section()
    pcap, _ = classic(frames(4), [T0, T0 + 1, T0 + 2, T0 + 3], ">", True)
    return [ng, pcap]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(seeds()), edits=st.lists(
    st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=12),
    cut=st.integers(0, 4000), tail=st.binary(max_size=64))
def test_fuzz_scan_never_crashes_nor_reads_out_of_bounds(seed, edits, cut, tail):
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    data = bytes(data[: len(data) - cut % 200] + tail)
    try:
        result = scan(data)
    except CaptureFormatError:
        return
    rec = result.records
    assert ((rec["data_offset"] + rec["caplen"]) <= len(data)).all()
    assert (rec["interface"] < max(1, len(result.interfaces))).all()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    for prefix in (b"", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", b"\x0a\x0d\x0d\x0a"):
        try:
            scan(prefix + data)
        except CaptureFormatError:
            pass


# -- copying into a region ------------------------------------------------------------------

def test_copy_frames_places_each_frame_at_its_offset():
    pkts = frames(300, seed=9)
    buf, _ = classic(pkts, [T0 + i for i in range(300)])
    rec = scan(buf).records
    region = np.zeros(300 * 2048, np.uint8)
    slots = RNG.permutation(300) * 2048
    assert copy_frames(buf, rec, region, slots) == sum(map(len, pkts))
    for p, slot in zip(pkts, slots, strict=True):
        assert region[slot:slot + len(p)].tobytes() == p
        assert not region[slot + len(p):slot + 2048].any()


def test_copy_frames_refuses_out_of_bounds_and_copies_nothing():
    buf, _ = classic(frames(4), [T0 + i for i in range(4)])
    rec = scan(buf).records
    region = np.zeros(4096, np.uint8)
    with pytest.raises(ValueError):
        copy_frames(buf, rec, region, [0, 1024, 2048, 4095])
    assert not region.any()
    forged = rec.copy()
    forged["data_offset"][1] = len(buf) - 10
    with pytest.raises(ValueError):
        copy_frames(buf, forged, region, [0, 1024, 2048, 3072])
