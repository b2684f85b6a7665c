"""shmring: shared memory for isolated components — knows nothing of packets.

- ``Region``: a sealed memfd mapped with a grant's permissions (``r`` or ``rw``);
- ``RingProducer`` / ``RingConsumer``: SPSC descriptor rings with free-running 64-bit indices,
  private capacity and validated shadow indices;
- ``QueueEnd``: one end of an sDDF queue pair (active + free ring) with buffer ownership
  (``BufferLedger``) and an origin's ``BufferPool``;
- ``make_eventfd`` / ``signal`` / ``drain`` / ``Waiter``: notifications and spin-then-block waits.
"""

from shmring.descriptor import DESC_DTYPE, descriptors
from shmring.ledger import BufferLedger, BufferPool
from shmring.notify import Waiter, drain, make_eventfd, signal
from shmring.queue import QueueEnd, occupancy, queue_bytes
from shmring.region import Region, RegionError
from shmring.ring import RingConsumer, RingProducer, ring_bytes

__all__ = [
    "DESC_DTYPE", "BufferLedger", "BufferPool", "QueueEnd", "Region", "RegionError",
    "RingConsumer", "RingProducer", "Waiter", "descriptors", "drain", "make_eventfd",
    "occupancy", "queue_bytes", "ring_bytes", "signal",
]
