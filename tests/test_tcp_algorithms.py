"""The pure parts of netstack.tcp: sequence arithmetic, RTO, congestion control, SACK
scoreboard, ISNs, SYN cookies and the state table (and the diagram generated from it)."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netstack.tcp.congestion import Cubic, NewReno
from netstack.tcp.cookies import check_cookie, make_cookie
from netstack.tcp.isn import initial_sequence_number
from netstack.tcp.rto import RtoEstimator
from netstack.tcp.sack import Scoreboard, sack_blocks
from netstack.tcp.seq import seq_add, seq_ge, seq_gt, seq_in, seq_le, seq_lt, seq_sub
from netstack.tcp.states import TRANSITIONS, Event, State, to_dot

MS = 1_000_000
SECOND = 1_000_000_000
u32 = st.integers(0, 0xFFFFFFFF)
step = st.integers(1, 0x7FFFFFFF)
ROOT = Path(__file__).resolve().parent.parent


@given(u32, step)
def test_rfc9293_3_4_comparisons_hold_across_wraparound(a, n):
    b = seq_add(a, n)
    assert seq_lt(a, b) and seq_le(a, b) and seq_gt(b, a) and seq_ge(b, a)
    assert not seq_lt(b, a) and not seq_gt(a, b)
    assert seq_sub(b, a) == n and seq_sub(a, b) == -n
    assert seq_in(a, a, b) and not seq_in(b, a, b)


@given(u32, st.integers(-0x7FFFFFFF, 0x7FFFFFFF), st.integers(-0x7FFFFFFF, 0x7FFFFFFF))
def test_rfc9293_3_4_addition_is_modular_and_associative(a, x, y):
    assert 0 <= seq_add(a, x) <= 0xFFFFFFFF
    assert seq_add(seq_add(a, x), y) == seq_add(a, x + y)
    assert seq_sub(seq_add(a, x), a) == x


def test_rfc6298_2_first_and_later_samples():
    rto = RtoEstimator(initial=SECOND, rto_min=0, rto_max=60 * SECOND)
    assert rto.rto == SECOND                                 # (2.1)
    rto.sample(100 * MS)                                     # (2.2)
    assert rto.srtt == 100 * MS and rto.rttvar == 50 * MS and rto.rto == 300 * MS
    rto.sample(200 * MS)                                     # (2.3), RTTVAR first
    assert rto.rttvar == (3 * 50 * MS + 100 * MS) // 4 == 62_500_000
    assert rto.srtt == (7 * 100 * MS + 200 * MS) // 8 == 112_500_000
    assert rto.rto == 112_500_000 + 4 * 62_500_000


def test_rfc6298_2_4_minimum_and_5_5_backoff_to_the_maximum():
    rto = RtoEstimator()                                     # 1 s minimum, 60 s maximum
    rto.sample(10 * MS)
    assert rto.rto == SECOND
    seen = []
    for _ in range(8):
        rto.backoff()
        seen.append(rto.rto // SECOND)
    assert seen == [2, 4, 8, 16, 32, 60, 60, 60]
    rto.sample(10 * MS)                                      # a new sample ends the backoff
    assert rto.rto == SECOND


def test_rfc5681_slow_start_doubles_cwnd_each_round_trip():
    cc = NewReno(mss=1000, initial_window_segments=10)
    for expected in (20_000, 40_000, 80_000):
        for _ in range(cc.cwnd // 1000):                     # one ACK per segment of a window
            cc.on_ack(1000, 0, None)
        assert cc.cwnd == expected


def test_rfc5681_congestion_avoidance_adds_one_segment_per_round_trip():
    cc = NewReno(mss=1000)
    cc.cwnd, cc.ssthresh = 20_000, 10_000
    for _ in range(20):
        cc.on_ack(1000, 0, None)
    assert cc.cwnd == 21_000


def test_rfc5681_rfc6582_fast_recovery_halves_and_timeout_resets():
    cc = NewReno(mss=1000)
    cc.cwnd = 40_000
    cc.on_enter_recovery(flight=40_000, now=0)
    assert cc.ssthresh == 20_000 and cc.cwnd == 20_000       # RFC 5681 (4), RFC 6675
    cc.on_exit_recovery(flight=5_000)                        # RFC 6582 3.2 step 3
    assert cc.cwnd == 6_000
    cc.on_exit_recovery(flight=50_000)
    assert cc.cwnd == 20_000
    cc.on_timeout(flight=3_000, now=0)                       # RFC 5681 (4), (5)
    assert cc.cwnd == 1000 and cc.ssthresh == 2000


def test_rfc9438_4_2_w_cubic_and_k_after_a_loss():
    cc = Cubic(mss=1000)
    cc.cwnd = 100_000                                        # 100 segments at the loss
    cc.on_enter_recovery(flight=100_000, now=0)
    assert cc.ssthresh == cc.cwnd == 70_000                  # beta_cubic = 0.7 (4.6)
    assert cc.w_max == 100
    cc.on_ack(1000, 0, 100 * MS)                             # the congestion-avoidance epoch
    k = (100 * (1 - 0.7) / 0.4) ** (1 / 3)                   # Figure 2
    assert cc.k == pytest.approx(k)
    for t in (0.0, 1.0, 2.5, k, 6.0):
        assert cc.w_cubic(t) == pytest.approx(0.4 * (t - k) ** 3 + 100)   # Figure 1
    assert cc.w_cubic(0) == pytest.approx(70) and cc.w_cubic(k) == pytest.approx(100)


def test_rfc9438_cwnd_climbs_concavely_to_w_max_then_probes_beyond():
    cc = Cubic(mss=1000)
    cc.cwnd = 100_000
    cc.on_enter_recovery(flight=100_000, now=0)
    rtt = 100 * MS
    now, samples = 0, {}
    while now <= 8 * SECOND:                                 # a window of ACKs per RTT
        for _ in range(cc.cwnd // 1000):
            cc.on_ack(1000, now, rtt)
        samples[now // (100 * MS)] = cc.cwnd / 1000
        now += rtt
    k_rounds = round(cc.k * 10)
    assert samples[0] < samples[10] < samples[k_rounds]      # growing towards W_max
    assert samples[k_rounds] == pytest.approx(100, abs=8)    # plateau near W_max at t = K
    growth_before = samples[10] - samples[0]
    growth_at_plateau = samples[k_rounds] - samples[k_rounds - 10]
    assert growth_at_plateau < growth_before                 # concave region slows down
    assert samples[80] > 110                                 # convex region probes beyond


def test_rfc9438_4_7_fast_convergence_lowers_w_max():
    cc = Cubic(mss=1000)
    cc.cwnd = 100_000
    cc.on_enter_recovery(flight=100_000, now=0)
    cc.cwnd = 80_000                                         # lost again below W_max
    cc.on_enter_recovery(flight=80_000, now=SECOND)
    assert cc.w_max == pytest.approx(80 * (1 + 0.7) / 2)


def test_rfc2018_scoreboard_merges_blocks_and_finds_holes():
    sb = Scoreboard()
    sb.update([(2000, 3000), (5000, 6000)], snd_una=1000, snd_max=9000)
    sb.update([(3000, 4000), (9000, 9500)], snd_una=1000, snd_max=9000)   # beyond SND.MAX
    assert sb.ranges == [(2000, 4000), (5000, 6000)]
    assert sb.holes(1000) == [(1000, 2000), (4000, 5000)]
    assert sb.sacked_bytes() == 3000 and sb.high == 6000
    sb.advance(4500)
    assert sb.ranges == [(5000, 6000)] and sb.holes(4500) == [(4500, 5000)]


def test_rfc2018_4_first_block_reports_the_most_recent_segment():
    ooo = [(2000, 3000), (5000, 7000), (9000, 9100)]
    blocks = sack_blocks(ooo, recent=[(6000, 7000), (2000, 3000)], limit=3)
    assert blocks == [(5000, 7000), (2000, 3000), (9000, 9100)]
    assert sack_blocks(ooo, recent=[], limit=2) == [(9000, 9100), (5000, 7000)]


def test_rfc6528_isn_grows_with_time_for_one_tuple_and_differs_across_tuples():
    secret = b"s" * 32
    local = (ip_address("10.0.0.1"), 40000)
    remote = (ip_address("10.0.0.2"), 80)
    isns = [initial_sequence_number(secret, local, remote, t * 4000 * 1000) for t in range(50)]
    assert all(seq_lt(x, y) for x, y in zip(isns, isns[1:], strict=False))
    assert seq_sub(isns[1], isns[0]) == 1000                 # a 4-microsecond clock
    others = {initial_sequence_number(secret, local, (remote[0], port), 0)
              for port in range(1000, 1100)}
    assert len(others) == 100
    deltas = sorted(abs(seq_sub(x, isns[0])) for x in others)
    assert deltas[50] > 1 << 24                              # not a predictable step
    assert initial_sequence_number(b"t" * 32, local, remote, 0) != isns[0]


def test_rfc4987_cookie_round_trip_expiry_and_forgery():
    secret = b"c" * 32
    local = (ip_address("10.0.0.2"), 80)
    remote = (ip_address("10.0.0.1"), 40000)
    cookie, mss = make_cookie(secret, local, remote, 777, 1460, now=5 * SECOND)
    assert mss == 1460
    assert check_cookie(secret, local, remote, 777, cookie, now=5 * SECOND) == 1460
    assert check_cookie(secret, local, remote, 777, cookie, now=100 * SECOND) == 1460
    assert check_cookie(secret, local, remote, 777, cookie, now=200 * SECOND) is None
    assert check_cookie(secret, local, remote, 778, cookie, now=5 * SECOND) is None
    assert check_cookie(secret, local, (remote[0], 40001), 777, cookie, 5 * SECOND) is None
    assert check_cookie(b"d" * 32, local, remote, 777, cookie, now=5 * SECOND) is None
    assert make_cookie(secret, local, remote, 777, 1000, now=0)[1] == 536


def test_state_table_covers_rfc9293_figure_5():
    edges = {(s, n) for (s, _), (n, _) in TRANSITIONS.items()}
    for edge in [(State.CLOSED, State.SYN_SENT), (State.LISTEN, State.SYN_RECEIVED),
                 (State.SYN_SENT, State.ESTABLISHED), (State.SYN_SENT, State.SYN_RECEIVED),
                 (State.SYN_RECEIVED, State.ESTABLISHED), (State.ESTABLISHED, State.FIN_WAIT_1),
                 (State.ESTABLISHED, State.CLOSE_WAIT), (State.FIN_WAIT_1, State.FIN_WAIT_2),
                 (State.FIN_WAIT_1, State.CLOSING), (State.FIN_WAIT_2, State.TIME_WAIT),
                 (State.CLOSING, State.TIME_WAIT), (State.CLOSE_WAIT, State.LAST_ACK),
                 (State.LAST_ACK, State.CLOSED), (State.TIME_WAIT, State.CLOSED)]:
        assert edge in edges
    assert (State.TIME_WAIT, Event.RCV_RST) not in TRANSITIONS    # RFC 1337: ignore it


def test_state_diagram_is_generated_from_the_table():
    dot = shutil.which("dot")
    if dot is None:
        pytest.fail("Graphviz dot is required (apt-get install graphviz)")
    svg = subprocess.run([dot, "-Tsvg"], input=to_dot(), capture_output=True, text=True,
                         check=True).stdout
    committed = (ROOT / "docs" / "tcp-states.svg").read_text()
    esc = lambda s: s.replace("-", "&#45;").replace(">", "&gt;")     # noqa: E731
    for (state, _), (nxt, _) in TRANSITIONS.items():
        title = f"<title>{esc(state.value)}&#45;&gt;{esc(nxt.value)}</title>"
        assert title in svg and title in committed
    assert committed.count("<g id=\"edge") == svg.count("<g id=\"edge") == len(TRANSITIONS)


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), max_size=12),
       st.integers(0, 0xFFFFFFFF))
def test_rfc2018_scoreboard_equals_the_union_of_reported_blocks(blocks, base):
    """Against a model (a set of byte numbers), at any position in sequence space."""
    sb = Scoreboard()
    una, top = base, seq_add(base, 300)
    model: set[int] = set()
    for start, length in blocks:
        left, right = seq_add(base, start), seq_add(base, start + length)
        sb.update([(left, right)], una, top)
        if start > 0 and start + length <= 300:
            model |= set(range(start, start + length))
    covered = {seq_sub(x, base) for a, b in sb.ranges for x in
               (seq_add(a, i) for i in range(seq_sub(b, a)))}
    assert covered == model
    assert sb.sacked_bytes() == len(model)
    holes = {seq_sub(x, base) for a, b in sb.holes(una) for x in
             (seq_add(a, i) for i in range(seq_sub(b, a)))}
    assert holes == (set(range(max(model) + 1)) - model if model else set())
