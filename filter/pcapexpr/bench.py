"""Throughput of match_batch against tcpdump on a capture.

    python -m filter.pcapexpr.bench [PCAP] [EXPRESSION] [--batch 256]

Loads every frame of PCAP into one data region (as a queue would hold them), then times
match_batch over consecutive batches, and `tcpdump -r PCAP EXPRESSION -w /dev/null`.
"""

import argparse
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

from filter.pcapexpr import compile_filter


def read_frames(path: str) -> tuple[list[bytes], int]:
    """Frames and link type of a classic pcap file."""
    with open(path, "rb") as f:
        blob = f.read()
    endian = "<" if struct.unpack("<I", blob[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", blob[20:24])[0]
    frames, pos = [], 24
    while pos + 16 <= len(blob):
        incl = struct.unpack(endian + "I", blob[pos + 8:pos + 12])[0]
        frames.append(blob[pos + 16:pos + 16 + incl])
        pos += 16 + incl
    return frames, linktype


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pcap", nargs="?", default="examples/imix.pcap")
    ap.add_argument("expression", nargs="?", default="tcp port 80 or udp port 53")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    frames, linktype = read_frames(args.pcap)
    prog = compile_filter(args.expression, linktype)
    lengths = np.array([len(f) for f in frames], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    data = np.frombuffer(b"".join(frames), dtype=np.uint8)
    best = float("inf")
    matched = 0
    for _ in range(args.repeat):
        start = time.perf_counter()
        matched = 0
        for lo in range(0, len(frames), args.batch):
            hi = lo + args.batch
            matched += int(prog.match_batch(data, offsets[lo:hi], lengths[lo:hi]).sum())
        best = min(best, time.perf_counter() - start)
    print(f"match_batch: {len(frames)} frames, batch {args.batch}, {matched} matched, "
          f"{len(frames) / best / 1e6:.2f} M frames/s")
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        best_td = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run([tcpdump, "-r", args.pcap, "-w", "/dev/null", "--", args.expression],
                           check=True, capture_output=True)
            best_td = min(best_td, time.perf_counter() - start)
        print(f"tcpdump -w /dev/null: {len(frames) / best_td / 1e6:.2f} M frames/s "
              f"(ratio match_batch/tcpdump {best_td / best:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
