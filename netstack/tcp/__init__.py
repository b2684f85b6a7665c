"""netstack.tcp: a sans-I/O TCP (RFC 9293) for one host — no sockets, clocks or threads.

Bytes and ``now`` (int ns) go in; segments, events and the next deadline come out::

    from netstack.tcp import TcpLayer, TcpConfig, Connected, Accepted, DataReady, ...
    tcp = TcpLayer(TcpConfig(mss=1460), secret=os.urandom(32))   # secret: ISNs and SYN cookies
    tcp.receive(src, dst, segment, now)     # src/dst: ipaddress.IPv4Address/IPv6Address
    lid = tcp.listen((ip_or_None, port), backlog=128)     # -> listener id (int)
    tcp.unlisten(lid)
    conn = tcp.connect(local=(ip, port_or_0), remote=(ip, port), now=now)  # -> conn id (int)
    tcp.send(conn, data, now) -> int        # bytes taken into the send buffer (maybe fewer)
    tcp.recv(conn, max_bytes) -> bytes      # b"" when nothing is buffered; see tcp.eof(conn)
    tcp.eof(conn) -> bool                   # the peer's FIN arrived and every byte was read
    tcp.close(conn, now)                    # orderly: FIN after the queued data
    tcp.abort(conn, now)                    # abortive: RST, buffers discarded
    tcp.segments_to_send() -> list[(src, dst, segment_bytes)]   # drained; IP sends them
    tcp.events() -> list[TcpEvent]          # drained
    tcp.next_deadline() -> int | None ; tcp.handle_timeout(now)
    tcp.info(conn) -> dict                  # state, local, remote, mss, cwnd, ssthresh, srtt,
                                            # rto (ns), snd_wnd, rcv_wnd, retransmits, ...
    tcp.connections() -> list[int]          # every live connection id
    tcp.counters -> dict[str, int]          # segments_in/out, retransmitted_segments,
                                            # syn_cookies_sent, "dropped.<reason>", ...

Events: Connected(conn), Accepted(listener, conn, remote), DataReady(conn), SendSpace(conn),
PeerClosed(conn), Closed(conn), Reset(conn, reason), TimedOut(conn). After Closed, Reset or
TimedOut the id is forgotten: calls with it raise KeyError (a connection in TIME-WAIT, which
follows Closed of an active close, still answers ``recv``/``info``).

Every segment given to ``receive`` is counted in ``segments_in``; every one discarded, whole or
in part, is counted under ``dropped.<reason>`` (bad_checksum, malformed, no_connection, paws,
out_of_window, ...). Nothing raises on any byte sequence.

A listener's ``backlog`` bounds its half-open (SYN-RECEIVED) connections; when it is full,
SYN cookies (RFC 4987) answer instead. Established connections are handed over at once with
``Accepted``. Segments to no connection and no listener get a RST (RFC 9293 3.10.7.1).
"""

from netstack.tcp.config import TcpConfig
from netstack.tcp.events import (
    Accepted,
    Closed,
    Connected,
    DataReady,
    PeerClosed,
    Reset,
    SendSpace,
    TcpEvent,
    TimedOut,
)
from netstack.tcp.layer import TcpLayer

__all__ = [
    "TcpLayer", "TcpConfig",
    "TcpEvent", "Connected", "Accepted", "DataReady", "SendSpace", "PeerClosed", "Closed",
    "Reset", "TimedOut",
]
