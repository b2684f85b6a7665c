"""pcap-filter expressions (tcpdump/libpcap syntax) compiled for per-frame and batch matching.

    from filter.pcapexpr import compile_filter, FilterSyntaxError, LINKTYPE_ETHERNET
    prog = compile_filter("tcp port 80 and not host 10.0.0.1", linktype=LINKTYPE_ETHERNET)
    prog.matches(frame) -> bool                              # reference evaluator
    prog.match_batch(data, offsets, lengths) -> bool array   # numpy, frames read in place
    prog.expression, prog.linktype

Link types: 1 (EN10MB), 101 (RAW: IPv4 or IPv6 by the version nibble), 228 (IPV4),
229 (IPV6), 113 (LINUX_SLL); any other raises ValueError. A refused expression raises
FilterSyntaxError (a ValueError) with `.column` (0-based), a one-line str() and
`.caret(expr)`.

Semantics are libpcap 1.10's (tcpdump 4.99.3 is the oracle in tests/test_pcapexpr_*.py):
lexing as scanner.l (so `80-90` is one token, `len-1` is a name), grammar.y's precedence
and qualifier inheritance (`tcp port 22 or 80`), gencode.c's code for each primitive
(`vlan`/`mpls` shift later offsets; IPv4 port and `tcp[...]` tests only on first fragments;
`ip6 proto N` also looks one fragment header deep, `tcp port` does not; in `a OP b` only
a's protocol checks are kept, as gen_arth does), and BPF's run-time rules (32-bit unsigned
arithmetic; a reached load past the frame's end, or a division by zero, rejects the frame).
The predicate then becomes a decision graph reduced as libpcap's optimizer reduces it
(decision.py), so the set of loads a frame reaches, hence the verdict on truncated frames,
follows tcpdump's; an expression that can match nothing is refused ("expression rejects
all packets"), as libpcap refuses it.

Not supported (a clear FilterSyntaxError says so): host names and `gateway` (no resolver in
a sandbox: "host names are not supported; use an address"), `protochain`, DECnet,
AppleTalk, IPX, ISO/IS-IS sub-protocols, `llc`, PPPoE, Geneve, VXLAN, 802.11, ATM, SS7,
pf fields, `inbound`/`outbound`/`ifindex`. Port and protocol names come from a built-in
copy of Debian's /etc/services and /etc/protocols (the common names only).
Known divergence: libpcap's and/or "pullup" passes can move a protocol test ahead of an
earlier `proto[expr]` load; on frames too short for that load tcpdump may then accept a
frame this rejects (or the reverse). Only truncated frames are affected.
"""

from filter.pcapexpr.errors import FilterSyntaxError
from filter.pcapexpr.linktypes import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
)
from filter.pcapexpr.program import FilterProgram, compile_filter

__all__ = [
    "FilterProgram",
    "FilterSyntaxError",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_RAW",
    "compile_filter",
]
