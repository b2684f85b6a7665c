"""The TCP state machine as one table (RFC 9293 section 3.3.2, Figure 5, and 3.10).

``TRANSITIONS[(state, event)] = (next_state, actions)``: the connection looks its transitions
up here and nowhere else, and runs the named actions in order. ``to_dot()`` draws the same
table with Graphviz (docs/tcp-states.svg is generated from it: ``python -c "from
netstack.tcp.states import to_dot; print(to_dot(), end='')" | dot -Tsvg -o docs/tcp-states.svg``). A (state, event) pair absent from the table is not a
transition: the segment or call is handled without changing state (or refused).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["State", "Event", "TRANSITIONS", "transition", "to_dot", "SYNCHRONIZED", "SEND_STATES",
           "RECEIVE_STATES"]


class State(StrEnum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


class Event(StrEnum):
    OPEN_ACTIVE = "connect"
    OPEN_PASSIVE = "listen"
    CLOSE = "close"
    ABORT = "abort"
    RCV_SYN = "rcv SYN"
    RCV_SYN_ACK = "rcv SYN,ACK"
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    RCV_FIN = "rcv FIN"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    RCV_RST = "rcv RST"
    TIMEOUT_2MSL = "2MSL timeout"
    GIVE_UP = "retransmissions exhausted"


S, E = State, Event

# Actions (run by the connection, in order):
#   send_syn, send_syn_ack, send_ack, send_fin (queue a FIN after the data), send_rst,
#   connected (Connected/Accepted event), peer_closed (PeerClosed event), closed (Closed
#   event), reset (Reset event), timed_out (TimedOut event), start_time_wait, delete.
_SYNC = (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK)

TRANSITIONS: dict[tuple[State, Event], tuple[State, tuple[str, ...]]] = {
    (S.CLOSED, E.OPEN_ACTIVE): (S.SYN_SENT, ("send_syn",)),
    (S.CLOSED, E.OPEN_PASSIVE): (S.LISTEN, ()),
    (S.LISTEN, E.RCV_SYN): (S.SYN_RECEIVED, ("send_syn_ack",)),
    (S.LISTEN, E.CLOSE): (S.CLOSED, ("delete",)),
    (S.SYN_SENT, E.RCV_SYN_ACK): (S.ESTABLISHED, ("send_ack", "connected")),
    (S.SYN_SENT, E.RCV_SYN): (S.SYN_RECEIVED, ("send_syn_ack",)),       # simultaneous open
    (S.SYN_SENT, E.CLOSE): (S.CLOSED, ("closed", "delete")),
    (S.SYN_SENT, E.ABORT): (S.CLOSED, ("closed", "delete")),
    (S.SYN_SENT, E.RCV_RST): (S.CLOSED, ("reset", "delete")),
    (S.SYN_SENT, E.GIVE_UP): (S.CLOSED, ("timed_out", "delete")),
    (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN): (S.ESTABLISHED, ("connected",)),
    (S.SYN_RECEIVED, E.CLOSE): (S.FIN_WAIT_1, ("send_fin",)),
    (S.SYN_RECEIVED, E.ABORT): (S.CLOSED, ("send_rst", "closed", "delete")),
    (S.SYN_RECEIVED, E.RCV_RST): (S.CLOSED, ("reset", "delete")),
    (S.SYN_RECEIVED, E.GIVE_UP): (S.CLOSED, ("send_rst", "timed_out", "delete")),
    (S.ESTABLISHED, E.CLOSE): (S.FIN_WAIT_1, ("send_fin",)),
    (S.ESTABLISHED, E.RCV_FIN): (S.CLOSE_WAIT, ("send_ack", "peer_closed")),
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): (S.FIN_WAIT_2, ()),
    (S.FIN_WAIT_1, E.RCV_FIN): (S.CLOSING, ("send_ack", "peer_closed")),  # simultaneous close
    (S.FIN_WAIT_2, E.RCV_FIN): (S.TIME_WAIT, ("send_ack", "peer_closed", "start_time_wait",
                                             "closed")),
    (S.CLOSE_WAIT, E.CLOSE): (S.LAST_ACK, ("send_fin",)),
    (S.CLOSING, E.RCV_ACK_OF_FIN): (S.TIME_WAIT, ("start_time_wait", "closed")),
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): (S.CLOSED, ("closed", "delete")),
    (S.TIME_WAIT, E.RCV_FIN): (S.TIME_WAIT, ("send_ack", "start_time_wait")),
    (S.TIME_WAIT, E.TIMEOUT_2MSL): (S.CLOSED, ("delete",)),
    (S.TIME_WAIT, E.RCV_SYN): (S.CLOSED, ("delete",)),        # RFC 6191: a new incarnation
    (S.TIME_WAIT, E.ABORT): (S.CLOSED, ("delete",)),
}
for _state in _SYNC:
    TRANSITIONS[(_state, E.ABORT)] = (S.CLOSED, ("send_rst", "closed", "delete"))
    TRANSITIONS[(_state, E.RCV_RST)] = (S.CLOSED, ("reset", "delete"))
    TRANSITIONS[(_state, E.GIVE_UP)] = (S.CLOSED, ("send_rst", "timed_out", "delete"))

SYNCHRONIZED = frozenset(_SYNC) | {S.TIME_WAIT}
SEND_STATES = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK})
RECEIVE_STATES = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})     # text is accepted


def transition(state: State, event: Event) -> tuple[State, tuple[str, ...]] | None:
    """(next state, actions) for ``event`` in ``state``, or None when it is no transition."""
    return TRANSITIONS.get((state, event))


def to_dot() -> str:
    """The table as a Graphviz digraph: one edge per (state, event), labelled event / actions."""
    lines = ["digraph tcp {", '  rankdir=TB; node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for (state, event), (nxt, actions) in TRANSITIONS.items():
        shown = [a for a in actions if a != "delete"]
        label = event.value + (" / " + ", ".join(shown) if shown else "")
        lines.append(f'  "{state.value}" -> "{nxt.value}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(to_dot(), end="")
