"""The compiled classifier: rules to per-field bit-vector tables evaluated on whole batches.

    classifier = compile_rules(text, path, linktype=1)     # raises RuleError, located
    result = classifier.classify(data, offsets, lengths, iif="ingress", now=now_ns)
    result.verdict[i]  -> index into VERDICTS ("accept", "drop", "reject")
    result.line[i]     -> the deciding rule's line (0: the policy)

``flatten`` turns chains into entries, ``tables`` builds the per-field rows, ``fields`` reads
the batch in place (``fast``: the fixed-offset path for untagged IPv4/IPv6 frames),
``classifier`` resolves first matches; ``flowmemo`` remembers first matches by the header bytes
the rules see (packets of known flows skip the tables), ``cache`` by table rows; ``state``
holds limit buckets and the log rate limit; ``reject`` builds TCP RST / ICMP unreachable
replies.
"""

from __future__ import annotations

from filter.classify.classifier import VERDICTS, Classifier, Result
from filter.classify.flatten import FlattenError
from filter.classify.state import Limits, LogLimiter
from filter.rules import PcapMatch, RuleError, Ruleset, parse
from filter.rules.pcap import check_expression


def compile_rules(text: str, path: str = "<rules>", linktype: int = 1, limits=None,
                  ct_state=None) -> Classifier:
    """Parse and compile ``text``; every problem is a located ``RuleError``."""
    return compile_ruleset(parse(text, path), linktype, limits, ct_state)


def compile_ruleset(ruleset: Ruleset, linktype: int = 1, limits=None,
                    ct_state=None) -> Classifier:
    try:
        return Classifier(ruleset, linktype, limits, ct_state)
    except FlattenError as exc:
        raise RuleError(str(exc), 1, 1).located(ruleset.path, ruleset.text) from None
    except ValueError as exc:             # a pcap match this link type cannot have
        line, message = 1, str(exc)
        for rule in (r for c in ruleset.chains.values() for r in c.rules):
            for m in rule.matches:
                problem = check_expression(m.expression, linktype) \
                    if isinstance(m, PcapMatch) else None
                if problem is not None:
                    line, message = rule.line, problem[0]
                    break
            else:
                continue
            break
        raise RuleError(f"pcap match on link type {linktype}: {message}", line, 1).located(
            ruleset.path, ruleset.text) from None


__all__ = ["VERDICTS", "Classifier", "FlattenError", "Limits", "LogLimiter", "Result",
           "compile_rules", "compile_ruleset"]
