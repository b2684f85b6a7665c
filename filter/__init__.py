"""capnet's packet filter: rule language, compiled classifier and the ``filter:Firewall``
component (with pcap-filter expressions, connection tracking and NAT from its subpackages).

Public API:
- ``Firewall`` — the component (``program = "filter:Firewall"``); see ``filter.firewall``;
- ``parse(text, path) -> Ruleset``, ``RuleError`` — the rule language (``filter.rules``);
- ``compile_rules(text, path, linktype=1) -> Classifier``; ``Classifier.classify(data,
  offsets, lengths, iif, now) -> Result`` — the vectorised classifier (``filter.classify``);
- ``Reference(ruleset).decide(frame, iif, now) -> Decision`` — the reference evaluator.
"""

from __future__ import annotations

from filter.classify import VERDICTS, Classifier, Result, compile_rules
from filter.reference import Decision, Reference
from filter.rules import RuleError, Ruleset, parse

__all__ = ["VERDICTS", "Classifier", "Decision", "Firewall", "Reference", "Result",
           "RuleError", "Ruleset", "compile_rules", "parse"]


def __getattr__(name: str):
    if name == "Firewall":        # imported on use: it pulls in the harness and conntrack
        from filter.firewall import Firewall
        return Firewall
    raise AttributeError(f"module 'filter' has no attribute {name!r}")
