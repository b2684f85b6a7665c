"""NICs over a frame descriptor: ``FrameNic`` serves ``drivers.tap:Tap`` and
``drivers.afpacket:AfPacket`` alike — one frame per read, one frame per write.

Devices: one of the subclass's ``DEVICE`` kind (the harness creates or binds it, in a network
namespace if asked, and grants its non-blocking descriptor). Queues: exactly one it produces (RX: frames the kernel
sends, read straight into buffers of the region it originates — one copy, by the kernel) and at
most one it consumes (TX: frames to hand to the kernel, written from the buffers in place).
A frame the kernel will not take right now is dropped (``tx_busy``); a frame larger than the
region's buffers is truncated by the read and counted (``rx_truncated``).

With no free RX buffer, the NIC stops watching its descriptor until buffers come back (or
``RX_PAUSE_NS`` passes): frames wait in the kernel's queue instead of waking the NIC to read
nothing. ``stats()`` reports how often that happened (``rx_pauses``). While it holds buffers
enough (``RETURNS_LOW_WATER``), it asks for no wake-up when RX buffers come back
(``want_returns``): it takes them at its next turn, and the stack is spared an eventfd write —
and the NIC a wake-up — per released batch (on this VM each costs tens of µs of CPU both sides).
"""

from __future__ import annotations

import os

import numpy as np

from harness.origin import Origin

BATCH = 64                 # most RX buffers taken for one round of reads
FIRST_TAKE = 1             # the fewest: a lone frame goes on before the read that finds none
TURN_FRAMES = 256          # frames read per entry point, so control stays responsive
RX_PAUSE, RX_PAUSE_NS = "rx_pause", 1_000_000    # longest pause of RX reads with no buffer
RETURNS_LOW_WATER = 2 * BATCH    # fewer free RX buffers than this: wake on returns


class FrameNic(Origin):
    DEVICE = ""

    def init(self) -> None:
        super().init()
        found = [d for d in self.devices if d.kind == self.DEVICE]
        if len(found) != 1:
            raise ValueError(f"{self.name}: needs exactly one {self.DEVICE} device, "
                             f"has {len(found)}")
        self.fd, self.device_name = found[0].fd, found[0].name
        self.rx_paused = False
        self.rx_pauses = 0
        self.rx_filled = BATCH // 2         # frames the last round of reads filled
        self.tx = next((q for q in self.queues.values() if q.role == "consumer"), None)
        self.frames = memoryview(self.out.data.mem)
        self.size = self.out.ledger.buffer_size
        self.tx_frames = memoryview(self.tx.data.mem) if self.tx is not None else None
        self.low_water = min(RETURNS_LOW_WATER, max(1, self.out.ledger.nbuf // 4))
        self._watch_returns()

    def _watch_returns(self) -> None:
        """Ask to be woken for returned RX buffers only when running short of them."""
        self.out.want_returns = self.rx_paused or len(self.pool) < self.low_water

    def notified(self, channel) -> None:
        if channel.kind == "device":
            self.produce()
            self._watch_returns()
        elif self.tx is not None and channel == self.tx.name:
            self._transmit()
        elif channel == self.out.name:       # RX buffers came back
            self.pool.give(self.out.reclaim())
            if self.rx_paused:               # reading waited for them: read what queued up
                self._resume_rx()
                self.produce()
            self._watch_returns()

    def _pause_rx(self) -> None:
        """No RX buffer or ring slot is free: stop being woken for the device until buffers
        come back (``notified`` on the RX queue). A readable descriptor is level-triggered, so
        otherwise every turn of the event loop wakes this NIC to read nothing — measured at
        ~12,000 empty wake-ups in a 3 s flood, each with the loop's 50 µs spin: most of a
        core. The kernel keeps queueing meanwhile (the interface's txqueuelen). A timer
        resumes reading after ``RX_PAUSE_NS`` at the latest (ring slots can free up before any
        buffer comes back)."""
        if not self.rx_paused:
            self.pause_device(self.device_name)
            self.rx_paused = True
            self.rx_pauses += 1
            self.out.want_returns = True
            self.set_timer(self.now() + RX_PAUSE_NS, RX_PAUSE)

    def timeout(self, token) -> None:
        if token == RX_PAUSE:
            self._resume_rx()
        super().timeout(token)
        self._watch_returns()

    def stats(self) -> dict:
        return {"rx_pauses": self.rx_pauses}

    def _resume_rx(self) -> None:
        if self.rx_paused:
            self.cancel_timer(RX_PAUSE)
            self.resume_device(self.device_name)
            self.rx_paused = False

    def _rx_buffers(self):
        """RX buffers for a round of reads: twice what the last round filled (at least
        ``FIRST_TAKE``, at most ``BATCH``), so a lone frame is passed on before the read
        that finds nothing more and a stream reads in whole batches; pauses RX (None) if
        there are none."""
        want = min(max(FIRST_TAKE, 2 * self.rx_filled), BATCH, self.out.space())
        buffers = self.pool.take(want)
        if not len(buffers):
            self._pause_rx()
            return None
        return buffers

    def produce(self) -> None:
        """Read what the kernel has sent into RX buffers and pass the frames on."""
        readv, fd, frames, size = os.readv, self.fd, self.frames, self.size
        read = 0
        while read < TURN_FRAMES:
            buffers = self._rx_buffers()
            if buffers is None:
                return
            lengths = []
            for offset in buffers["offset"].tolist():
                try:
                    lengths.append(readv(fd, [frames[offset:offset + size]]))
                except BlockingIOError:
                    break
            filled = self.rx_filled = len(lengths)
            read += filled
            if filled:
                buffers["length"][:filled] = lengths
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
        data, write, fd = self.tx_frames, os.write, self.fd
        written = 0
        for offset, length in zip(batch["offset"].astype(np.int64).tolist(),
                                  batch["length"].astype(np.int64).tolist(), strict=True):
            try:
                write(fd, data[offset:offset + length])
                written += 1
            except BlockingIOError:
                self.drop("tx_busy")
            except OSError:
                self.drop("tx_error")
        self.count("out", written)
        self.count("left", written)            # to the outside world
        self.tx.release(batch)
