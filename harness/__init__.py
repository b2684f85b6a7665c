"""capnet harness: builds a system from its description, confines and supervises its components.

Public API for component authors (mirrors seL4 Microkit):

    from harness import Component

    class Firewall(Component):
        def init(self) -> None: ...                       # once, after grants are in place
        def notified(self, channel) -> None: ...          # a peer notified this channel
        def protected(self, channel, msg) -> object: ...  # a synchronous call from a lower priority

Everything else (`capnet check`, `capnet run`, the supervisor) is reached through `harness.cli`.
"""

from harness.runtime import Channel, Component, ProtectedCallError

__all__ = ["Channel", "Component", "ProtectedCallError"]
