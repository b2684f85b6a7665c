"""A pass-through stage: frames from its input queue go to its output queue, zero-copy.

Only descriptors move; frames stay where their origin wrote them. Buffers the output's consumer
returns go back up the input queue they came from (a forwarder sits between two queues over the
same data region). A frame is taken off an input ring only when the output ring has room, so a
slow consumer pushes back instead of causing drops. ``drop_every = N`` drops every N-th frame
(counted as ``dropped.sampled``) to exercise conservation accounting; ``dropped = "QUEUE"``
sends what it drops down that queue (to a capture of dropped frames) instead of straight back.
When the output is a diode (``shmring.diode``), frames are copied into it and the input
buffers go back at once.
"""

from __future__ import annotations

import numpy as np

from harness import Component
from shmring.ring import SLOT


class Forward(Component):
    def init(self) -> None:
        self.dropped = self.queues.get(self.config.get("dropped", ""))
        outs = [q for q in self.queues.values() if q.role == "producer" and q is not self.dropped]
        self.inputs = [q for q in self.queues.values() if q.role == "consumer"]
        if len(outs) != 1 or len(self.inputs) != 1:
            raise ValueError(f"{self.name}: needs exactly one input queue and one output queue")
        self.out = outs[0]
        self.copying = self.out.kind == "diode"     # frames are copied into a diode
        if not self.copying and self.inputs[0].data.name != self.out.data.name:
            raise ValueError(f"{self.name}: input and output queues must share one data region")
        self.drop_every = int(self.config.get("drop_every", 0))
        self.seen = 0

    def notified(self, channel) -> None:
        if channel == self.out.name:
            self._return_buffers(self.out)
        elif self.dropped is not None and channel == self.dropped.name:
            self._return_buffers(self.dropped)
        self._forward()

    def _forward(self) -> None:
        for q in self.inputs:
            # copying into a diode frees each buffer at once; what the free ring has no room
            # for waits in the queue end (a deferred release), so an origin that has stopped
            # taking returns back cannot strand frames on the input ring
            room = self.out.space()
            if self.dropped is not None:        # what is dropped must fit down there too
                room = min(room, self.dropped.space())
            if not (self.drop_every or self.copying):
                self._pass(q, room)
                continue
            batch = q.receive(room)
            if not len(batch):
                continue
            self.count("in", len(batch))
            if self.drop_every:
                index = np.arange(self.seen + 1, self.seen + len(batch) + 1)
                dropped = index % self.drop_every == 0
                self.seen += len(batch)
                if dropped.any():
                    self.drop("sampled", int(dropped.sum()))
                    self._discard(q, batch[dropped])
                    batch = batch[~dropped]
            if self.copying:
                sent = self.out.send_frames(q.data.array, batch)
                q.release(batch)            # copied: the buffers go straight back upstream
                self.count("out", sent)
                continue
            sent = self.out.send(batch)
            self.count("out", sent)
            if sent < len(batch):         # cannot happen: we took no more than the room there was
                self.drop("output_full", len(batch) - sent)
                q.release(batch[sent:])

    def _pass(self, q, room: int) -> None:
        """The usual pass-through: descriptors move as raw bytes, no numpy array in between."""
        raw = q.receive_bytes(room)
        if not raw:
            return
        n = len(raw) // SLOT
        sent = self.out.send_bytes(raw)
        self.count("in", n)
        self.count("out", sent)
        if sent < n:                # cannot happen: we took no more than the room there was
            self.drop("output_full", n - sent)
            q.release_bytes(raw[sent * SLOT:])

    def _discard(self, q, batch) -> None:
        """Frames dropped: down the dropped queue if there is one (and room), else back."""
        sent = self.dropped.send(batch) if self.dropped is not None else 0
        if sent < len(batch):
            q.release(batch[sent:])

    def _return_buffers(self, out) -> None:
        returned = out.reclaim_bytes()
        if returned:
            self.inputs[0].release_bytes(returned)
