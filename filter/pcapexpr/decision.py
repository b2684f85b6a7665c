"""The predicate as libpcap runs it: a decision graph of tests, reduced as its optimizer does.

A predicate tree becomes a DAG of `Test` nodes (one relation each, a `yes` and a `no`
successor, leaves True/False), the shape of a BPF program. Two of libpcap's optimizer
passes (optimize.c) matter to which frames match, because a removed test no longer loads
bytes, and a load past the end of a frame rejects it:

- jump threading along edge dominators (`opt_j`/`fold_edge`): if every path to an edge has
  already decided the child's test (the same relation, or `x == k` true with a different
  k), the edge skips the child;
- a test whose two successors are the same is removed (and its loads with it).

So `not tcp or tcp` accepts every frame (even one too short to hold an ethertype), and
`ip and arp` rejects every frame; libpcap refuses the latter ("expression rejects all
packets"), and so does compile_filter.
"""

from __future__ import annotations

from filter.pcapexpr.syntax import And, Compare, Const, Not, Or, Pred, Truth

Target = "Test | bool"
MAX_PASSES = 20


class Test:
    """One relation and where to go when it holds (`yes`) or not (`no`)."""

    __slots__ = ("relation", "yes", "no")

    def __init__(self, relation: Compare, yes, no) -> None:
        self.relation = relation
        self.yes = yes
        self.no = no

    def __repr__(self) -> str:
        return f"Test({self.relation}, yes={self.yes!r}, no={self.no!r})"


def _constant(c: Compare) -> bool | None:
    if isinstance(c.left, Const) and isinstance(c.right, Const):
        a, b = c.left.k, c.right.k
        return {"=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b,
                "<=": a <= b}[c.op]
    return None


class _Builder:
    def __init__(self) -> None:
        self.interned: dict[tuple, Test] = {}

    def make(self, relation: Compare, yes, no):
        if yes is no:
            return yes
        fixed = _constant(relation)
        if fixed is not None:
            return yes if fixed else no
        key = (relation, id(yes), id(no))
        node = self.interned.get(key)
        if node is None:
            node = self.interned[key] = Test(relation, yes, no)
        return node

    def build(self, p: Pred, yes, no):
        if isinstance(p, Truth):
            return yes if p.value else no
        if isinstance(p, Compare):
            return self.make(p, yes, no)
        if isinstance(p, And):
            return self.build(p.left, self.build(p.right, yes, no), no)
        if isinstance(p, Or):
            return self.build(p.left, yes, self.build(p.right, yes, no))
        assert isinstance(p, Not)
        return self.build(p.operand, no, yes)


def topological(root) -> list[Test]:
    """Test nodes reachable from root, every node before its successors."""
    order: list[Test] = []
    seen: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, Test):
            continue
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.append((node.no, False))
        stack.append((node.yes, False))
    order.reverse()
    return order


def _decided(relation: Compare, facts: dict[Compare, bool]) -> bool | None:
    known = facts.get(relation)
    if known is not None:
        return known
    if relation.op == "=" and isinstance(relation.right, Const):
        for fact, holds in facts.items():
            if (holds and fact.op == "=" and fact.left == relation.left
                    and isinstance(fact.right, Const) and fact.right.k != relation.right.k):
                return False
    return None


def _thread_jumps(root) -> bool:
    """One pass of jump threading; True if any edge moved."""
    changed = False
    facts_in: dict[int, dict[Compare, bool]] = {}
    for node in topological(root):
        here = facts_in.get(id(node), {})
        for branch in (True, False):
            edge = dict(here)
            edge[node.relation] = branch
            child = node.yes if branch else node.no
            while isinstance(child, Test):
                outcome = _decided(child.relation, edge)
                if outcome is None:
                    break
                child = child.yes if outcome else child.no
                changed = True
            if branch:
                node.yes = child
            else:
                node.no = child
            if isinstance(child, Test):
                prior = facts_in.get(id(child))
                facts_in[id(child)] = edge if prior is None else {
                    k: v for k, v in prior.items() if edge.get(k) is v}
    return changed


def _skip_same(root):
    """Remove tests whose successors coincide; returns the new root."""
    replaced: dict[int, object] = {}

    def resolve(target):
        return replaced.get(id(target), target) if isinstance(target, Test) else target
    for node in reversed(topological(root)):
        node.yes = resolve(node.yes)
        node.no = resolve(node.no)
        replaced[id(node)] = node.yes if node.yes is node.no else node
    return resolve(root)


def decision_graph(p: Pred) -> tuple[object, Compare | None]:
    """(root, prologue) of p's reduced decision graph; root is a Test, or True/False.

    When the first test is removed but the program is not constant, libpcap keeps that
    block's loads (only its jump goes): the prologue is that relation, whose loads still
    reject a frame too short for them.
    """
    first = _Builder().build(p, True, False)
    root = first
    for _ in range(MAX_PASSES):
        root = _skip_same(root)
        if not _thread_jumps(root):
            break
    root = _skip_same(root)
    if isinstance(root, Test) and isinstance(first, Test) and root is not first:
        return root, first.relation
    return root, None
