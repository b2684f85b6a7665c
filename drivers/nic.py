"""NICs over a frame descriptor: ``FrameNic`` serves ``drivers.tap:Tap`` and
``drivers.afpacket:AfPacket`` alike — one frame per read, one frame per write.

Devices: one of the subclass's ``DEVICE`` kind (the harness creates or binds it, in a network
namespace if asked, and grants its non-blocking descriptor). Queues: exactly one it produces (RX: frames the kernel
sends, read straight into buffers of the region it originates — one copy, by the kernel) and at
most one it consumes (TX: frames to hand to the kernel, written from the buffers in place).
A frame the kernel will not take right now is dropped (``tx_busy``); a frame larger than the
region's buffers is truncated by the read and counted (``rx_truncated``).
"""

from __future__ import annotations

import os

import numpy as np

from harness.origin import Origin

BATCH = 32
TURN_FRAMES = 256          # frames read per entry point, so control stays responsive


class FrameNic(Origin):
    DEVICE = ""

    def init(self) -> None:
        super().init()
        found = [d for d in self.devices if d.kind == self.DEVICE]
        if len(found) != 1:
            raise ValueError(f"{self.name}: needs exactly one {self.DEVICE} device, "
                             f"has {len(found)}")
        self.fd = found[0].fd
        self.tx = next((q for q in self.queues.values() if q.role == "consumer"), None)
        self.frames = memoryview(self.out.data.mem)
        self.size = self.out.ledger.buffer_size

    def notified(self, channel) -> None:
        if channel.kind == "device":
            self.produce()
        elif self.tx is not None and channel == self.tx.name:
            self._transmit()
        else:
            super().notified(channel)        # RX buffers came back

    def produce(self) -> None:
        """Read what the kernel has sent into RX buffers and pass the frames on."""
        for _ in range(TURN_FRAMES // BATCH):
            buffers = self.pool.take(min(BATCH, self.out.space()))
            filled = 0
            for offset in buffers["offset"].tolist():
                try:
                    n = os.readv(self.fd, [self.frames[offset:offset + self.size]])
                except BlockingIOError:
                    break
                buffers["length"][filled] = n
                filled += 1
            if filled:
                buffers["timestamp"][:filled] = self.now()
                sent = self.out.send(buffers[:filled])
                self.count("entered", filled)      # from the outside world
                self.count("in", filled)
                self.count("out", sent)
                if sent < filled:
                    self.drop("rx_full", filled - sent)
            self.pool.give(buffers[filled:])
            if filled < len(buffers) or not len(buffers):
                return

    def _transmit(self) -> None:
        batch = self.tx.receive()
        if not len(batch):
            return
        self.count("in", len(batch))
        data = self.tx.data.array
        written = 0
        for offset, length in zip(batch["offset"].astype(np.int64).tolist(),
                                  batch["length"].astype(np.int64).tolist(), strict=True):
            try:
                os.write(self.fd, data[offset:offset + length])
                written += 1
            except BlockingIOError:
                self.drop("tx_busy")
            except OSError:
                self.drop("tx_error")
        self.count("out", written)
        self.count("left", written)            # to the outside world
        self.tx.release(batch)
