"""Origins: components that fill buffers of a region they own and send them downstream.

An ``Origin`` has exactly one queue it produces on. Buffers its consumer returns go back into
its pool and ``produce()`` runs again; ``produce()`` also runs whenever a timer fires, so a
subclass paces itself with ``set_timer`` and only writes ``produce()``.
"""

from __future__ import annotations

from harness.runtime import Component


class Origin(Component):
    def init(self) -> None:
        outs = [q for q in self.queues.values() if q.role == "producer"]
        if len(outs) != 1:
            raise ValueError(f"{self.name}: needs exactly one queue it produces, has {len(outs)}")
        self.out = outs[0]
        self.pool = self.pools[self.out.data.name]

    def produce(self) -> None:
        """Fill and send what is due now."""

    def notified(self, channel) -> None:
        if channel == self.out.name:
            self.pool.give(self.out.reclaim())
            self.produce()

    def timeout(self, token) -> None:
        self.produce()
