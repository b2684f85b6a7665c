"""The rule language: nftables in spirit, one file per rule set (full guide: docs/rules.md).

Grammar (``{x}`` = zero or more, ``[x]`` = optional; rules and items end at a newline or ``;``)::

    file      = { decl }
    decl      = "chain" NAME "{" { chainitem } "}"
              | "set" NAME "{" "type" TYPE {"." TYPE} [ "flags" WORDS ] [ "elements" "=" elems ] "}"
              | "map" NAME "{" "type" TYPE {"." TYPE} ":" "verdict" [ "elements" "=" velems ] "}"
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
              | "snat" "to" ADDR[:PORT[-PORT]] | "dnat" "to" ADDR[:PORT[-PORT]]
              | "masquerade" ["to" ":"PORT[-PORT]]
    verdict   = "accept" | "drop" | "reject" ["with" ("tcp reset" | "icmp" TYPE | "icmpv6" TYPE)]
              | "jump" CHAIN | "goto" CHAIN | "return" | "continue"

Selectors (see ``fields``): iif, ether type, ip saddr/daddr/protocol/ttl, ip6 saddr/daddr/
nexthdr/hoplimit, meta l4proto/length/mark/protocol, tcp|udp|sctp|th sport/dport, tcp flags,
icmp type/code, icmpv6 type/code. ``tcp flags syn|ack`` matches when any listed flag is set;
``tcp flags == syn`` and ``tcp flags & (syn|ack) == syn`` compare exactly.

Semantics: the base chain's rules are tried in order; the first rule whose matches all hold
applies its statements then its verdict (a rule without one falls through, ``continue`` too).
``jump`` enters a chain and comes back after it; ``goto`` enters it and does not come back;
``return`` (or the end of a non-base chain) goes back to the rule after the last ``jump``;
the end of the base chain, or ``return`` there, applies the policy. Matches of a rule are
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
