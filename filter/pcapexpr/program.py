"""compile_filter and the compiled program object."""

from dataclasses import dataclass, field

import numpy as np

from filter.pcapexpr.decision import decision_graph
from filter.pcapexpr.errors import FilterSyntaxError
from filter.pcapexpr.linktypes import LINKTYPE_ETHERNET, layout_for
from filter.pcapexpr.parser import parse
from filter.pcapexpr.reference import ReferenceEvaluator
from filter.pcapexpr.syntax import Pred
from filter.pcapexpr.vectorized import BatchEvaluator


@dataclass(frozen=True)
class FilterProgram:
    """A compiled pcap-filter expression for one link type."""

    expression: str
    linktype: int
    predicate: Pred = field(repr=False)
    _reference: ReferenceEvaluator = field(repr=False, compare=False)
    _batch: BatchEvaluator = field(repr=False, compare=False)

    def matches(self, frame: bytes | bytearray | memoryview) -> bool:
        """Reference evaluator: does this one frame match?"""
        return self._reference(frame)

    def match_batch(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Vectorised evaluator: frames data[offsets[i]:offsets[i]+lengths[i]], read in place."""
        return self._batch.run(data, offsets, lengths)


def compile_filter(expression: str, linktype: int = LINKTYPE_ETHERNET) -> FilterProgram:
    """Compile an expression; FilterSyntaxError (a ValueError) if libpcap would reject it.

    An unknown linktype raises a plain ValueError.
    """
    layout = layout_for(linktype)
    if not isinstance(expression, str):
        raise FilterSyntaxError("the expression must be a string", 0)
    try:
        predicate = parse(expression, layout)
        graph, prologue = decision_graph(predicate)
    except RecursionError:
        raise FilterSyntaxError("expression is nested too deeply", 0) from None
    if graph is False:
        raise FilterSyntaxError("expression rejects all packets", 0)
    return FilterProgram(expression, layout.linktype, predicate, ReferenceEvaluator(graph, prologue),
                         BatchEvaluator(graph, prologue))
