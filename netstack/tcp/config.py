"""Configuration of a TCP layer: one frozen dataclass, times in integer nanoseconds."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TcpConfig"]

MS = 1_000_000
SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class TcpConfig:
    """Knobs of a TcpLayer; the defaults follow the RFCs (noted) unless said otherwise."""
    mss: int = 1460                      # the stack passes MTU - 40 (IPv4) or MTU - 60 (IPv6)
    send_buffer: int = 256 * 1024
    recv_buffer: int = 256 * 1024
    congestion: str = "cubic"            # "newreno" (RFC 5681/6582) or "cubic" (RFC 9438)
    window_scaling: bool = True          # RFC 7323 section 2
    timestamps: bool = True              # RFC 7323 sections 3-5
    sack: bool = True                    # RFC 2018
    nagle: bool = True                   # RFC 9293 section 3.7.4
    delayed_ack_ns: int = 40 * MS        # RFC 9293 3.8.6.3: MUST be less than 0.5 s
    rto_initial_ns: int = 1 * SECOND     # RFC 6298 (2.1)
    rto_min_ns: int = 1 * SECOND         # RFC 6298 (2.4); Linux uses 200 ms
    rto_max_ns: int = 60 * SECOND        # RFC 6298 (2.5)
    max_retransmits: int = 15            # RFC 9293 3.8.3 R2 (then the connection times out)
    syn_retries: int = 6
    msl_ns: int = 30 * SECOND            # TIME-WAIT lasts 2 * MSL (RFC 9293 3.4.2)
    keepalive_idle_ns: int | None = None  # RFC 9293 3.8.4: off by default, >= 2 h if on
    keepalive_interval_ns: int = 75 * SECOND
    keepalive_probes: int = 9
    persist_min_ns: int = 200 * MS       # zero-window probe interval (backs off like the RTO)
    syn_cookies: bool = True             # RFC 4987 section 3.6, used only when a backlog is full
    challenge_ack_limit: int = 1000      # RFC 5961 section 7: challenge ACKs per second
    initial_window_segments: int = 10    # RFC 6928
    segment_offload: int = 0             # >0: new data leaves in segments of up to this many
    #                                      bytes (whole MSS-sized pieces), cut by the NIC (TSO)

    def __post_init__(self) -> None:
        if not 88 <= self.mss <= 65495:
            raise ValueError(f"TcpConfig.mss: {self.mss} is outside 88..65495")
        if self.congestion not in ("newreno", "cubic"):
            raise ValueError(f"TcpConfig.congestion: {self.congestion!r} is not newreno or cubic")
        if self.send_buffer < self.mss or self.recv_buffer < self.mss:
            raise ValueError("TcpConfig: send_buffer and recv_buffer must hold one segment")
        if not 0 <= self.segment_offload <= 65535 - 100:
            raise ValueError(f"TcpConfig.segment_offload: {self.segment_offload} is outside "
                             f"0..{65535 - 100}")
        if self.recv_buffer > (0xFFFF << 14):
            raise ValueError("TcpConfig.recv_buffer: larger than window scaling can announce")
