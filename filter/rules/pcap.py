"""The ``pcap "EXPR"`` match: pcap-filter expressions compiled by ``filter.pcapexpr``."""

from __future__ import annotations

try:
    from filter.pcapexpr import FilterSyntaxError, compile_filter
except ImportError:             # the expression compiler is not installed in this tree
    compile_filter = None
    FilterSyntaxError = ValueError


def check_expression(expression: str, linktype: int = 1) -> tuple[str, int] | None:
    """None if ``expression`` compiles, else (message, 0-based column of the fault)."""
    if compile_filter is None:
        return ("pcap-filter expressions are unavailable (filter.pcapexpr is missing)", 0)
    try:
        compile_filter(expression, linktype)
    except FilterSyntaxError as exc:
        return (getattr(exc, "message", str(exc)), int(getattr(exc, "column", 0) or 0))
    except Exception as exc:      # the compiler must never take the rule parser down
        return (f"cannot compile: {exc}", 0)
    return None


def compile_expression(expression: str, linktype: int = 1):
    """The compiled program (``matches(frame)``, ``match_batch(data, offsets, lengths)``)."""
    if compile_filter is None:
        raise RuntimeError("pcap-filter expressions are unavailable (filter.pcapexpr is missing)")
    return compile_filter(expression, linktype)
