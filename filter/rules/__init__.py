"""The rule language: nftables in spirit, one file per rule set (full guide: docs/rules.md).

Grammar (``{x}`` = zero or more, ``[x]`` = optional; rules and items end at a newline or ``;``)::

    file      = { decl }
    decl      = "chain" NAME "{" { chainitem } "}"
              | "set" NAME "{" "type" TYPE {"." TYPE} [ "flags" WORDS ] [ "elements" "=" elems ] "}"
              | "map" NAME "{" "type" TYPE {"." TYPE} ":" "verdict" [ "elements" "=" velems ] "}"
              | "map" NAME "{" "type" TYPE {"." TYPE} ":" DATATYPE [ "flags" WORDS ]
                      [ "elements" "=" "{" element ":" ADDRESS ["." PORT] {"," ...} "}" ] "}"
              | "table" WORDS "{" { decl } "}"                # optional wrapper, ignored
    chainitem = "policy" ("accept" | "drop")                   # makes the base chain (exactly one)
              | "type" "filter" ...                            # nftables' hook line, ignored
              | rule
    rule      = { match | statement } [ verdict ]
    match     = key [op] rhs | key "&" VALUE ("=="|"!=") VALUE | key "vmap" (velems | "@" NAME)
              | ("iif" | "iifname") ["!="] (NAME | "{" NAME {"," NAME} "}")
              | "ct" "state" ["!="] STATE {"," STATE}
              | "pcap" STRING
              | "limit" "rate" ["over"] RATE ["burst" N ("packets"|"bytes")] ["per" key]
    key       = SELECTOR {"." SELECTOR}                        # e.g. ip saddr . tcp dport
    op        = "==" | "!=" | "<" | "<=" | ">" | ">="
    rhs       = value {"." value} | "{" value {"." value} {"," ...} "}" | "@" NAME
    value     = NUMBER | NAME | ADDRESS | ADDRESS/PREFIX | LOW-HIGH | FLAG{"|"FLAG}
    statement = "counter" | "log" ["prefix" STRING] | ("mark" | "meta" "mark") "set" N
              | ("snat" | "dnat") ["ip" | "ip6"] "to" TARGET
              | ("snat" | "dnat") ["ip" | "ip6"] "to" key "map" "{" value ":" TARGET {"," ...} "}"
              | ("snat" | "dnat") ["ip" | "ip6"] "to" key "map" "@" NAME      # a data map
              | "masquerade" ["ip" | "ip6"] ["to" ":"PORT[-PORT]]
    DATATYPE  = ("ipv4_addr" | "ipv6_addr") ["." "inet_service"]       # nftables' names
    TARGET    = ADDR4[-ADDR4][:PORT[-PORT]] | ADDR6[-ADDR6] | "[" ADDR6[-ADDR6] "]"[:PORT[-PORT]]
    verdict   = "accept" | "drop" | "reject" ["with" ("tcp reset" | "icmp" TYPE | "icmpv6" TYPE)]
              | "jump" CHAIN | "goto" CHAIN | "return" | "continue"

Selectors (see ``fields``): iif, ether type, vlan id/pcp/type, ip saddr/daddr/protocol/ttl,
ip6 saddr/daddr/nexthdr/hoplimit, meta l4proto/nfproto/length/mark/protocol,
tcp|udp|sctp|th sport/dport, tcp flags,
icmp type/code, icmpv6 type/code. ``tcp flags syn|ack`` matches when any listed flag is set;
``tcp flags == syn`` and ``tcp flags & (syn|ack) == syn`` compare exactly. Up to two VLAN
tags are seen through (``ether type`` stays the outer type, ``meta protocol`` is the inner one);
link types Ethernet, raw IP, Linux cooked (113, 276) and BSD loopback are all read.

Semantics: the base chain's rules are tried in order; the first rule whose matches all hold
applies its statements then its verdict (a rule without one falls through, ``continue`` too).
``jump`` enters a chain and comes back after it; ``goto`` enters it and does not come back;
``return`` (or the end of a non-base chain) goes back to the rule after the last ``jump``;
the end of the base chain, or ``return`` there, applies the policy. A NAT statement holds
for one address family (its address's, or the ``ip``/``ip6`` word's; ``masquerade``: IPv4) and
its rule implies ``meta nfproto`` of that family. A NAT data map (``dnat to tcp dport map
{ 80 : 10.0.0.80 }``) picks its target by the packet's key, first element first; its rule
implies the key is in the map. A named data map (``dnat to tcp dport map @fwd``) is read
as it is when a connection starts: ``set add/delete`` changes where new connections go. A
verdict map in a NAT statement, or a data map after ``vmap``, is an error. Matches of a rule are
evaluated before its statements; ``limit`` is a match (over the rate, the rule does not match).
"""

from filter.rules.ast import (
    Chain,
    Counter,
    CtMatch,
    IifMatch,
    Limit,
    Log,
    MarkSet,
    Match,
    NamedSet,
    Nat,
    PcapMatch,
    Rule,
    Ruleset,
    Verdict,
    VMap,
)
from filter.rules.errors import RuleError
from filter.rules.parser import parse, parse_elements
from filter.rules.sets import add_elements, delete_elements

__all__ = ["Chain", "Counter", "CtMatch", "IifMatch", "Limit", "Log", "MarkSet", "Match",
           "NamedSet", "Nat", "PcapMatch", "Rule", "RuleError", "Ruleset", "Verdict", "VMap",
           "add_elements", "delete_elements", "parse", "parse_elements"]
