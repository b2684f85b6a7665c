"""``filter:Firewall``: the packet filter component.

Config:
- ``rules = "FILE"``: a rule file (docs/rules.md), which must also be one of the component's
  ``file`` devices (mode ``r``): the harness opens it and grants the descriptor, and the
  firewall reads it at init; or ``filter = "EXPR"``: a pcap-filter expression (frames it
  matches are accepted, the rest dropped). Exactly one of the two.
- ``linktype`` (default 1, Ethernet; 101/228/229 raw IP, 113/276 Linux cooked, 0/108 BSD
  loopback), ``routes = { IN = "OUT", ... }`` (which output queue each
  input queue feeds; default: the one output that is not a reject queue), ``reject = "QUEUE"``
  or ``{ IN = "QUEUE" }`` (where replies to frames rejected from an input go; optional: with
  none, rejected frames are dropped and counted ``reject_unsent``), ``masquerade_address``
  (the IPv4 address ``masquerade`` uses), ``masquerade_address6`` (``masquerade ip6``'s),
  ``ct_max_entries`` (65536), ``ct_per_source`` (0: none),
  ``dropped = "QUEUE"`` (what is dropped or rejected goes down that output, zero-copy, e.g. to a
  capture of dropped frames — still counted as dropped here; one input only).

Queues: every queue this component consumes is an input (its name is the ``iif`` the rules
see); every queue it produces is an output. An input and its output share one data region:
accepted frames move on zero-copy (only descriptors), dropped ones go straight back to their
owner, buffers returned by the output's consumer go back up the input. A reject queue's region
must be one this component originates (it writes the replies there).

Counters: ``in``, ``out``, ``dropped.rule:N`` (dropped or rejected by the rule on line N),
``dropped.policy``, ``rejects_sent`` / ``reject_unsent``; a reply is a frame this component
makes, counted ``in`` and ``created`` (then ``out``), as the harness's accounting expects.
``stats()`` adds per-rule hits and ``counter`` statement totals. Conservation: in = out +
dropped.

Protected calls (``capnet filter load/set`` or ``capnet call``; ``msg["op"]``):
- ``load``: ``text`` (or chunks: ``part``/``parts``/``token``) — parse and compile, then swap
  between batches; connection state is kept, limits restart. A bad rule set leaves the old
  one in force and returns the located error.
- ``set``: ``action`` add|delete, ``set`` NAME, ``elements`` text — recompiles the same way.
- ``rules``: the rule set in force and its counters.
"""

from __future__ import annotations

import ipaddress
import os

import numpy as np

from filter.classify import VERDICTS, Limits, LogLimiter, Result, compile_ruleset
from filter.classify.flatten import uses_connections
from filter.classify.reject import build_reject
from filter.reference import packet_fields
from filter.rules import RuleError, add_elements, delete_elements, parse
from filter.rules.pcap import check_expression
from harness import Component

try:
    from filter.classify.conn import Connections
except ImportError as exc:        # conntrack/NAT missing from this tree: stateless rules only
    Connections, CONN_MISSING = None, str(exc)

ACCEPT, DROP, REJECT = (VERDICTS.index(v) for v in ("accept", "drop", "reject"))
MAX_RULES_BYTES = 16 << 20
EXPIRE_EVERY_NS = 1_000_000_000
MAX_PENDING_LOADS = 4          # chunked loads in progress at once
MAX_PARTS = MAX_RULES_BYTES // 1024


def filter_rules(expression: str) -> str:
    """The rule set of ``filter = EXPR``: accept what the expression matches."""
    return f'chain filter {{\n  policy drop\n  pcap "{expression}" accept\n}}\n'


def _read_fd(fd: int) -> str:
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, 1 << 16, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        if offset > MAX_RULES_BYTES:
            raise ValueError(f"rule file larger than {MAX_RULES_BYTES} bytes")
    return b"".join(chunks).decode("utf-8", errors="replace")


class Firewall(Component):
    @classmethod
    def preflight(cls, config: dict, files: dict) -> list[str]:
        """Complete messages for everything wrong with ``config`` (rule errors with carets)."""
        rules, expression = config.get("rules"), config.get("filter")
        if (rules is None) == (expression is None):
            return ["give exactly one of 'rules' (a rule file) and 'filter' (a pcap-filter "
                    "expression)"]
        try:
            linktype = int(config.get("linktype", 1))
        except (TypeError, ValueError):
            return [f"linktype must be a whole number, not {config.get('linktype')!r}"]
        if expression is not None:
            return _check_expression(str(expression), linktype)
        if str(rules) not in files:
            return [f"rules = {rules!r} must also be a file device of this component "
                    f"(devices = [{{ kind = \"file\", path = \"{rules}\", mode = \"r\" }}])"]
        try:
            text = files[str(rules)].read_text()
        except OSError as exc:
            return [f"{rules}: cannot read: {exc.strerror}"]
        try:
            ruleset = parse(text, str(rules))
            compile_ruleset(ruleset, linktype)
        except RuleError as exc:
            return [str(exc)]
        if uses_connections(ruleset) and Connections is None:
            return [f"{rules}: ct state and NAT are unavailable: {CONN_MISSING}"]
        problem = _masquerade_problem(ruleset, config)
        return [f"{rules}: {problem}"] if problem else []

    # -- set-up ---------------------------------------------------------------------------------
    def init(self) -> None:
        cfg = self.config
        self.linktype = int(cfg.get("linktype", 1))
        if cfg.get("filter") is not None:
            self.rules_path, text = "<filter>", filter_rules(str(cfg["filter"]))
        else:
            self.rules_path = str(cfg.get("rules", ""))
            device = [d for d in self.devices if d.kind == "file" and d.path == self.rules_path]
            device = device or [d for d in self.devices if d.kind == "file" and d.mode == "r"]
            if not device:
                raise ValueError(f"{self.name}: needs its rule file as a file device")
            text = _read_fd(device[0].fd)
        self.inputs = [q for q in self.queues.values() if q.role == "consumer"]
        outputs = {q.name: q for q in self.queues.values() if q.role == "producer"}
        self.dropped_to = self._dropped_queue(outputs)
        self.reject_to = self._reject_queues(outputs)
        self.route = self._routes(outputs)
        self.connections: Connections | None = None
        self.log_limit = LogLimiter(self.now())
        self.rule_hits: dict[int, int] = {}
        self.counted: dict[int, list[int]] = {}
        self.last_expire = self.now()
        self._chunks: dict = {}
        self._reasons: dict[int, str] = {}
        self._install(parse(text, self.rules_path))

    def _dropped_queue(self, outputs: dict):
        name = self.config.get("dropped")
        if name is None:
            return None
        q = outputs.pop(str(name), None)
        if q is None or len(self.inputs) != 1 or q.data.name != self.inputs[0].data.name:
            raise ValueError(f"{self.name}: dropped: '{name}' must be an output on the region of "
                             "the one input")
        return q

    def _reject_queues(self, outputs: dict) -> dict:
        spec = self.config.get("reject")
        if spec is None:
            return {}
        table = spec if isinstance(spec, dict) else {q.name: spec for q in self.inputs}
        out = {}
        for inp, name in table.items():
            q = outputs.get(name)
            if q is None or inp not in self.queues:
                raise ValueError(f"{self.name}: reject: no queues '{inp}' -> '{name}'")
            if q.data.name not in self.pools:
                raise ValueError(f"{self.name}: reject queue '{name}' must be on a region this "
                                 "component originates")
            out[inp] = q
        return out

    def _routes(self, outputs: dict) -> dict:
        spec = self.config.get("routes")
        forward = [n for n, q in outputs.items() if q not in self.reject_to.values()]
        if spec is None:
            if len(forward) != 1 or len(self.inputs) != 1:
                raise ValueError(f"{self.name}: with several inputs or outputs, say which "
                                 "output each input feeds: routes = { IN = \"OUT\" }")
            spec = {self.inputs[0].name: forward[0]}
        for inp, out in spec.items():
            if inp not in self.queues or out not in outputs:
                raise ValueError(f"{self.name}: routes: no queues '{inp}' -> '{out}'")
            if self.queues[inp].data.name != outputs[out].data.name:
                raise ValueError(f"{self.name}: routes: '{inp}' and '{out}' must share a region")
        if len(set(spec.values())) != len(spec):
            raise ValueError(f"{self.name}: routes: each output is fed by one input")
        return {i: outputs[o] for i, o in spec.items()}

    def _install(self, ruleset) -> None:
        """Compile ``ruleset`` and put it in force (raises, leaving the old one, on error)."""
        stateful = uses_connections(ruleset)
        if stateful and Connections is None:
            raise RuleError(f"ct state and NAT are unavailable: {CONN_MISSING}")
        problem = _masquerade_problem(ruleset, self.config)
        if problem:
            raise RuleError(problem)
        if stateful and self.connections is None:
            self.connections = Connections(
                self.linktype, int(self.config.get("ct_max_entries", 65536)),
                int(self.config.get("ct_per_source", 0)),
                self.config.get("masquerade_address"), self.config.get("masquerade_address6"))
        classifier = compile_ruleset(ruleset, self.linktype, Limits())
        self.ruleset, self.classifier, self.stateful = ruleset, classifier, stateful

    # -- traffic --------------------------------------------------------------------------------
    def notified(self, channel) -> None:
        for inp, out in self.route.items():
            if channel == out.name:            # buffers back from downstream: up to their owner
                self._give_back(self.queues[inp], out.reclaim())
        for q in self.reject_to.values():
            if channel == q.name:
                self.pools[q.data.name].give(q.reclaim())
        if self.dropped_to is not None and channel == self.dropped_to.name:
            self._give_back(self.inputs[0], self.dropped_to.reclaim())
        for q in self.inputs:
            self._filter(q)

    @staticmethod
    def _give_back(q, batch) -> None:
        """Return buffers to ``q``'s producer (what its free ring cannot take yet waits in the
        queue end, which settles it every turn)."""
        if len(batch):
            q.release(batch)

    def _filter(self, q) -> None:
        out = self.route.get(q.name)
        room = out.space() if out is not None else q.pending()
        if self.dropped_to is not None:         # what is dropped must fit down there too
            room = min(room, self.dropped_to.space())
        batch = q.receive(room)
        if not len(batch):
            return
        n = len(batch)
        self.count("in", n)
        data = q.data.array
        offsets = batch["offset"].astype(np.int64)
        lengths = batch["length"].astype(np.int64)
        now = self.now()
        res = self._classify(q.name, data, offsets, lengths, now)
        self._account(res, lengths)
        for p, line, prefix in res.logs:
            self._log(q.name, line, prefix, data, int(offsets[p]), int(lengths[p]), now)
        for p in np.flatnonzero(res.verdict == REJECT).tolist():
            self._reject(q, res, p, data, int(offsets[p]), int(lengths[p]))
        keep = res.verdict == ACCEPT
        sent = out.send(batch[keep]) if out is not None and keep.any() else 0
        self.count("out", sent)
        if sent < int(keep.sum()):          # cannot happen: we took no more than the room
            self.drop("output_full", int(keep.sum()) - sent)
            self._give_back(q, batch[keep][sent:])
        if not keep.all():
            thrown = batch[~keep]
            went = self.dropped_to.send(thrown) if self.dropped_to is not None else 0
            self._give_back(q, thrown[went:])

    def _classify(self, iif, data, offsets, lengths, now):
        if not self.stateful:
            return self.classifier.classify(data, offsets, lengths, iif, now)
        parts, start, n = [], 0, len(offsets)
        while start < n:
            offs, lens = offsets[start:], lengths[start:]
            infos, matches, states = self.connections.before(data, offs, lens, now)
            res = self.classifier.classify(data, offs, lens, iif, now, ct_states=states)
            done = self.connections.after(data, offs, lens, res, infos, matches, states, now)
            parts.append((start, res.head(done)))
            start += done
        if now - self.last_expire > EXPIRE_EVERY_NS:
            self.connections.expire(now)
            self.last_expire = now
        return _joined(parts, n)

    def _account(self, res, lengths) -> None:
        """Per-rule hits and drops by reason (``rule:LINE`` or ``policy``), one count per
        distinct line of the batch."""
        hits = np.bincount(res.line)
        for line in np.flatnonzero(hits).tolist():
            self.rule_hits[line] = self.rule_hits.get(line, 0) + int(hits[line])
        dropped = res.verdict != ACCEPT
        if dropped.any():
            lost = np.bincount(res.line[dropped])
            for line in np.flatnonzero(lost).tolist():
                self.drop(self._reason(line), int(lost[line]))
        if res.counted:
            for line, (packets, size) in res.counters.items():
                c = self.counted.setdefault(line, [0, 0])
                c[0] += packets
                c[1] += size

    def _reason(self, line: int) -> str:
        reason = self._reasons.get(line)
        if reason is None:
            reason = self._reasons[line] = f"rule:{line}" if line else "policy"
        return reason

    def _log(self, iif, line, prefix, data, off, length, now) -> None:
        if not self.log_limit.allow(now):
            self.count("log_suppressed")
            return
        f = packet_fields(bytes(data[off:off + length]), self.linktype, iif)
        parts = [f"{prefix}rule {line}: iif={iif} len={length}"]
        for key in ("ip.saddr", "ip.daddr", "ip6.saddr", "ip6.daddr", "meta.l4proto",
                    "th.sport", "th.dport", "icmp.type", "icmpv6.type"):
            if key in f:
                parts.append(f"{key}={_show(key, f[key])}")
        print(" ".join(parts), flush=True)

    def _reject(self, q, res, p, data, off, length) -> None:
        reply = build_reject(bytes(data[off:off + length]), self.linktype,
                             res.reject_with.get(p, ""))
        target = self.reject_to.get(q.name)
        if reply is None or target is None:
            self.count("reject_unsent")
            return
        pool = self.pools[target.data.name]
        buffers = pool.take(1)
        if not len(buffers) or len(reply) > target.ledger.buffer_size:
            pool.give(buffers)
            self.count("reject_unsent")
            return
        start = int(buffers["offset"][0])
        target.data.array[start:start + len(reply)] = np.frombuffer(reply, dtype=np.uint8)
        buffers["length"] = len(reply)
        buffers["timestamp"] = self.now()
        self.count("in")                   # a frame this component made (conservation)
        self.count("created")
        if target.send(buffers):
            self.count("out")
            self.count("rejects_sent")
        else:
            pool.give(buffers)
            self.drop("reject_queue_full")

    # -- control --------------------------------------------------------------------------------
    def protected(self, channel, msg) -> object:
        if not isinstance(msg, dict):
            return {"ok": False, "error": "a message is a map with an 'op' key"}
        op = msg.get("op")
        try:
            if op == "load":
                return self._load(msg)
            if op == "set":
                return self._set(msg)
            if op == "rules":
                return self._summary()
        except RuleError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown op {op!r} (valid: load, set, rules)"}

    def _load(self, msg: dict) -> dict:
        parts, part = int(msg.get("parts", 1)), int(msg.get("part", 0))
        token = str(msg.get("token", ""))
        if token not in self._chunks and len(self._chunks) >= MAX_PENDING_LOADS:
            self._chunks.pop(next(iter(self._chunks)))     # an abandoned load makes room
        if not 0 <= part < parts <= MAX_PARTS:
            return {"ok": False, "error": f"part {part} of {parts}: out of range"}
        chunks = self._chunks.setdefault(token, {})
        chunks[part] = str(msg.get("text", ""))
        if len(chunks) < parts:
            return {"ok": True, "received": len(chunks), "parts": parts}
        del self._chunks[token]
        text = "".join(chunks[i] for i in range(parts))
        path = str(msg.get("path", "<reload>"))
        self._install(parse(text, path))
        self.rules_path = path
        self.count("reloads")
        return {"ok": True, "rules": len(self.ruleset.rule_lines()),
                "entries": len(self.classifier.entries)}

    def _set(self, msg: dict) -> dict:
        action, name = msg.get("action"), str(msg.get("set", ""))
        text = str(msg.get("elements", ""))
        ruleset = parse(self.ruleset.text, self.ruleset.path)   # a copy to change
        for n, s in self.ruleset.sets.items():
            ruleset.sets[n].elements = list(s.elements)
            ruleset.sets[n].verdicts = list(s.verdicts)
        if action == "add":
            changed = add_elements(ruleset, name, text)
        elif action == "delete":
            changed = delete_elements(ruleset, name, text)
        else:
            return {"ok": False, "error": f"set action must be add or delete, not {action!r}"}
        self._install(ruleset)
        return {"ok": True, "changed": changed, "size": len(ruleset.sets[name].elements)}

    def _summary(self) -> dict:
        rules = [{"line": r.line, "rule": r.text, "hits": self.rule_hits.get(r.line, 0),
                  "counter": self.counted.get(r.line)}
                 for c in self.ruleset.chains.values() for r in c.rules]
        return {"ok": True, "path": self.rules_path, "policy": self.ruleset.policy,
                "policy_hits": self.rule_hits.get(0, 0), "rules": rules,
                "sets": {n: len(s.elements) for n, s in self.ruleset.sets.items()},
                "entries": len(self.classifier.entries)}

    def stats(self) -> dict:
        out = {"rules": self.rules_path, "entries": len(self.classifier.entries),
               "rule_hits": {str(k): v for k, v in self.rule_hits.items()},
               "counters": {str(k): v for k, v in self.counted.items()}}
        if self.connections is not None:
            out["conntrack"] = {"entries": len(self.connections.tracker),
                                "refused": self.connections.refused,
                                "translated": self.connections.translated}
        return out


def _joined(parts, n: int):
    """One Result from per-segment Results ((start, result) in order)."""
    if len(parts) == 1:
        return parts[0][1]
    out = Result(np.concatenate([r.verdict for _, r in parts]),
                 np.concatenate([r.line for _, r in parts]),
                 np.concatenate([r.mark for _, r in parts]))
    for start, r in parts:
        out.reject_with.update({p + start: w for p, w in r.reject_with.items()})
        out.counted += [(p + start, ln, b) for p, ln, b in r.counted]
        out.logs += [(p + start, line, x) for p, line, x in r.logs]
        out.nat += [(p + start, line, x) for p, line, x in r.nat]
    return out


def _show(key: str, value) -> str:
    if key in ("ip.saddr", "ip.daddr"):
        return str(ipaddress.IPv4Address(value))
    if key in ("ip6.saddr", "ip6.daddr"):
        return str(ipaddress.IPv6Address(value))
    return str(value)


def _masquerade_problem(ruleset, config) -> str:
    """Why the config cannot serve the rule set's ``masquerade`` statements ("" if it can):
    ``masquerade [ip]`` needs ``masquerade_address`` (IPv4), ``masquerade ip6`` needs
    ``masquerade_address6`` (IPv6)."""
    for c in ruleset.chains.values():
        for r in c.rules:
            for s in r.statements:
                if getattr(s, "kind", "") != "masquerade" or s.address is not None:
                    continue
                key = "masquerade_address" if s.family == 4 else "masquerade_address6"
                value = config.get(key)
                if not value:
                    return f"line {r.line}: masquerade needs the config key {key}"
                try:
                    ok = ipaddress.ip_address(str(value)).version == s.family
                except ValueError:
                    ok = False
                if not ok:
                    return f"config {key} = {value!r} is not an IPv{s.family} address"
    return ""


def _check_expression(expression: str, linktype: int) -> list[str]:
    if '"' in expression:
        return ['filter: a pcap-filter expression cannot contain \'"\'']
    problem = check_expression(expression, linktype)
    if problem is None:
        return []
    message, column = problem
    return [f"filter:1:{column + 1}: error: {message}\n{expression}\n{' ' * column}^"]
