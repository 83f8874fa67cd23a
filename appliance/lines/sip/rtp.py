"""RTP/RTCP (RFC 3550) for one call: G.711 audio through the jitter buffer, RFC 4733 DTMF both ways,
symmetric RTP (we send to where the far end's packets come from), sender/receiver reports."""
from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ...audio import SAMPLES_PER_FRAME, decode, encode
from ..base import Call, LineEvent
from .jitter import JitterBuffer

log = logging.getLogger(__name__)

DTMF_EVENTS = "0123456789*#ABCD"
RTCP_INTERVAL_S = 5.0


class RtpParseError(ValueError):
    """Bytes that are not an RTP/RTCP packet."""


@dataclass
class RtpPacket:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        return struct.pack("!BBHII", 0x80, b1, self.seq & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                           self.ssrc & 0xFFFFFFFF) + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet (CSRCs, header extension and padding are skipped)."""
    if len(data) < 12:
        raise RtpParseError("short RTP packet")
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    if b0 >> 6 != 2:
        raise RtpParseError("not RTP version 2")
    pos = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension
        if len(data) < pos + 4:
            raise RtpParseError("truncated RTP extension")
        (words,) = struct.unpack_from("!H", data, pos + 2)
        pos += 4 + 4 * words
    end = len(data)
    if b0 & 0x20:  # padding
        if end == 0 or data[-1] == 0 or data[-1] > end - pos:
            raise RtpParseError("bad RTP padding")
        end -= data[-1]
    if pos > end:
        raise RtpParseError("truncated RTP packet")
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bytes(data[pos:end]), bool(b1 & 0x80))


RTT_SLACK_S = 0.01   # a round trip this much below zero is a short path's rounding: 0
NTP_UNIX_OFFSET_S = 2208988800.0   # NTP's epoch (1900) is this long before Unix's (1970)


def ntp_mid32(unix_s: float) -> int:
    """The middle 32 bits of the NTP time of `unix_s` (16.16 fixed point): what an SR's LSR echoes."""
    ntp = unix_s + NTP_UNIX_OFFSET_S
    return ((int(ntp) & 0xFFFF) << 16) | int((ntp % 1.0) * 65536)


def rtt_seconds(lsr: int, dlsr: int, now_unix: float) -> float | None:
    """RFC 3550 §6.4.1: the round-trip time from a report block, RTT = A - LSR - DLSR in 1/65536 s
    (middle 32 bits of NTP time), or None without an SR to refer to (LSR 0) or for nonsense.

    On a short path the peer's DLSR rounding (baresip counts it in ms) can exceed the real round
    trip: the difference is a little below zero, which unsigned arithmetic turns into ~18 hours;
    such a value is a round trip of 0, not a missing one."""
    if not lsr:
        return None
    d = (ntp_mid32(now_unix) - lsr - dlsr) & 0xFFFFFFFF
    if d >= 1 << 31:
        d -= 1 << 32                      # signed: a little negative, or garbage
    rtt = d / 65536.0
    if -RTT_SLACK_S <= rtt < 0:
        return 0.0
    return rtt if 0 <= rtt < 60.0 else None


def parse_rtcp(data: bytes) -> list[dict]:
    """Parse a compound RTCP packet into SR/RR report dicts (other packet types are skipped)."""
    out: list[dict] = []
    pos = 0
    while pos + 4 <= len(data):
        b0, pt, length = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            raise RtpParseError("not RTCP version 2")
        size = 4 * (length + 1)
        if pos + size > len(data):
            raise RtpParseError("truncated RTCP packet")
        count = b0 & 0x1F
        body = pos + 4
        if pt in (200, 201) and size >= 8:
            (ssrc,) = struct.unpack_from("!I", data, body)
            rep = {"type": "SR" if pt == 200 else "RR", "ssrc": ssrc, "blocks": []}
            body += 4
            if pt == 200:
                if size < 28:
                    raise RtpParseError("short SR")
                ntp_hi, ntp_lo, rtp_ts, pkts, octets = struct.unpack_from("!IIIII", data, body)
                rep.update(ntp=(ntp_hi, ntp_lo), packets=pkts, octets=octets)
                body += 20
            for _ in range(count):
                if body + 24 > pos + size:
                    raise RtpParseError("truncated report block")
                src, lost_word, hseq, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, body)
                cum = lost_word & 0xFFFFFF
                if cum & 0x800000:
                    cum -= 0x1000000
                rep["blocks"].append({"ssrc": src, "fraction_lost": (lost_word >> 24) / 256.0,
                                      "cumulative_lost": cum, "highest_seq": hseq,
                                      "jitter": jitter, "lsr": lsr, "dlsr": dlsr})
                body += 24
            out.append(rep)
        pos += size
    return out


def dtmf_payload(event: int, end: bool, duration: int, volume: int = 10) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, handler):
        self.handler = handler

    def datagram_received(self, data, addr):
        try:
            self.handler(data, addr)
        except (RtpParseError, ValueError, struct.error) as exc:
            log.debug("dropped bad packet from %s: %s", addr, exc)


class RtpSession:
    """Media for one call. `tick()` is driven by the line's 20 ms clock."""

    def __init__(self, call: Call, local_ip: str, port: int, codec: str, payload_type: int,
                 dtmf_pt: int | None, remote: tuple[str, int] | None):
        self.call = call
        self.local_ip = local_ip
        self.port = port
        self.codec = codec
        self.payload_type = payload_type
        self.dtmf_pt = dtmf_pt
        self.remote = remote                 # where we send RTP; latched to the packets' source
        self.remote_rtcp = (remote[0], remote[1] + 1) if remote else None
        self.send_enabled = True
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._first_packet = True
        self._transport = None
        self._rtcp_transport = None
        self.jitter = JitterBuffer()
        self._frame = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        # receive state (RFC 3550 A.1, A.8)
        self.remote_ssrc: int | None = None
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._rx_packets = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter_est = 0.0
        self._transit: float | None = None
        self._first_ts: int | None = None
        self._ts_cycles = 0
        self._last_ts = 0
        self._last_sr: tuple[int, float] | None = None
        self.tx_packets = 0
        self.tx_octets = 0
        self.latched = False
        # DTMF
        self._dtmf_out: deque[tuple[str, asyncio.Future | None]] = deque()
        self._dtmf_state: dict | None = None
        self._dtmf_in_ts: int | None = None
        self._dtmf_in_done: set[int] = set()
        self._inband: deque[np.ndarray] = deque()
        # RFC 3550 §6.2: the first report after half the minimum interval, randomised
        self._next_rtcp = time.monotonic() + RTCP_INTERVAL_S / 2 * random.uniform(0.5, 1.5)
        self.remote_report: dict | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self._on_rtp), local_addr=(self.local_ip, self.port))
        try:
            self._rtcp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(self._on_rtcp), local_addr=(self.local_ip, self.port + 1))
        except OSError:
            self._rtcp_transport = None  # RTCP is optional; audio is not

    def close(self) -> None:
        for t in (self._transport, self._rtcp_transport):
            if t is not None:
                t.close()
        self._transport = self._rtcp_transport = None
        while self._dtmf_out:
            _, fut = self._dtmf_out.popleft()
            if fut is not None and not fut.done():
                fut.set_result(False)

    def update_remote(self, remote: tuple[str, int], codec: str, payload_type: int, dtmf_pt: int | None) -> None:
        """A re-INVITE moved or changed the stream: send there until packets come from elsewhere."""
        self.remote = remote
        self.remote_rtcp = (remote[0], remote[1] + 1)
        self.latched = False
        self.codec, self.payload_type, self.dtmf_pt = codec, payload_type, dtmf_pt

    # ---- receive -------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, addr) -> None:
        pkt = parse_rtp(data)
        if self.remote_ssrc is None or pkt.ssrc != self.remote_ssrc:
            self._new_source(pkt)
        if not self.latched or addr != self.remote:
            self.remote = (addr[0], addr[1])       # symmetric RTP (RFC 4961): answer where it comes from
            if not self.latched:
                self.remote_rtcp = (addr[0], addr[1] + 1)
            self.latched = True
        self._update_stats(pkt)
        if self.dtmf_pt is not None and pkt.payload_type == self.dtmf_pt:
            self._on_dtmf(pkt)
            return
        codec = self.codec if pkt.payload_type == self.payload_type else {0: "PCMU", 8: "PCMA"}.get(
            pkt.payload_type)
        if codec is None or not pkt.payload:
            return
        pcm = decode(pkt.payload, codec)
        ext = self._extend_ts(pkt.timestamp)
        arrival_ms = time.monotonic() * 1000.0
        base_index = (ext - self._first_ts) // SAMPLES_PER_FRAME
        for k in range(0, len(pcm), SAMPLES_PER_FRAME):
            chunk = pcm[k:k + SAMPLES_PER_FRAME]
            if len(chunk) < SAMPLES_PER_FRAME:
                chunk = np.concatenate((chunk, np.zeros(SAMPLES_PER_FRAME - len(chunk), np.int16)))
            self.jitter.put(base_index + k // SAMPLES_PER_FRAME, np.ascontiguousarray(chunk), arrival_ms)

    def _new_source(self, pkt: RtpPacket) -> None:
        self.remote_ssrc = pkt.ssrc
        self._base_seq = self._max_seq = pkt.seq
        self._cycles = 0
        self._rx_packets = 0
        self._expected_prior = self._received_prior = 0
        self._first_ts = pkt.timestamp
        self._last_ts = pkt.timestamp
        self._ts_cycles = 0
        self._transit = None
        self.jitter.reset()

    def _extend_ts(self, ts: int) -> int:
        if ts < self._last_ts and self._last_ts - ts > 0x80000000:
            self._ts_cycles += 1 << 32
        elif ts > self._last_ts and ts - self._last_ts > 0x80000000:
            return ts + self._ts_cycles - (1 << 32)   # a late packet from before the wrap
        self._last_ts = ts
        return ts + self._ts_cycles

    def _update_stats(self, pkt: RtpPacket) -> None:
        delta = (pkt.seq - self._max_seq) & 0xFFFF
        if delta < 3000:
            if pkt.seq < self._max_seq:
                self._cycles += 1 << 16
            self._max_seq = pkt.seq
        self._rx_packets += 1
        if pkt.payload_type == self.dtmf_pt:
            return                       # event timestamps stand still: not a jitter sample
        transit = time.monotonic() * 8000.0 - pkt.timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self._jitter_est += (d - self._jitter_est) / 16.0
        self._transit = transit

    def receive_stats(self) -> dict:
        expected = self._cycles + self._max_seq - self._base_seq + 1 if self.remote_ssrc is not None else 0
        lost = max(0, expected - self._rx_packets)
        return {"rx_packets": self._rx_packets, "expected": expected, "lost": lost,
                "jitter_ms": self._jitter_est / 8.0, "jitter_buffer": self.jitter.stats(),
                "tx_packets": self.tx_packets}

    def _on_dtmf(self, pkt: RtpPacket) -> None:
        if len(pkt.payload) < 4:
            return
        event, flags, duration = struct.unpack_from("!BBH", pkt.payload)
        if event >= len(DTMF_EVENTS) or pkt.timestamp in self._dtmf_in_done:
            return
        if flags & 0x80:   # end of event; retransmitted up to 3 times, report once
            self._dtmf_in_done.add(pkt.timestamp)
            if len(self._dtmf_in_done) > 64:
                self._dtmf_in_done.pop()
            self.call.events.put_nowait(LineEvent(
                "dtmf", {"digit": DTMF_EVENTS[event], "duration_ms": duration // 8}, self.call.call_id))

    # ---- RTCP ----------------------------------------------------------------------------
    def _on_rtcp(self, data: bytes, addr) -> None:
        for rep in parse_rtcp(data):
            if rep["type"] == "SR":
                hi, lo = rep["ntp"]
                self._last_sr = (((hi & 0xFFFF) << 16) | (lo >> 16), time.monotonic())
            for block in rep["blocks"]:
                if block["ssrc"] == self.ssrc:
                    self.remote_report = {"fraction_lost": block["fraction_lost"],
                                          "cumulative_lost": block["cumulative_lost"],
                                          "jitter_ms": block["jitter"] / 8.0}
                    rtt = rtt_seconds(block["lsr"], block["dlsr"], time.time())
                    if rtt is not None:
                        self.remote_report["rtt_ms"] = round(rtt * 1000.0, 2)
                    self.call.events.put_nowait(LineEvent(
                        "metrics", {"rtcp": "remote", **self.remote_report,
                                    "local": self.receive_stats()}, self.call.call_id))

    def _rtcp_packet(self) -> bytes:
        now = time.time() + NTP_UNIX_OFFSET_S
        ntp_hi, ntp_lo = int(now), int((now % 1.0) * (1 << 32))
        blocks = b""
        if self.remote_ssrc is not None:
            expected = self._cycles + self._max_seq - self._base_seq + 1
            lost = max(0, expected - self._rx_packets)
            exp_int = expected - self._expected_prior
            rec_int = self._rx_packets - self._received_prior
            self._expected_prior, self._received_prior = expected, self._rx_packets
            lost_int = exp_int - rec_int
            fraction = 0 if exp_int <= 0 or lost_int <= 0 else min(255, (lost_int << 8) // exp_int)
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = int((time.monotonic() - self._last_sr[1]) * 65536)
            blocks = struct.pack("!IIIIII", self.remote_ssrc, (fraction << 24) | (min(lost, 0x7FFFFF)),
                                 (self._cycles + self._max_seq) & 0xFFFFFFFF, int(self._jitter_est),
                                 lsr & 0xFFFFFFFF, dlsr & 0xFFFFFFFF)
        count = 1 if blocks else 0
        sr = struct.pack("!BBHIIIIII", 0x80 | count, 200, 6 + 6 * count, self.ssrc, ntp_hi, ntp_lo,
                         self._ts & 0xFFFFFFFF, self.tx_packets & 0xFFFFFFFF,
                         self.tx_octets & 0xFFFFFFFF) + blocks
        cname = f"appliance@{self.local_ip}".encode()
        item = bytes([1, len(cname)]) + cname + b"\x00"
        item += b"\x00" * (-(4 + len(item)) % 4)
        sdes = struct.pack("!BBHI", 0x81, 202, (4 + len(item)) // 4, self.ssrc) + item
        return sr + sdes

    # ---- DTMF out ------------------------------------------------------------------------
    def queue_dtmf(self, digits: str) -> asyncio.Future:
        """Send digits as RFC 4733 events (or in-band tones if the far end has no events)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        digits = digits.upper()
        for i, d in enumerate(digits):
            if d not in DTMF_EVENTS:
                raise ValueError(f"not a DTMF digit: {d!r}")
            self._dtmf_out.append((d, done if i == len(digits) - 1 else None))
        if not digits:
            done.set_result(True)
        return done

    def _next_dtmf_payload(self) -> bytes | None:
        """One 20 ms step of the RFC 4733 state machine: 100 ms tone, 3 end packets, 60 ms gap."""
        st = self._dtmf_state
        if st is None:
            if not self._dtmf_out:
                return None
            digit, fut = self._dtmf_out.popleft()
            st = self._dtmf_state = {"event": DTMF_EVENTS.index(digit), "step": 0, "ts": self._ts,
                                     "fut": fut, "digit": digit}
        step = st["step"]
        st["step"] += 1
        tone_steps, end_steps, gap_steps = 5, 3, 3
        if self.dtmf_pt is None:   # in-band fallback
            if step == 0:
                self._inband.extend(_dtmf_tone(st["digit"], tone_steps) + [np.zeros(
                    SAMPLES_PER_FRAME, np.int16)] * gap_steps)
            if step + 1 >= tone_steps + gap_steps:
                self._finish_dtmf()
            return None
        if step < tone_steps:
            return dtmf_payload(st["event"], False, (step + 1) * SAMPLES_PER_FRAME)
        if step < tone_steps + end_steps:
            return dtmf_payload(st["event"], True, tone_steps * SAMPLES_PER_FRAME)
        if step + 1 >= tone_steps + end_steps + gap_steps:
            self._finish_dtmf()
        return None

    def _finish_dtmf(self) -> None:
        st = self._dtmf_state
        self._dtmf_state = None
        if st and st["fut"] is not None and not st["fut"].done():
            st["fut"].set_result(True)

    # ---- the 20 ms clock -----------------------------------------------------------------
    def tick(self) -> None:
        """Play out one received frame into call.rx and send one frame (audio or a DTMF event)."""
        call = self.call
        self.jitter.get(self._frame)     # silence until the far end's audio starts
        call.rx.write(self._frame)        # one frame per tick keeps rx aligned with ref
        call.rx_written()
        outgoing = call.next_playout_frame()
        dtmf_ts = self._dtmf_state["ts"] if self._dtmf_state else self._ts
        event = self._next_dtmf_payload() if (self._dtmf_state or self._dtmf_out) else None
        if self._inband:
            outgoing = self._inband.popleft()
        if self._transport is not None and self.remote is not None and self.send_enabled:
            if event is not None and self.dtmf_pt is not None:
                first = self._dtmf_state is not None and self._dtmf_state["step"] == 1
                pkt = RtpPacket(self.dtmf_pt, self._seq, dtmf_ts, self.ssrc, event, marker=first)
            else:
                payload = encode(outgoing, self.codec)
                pkt = RtpPacket(self.payload_type, self._seq, self._ts, self.ssrc, payload,
                                marker=self._first_packet)
                self._first_packet = False
            data = pkt.to_bytes()
            self._transport.sendto(data, self.remote)
            self._seq = (self._seq + 1) & 0xFFFF
            self.tx_packets += 1
            self.tx_octets += len(pkt.payload)
        self._ts = (self._ts + SAMPLES_PER_FRAME) & 0xFFFFFFFF
        now = time.monotonic()
        if now >= self._next_rtcp:
            self._next_rtcp = now + RTCP_INTERVAL_S * random.uniform(0.5, 1.5)
            if self._rtcp_transport is not None and self.remote_rtcp is not None:
                self._rtcp_transport.sendto(self._rtcp_packet(), self.remote_rtcp)


_DTMF_FREQS = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
               "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
               "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
               "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633)}


def _dtmf_tone(digit: str, frames: int) -> list[np.ndarray]:
    lo, hi = _DTMF_FREQS[digit]
    t = np.arange(frames * SAMPLES_PER_FRAME) / 8000.0
    pcm = (6000 * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t))).astype(np.int16)
    return [pcm[i:i + SAMPLES_PER_FRAME] for i in range(0, len(pcm), SAMPLES_PER_FRAME)]


def random_port_pair(lo: int, hi: int) -> int:
    """An even port in [lo, hi) (RTCP takes port + 1)."""
    lo += lo % 2
    return lo + 2 * (int.from_bytes(os.urandom(2), "big") % max(1, (hi - lo) // 2))
