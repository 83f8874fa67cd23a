#!/usr/bin/env python3
"""A V.253 voice modem on a pty, for tests and by hand (no USB modem needed).

    python tools/voice_modem_emulator.py --link /tmp/modem0 [--profile conexant] [--ring 5551234]

It behaves as the manuals in /work/shared/MODEMS.md describe, quirks included:
- echo on after power-up and ATZ; ATE0 turns it off; a stray `OK` plus junk bytes when DTR rises;
- response delays (`response_delay_s`), `AT+FCLASS=8` voice class, `AT+VSM=?` listing in the
  profile's own format (Conexant plain, USR `+VSM:` prefix, ZyXEL semicolons), `+VLS`, `+VTR`
  full duplex (not on the ZyXEL profile: half duplex, +VTX/+VRX only), `+VTS` tones with `!` flash;
- RING cadence (`ring_period_s`, 6 s on a real line) with formatted caller ID (+VCID=1:
  DATE/TIME/NMBR/NAME) between the first and the second RING;
- voice data at its own 8 kHz crystal (`drift_ppm`), DLE shielded both ways, DLE events
  (DTMF with `/`...`~` start/end marks, `b` busy after the far end hangs up, `u` TX underrun);
- faults: `wedge()` (stops answering until the DTE drops DTR = closes the port), `unplug()` /
  `replug()` (the pty vanishes mid-call and comes back under the same link, as udev would).

The far end of the line is `emu.far` (FarEnd): `say(pcm)`, `heard_audio()`, DTMF and hook flash log.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modem_emulator_base import FarEnd, ModemEmulator  # noqa: E402

from appliance.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode  # noqa: E402

DLE, ETX = 0x10, 0x03


@dataclass(frozen=True)
class Profile:
    """One chipset as its manual shows it (MODEMS.md §1.2, §1.7)."""
    name: str
    ati0: str
    ati3: str
    gmi: str
    classes: str = "0,1,1.0,2,8"
    # cml -> (list line, kind) ; kind in ulaw/alaw/s16le/u8
    vsm: tuple[tuple[int, str, str], ...] = ()
    vsm_prefix: str = ""
    duplex: bool = True
    dtmf_marks: bool = True          # '/' ... '~' around digits
    spurious_dialtone_on_play: bool = False


PROFILES = {
    "conexant": Profile(
        "conexant", "56000", "CX93001-EIS_V0.2002-V92", "CONEXANT",
        vsm=((1, '1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)', "u8"),
             (128, '128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)', "u8"),
             (130, '130,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)', "u8"),
             (131, '131,"ULAW",8,0,(8000),(0),(0)', "ulaw"),
             (132, '132,"ALAW",8,0,(8000),(0),(0)', "alaw"),
             (133, '133,"LINEAR",16,0,(8000),(0),(0)', "s16le"))),
    "usrobotics": Profile(
        "usrobotics", "5601", "U.S. Robotics 56K FAX USB V1.2.23", "U.S. Robotics",
        vsm=((1, '1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)', "u8"),
             (128, '128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)', "u8"),
             (131, '131,"ULAW",8,0,(8000),(0),(0)', "ulaw"),
             (132, '132,"ALAW",8,0,(8000),(0),(0)', "alaw")),
        vsm_prefix="+VSM: ", spurious_dialtone_on_play=True),
    "agere": Profile(
        "agere", "LT V.92 Data+Fax Modem Version 8.30", "Agere SoftModem", "Agere Systems",
        vsm=((0, '0,"SIGNED PCM",16,0,(8000),(0),(0)', "s16le"),
             (1, '1,"UNSIGNED PCM",8,0,(8000),(0),(0)', "u8")),
        dtmf_marks=False),
    "zyxel": Profile(
        "zyxel", "2864", "ZyXEL Omni 288S V 2.10", "ZyXEL",
        vsm=((81, "81;ULAW;8;0;(8000)", "ulaw"),
             (80, "80;LINEAR;8;0;(8000)", "u8")),
        duplex=False),
}


def _encode(kind: str, pcm: np.ndarray) -> bytes:
    if kind == "ulaw":
        return bytes(ulaw_encode(pcm))
    if kind == "alaw":
        return bytes(alaw_encode(pcm))
    if kind == "s16le":
        return pcm.astype("<i2").tobytes()
    return ((pcm.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()


def _decode(kind: str, data: bytes) -> np.ndarray:
    if kind == "ulaw":
        return np.asarray(ulaw_decode(data), dtype=np.int16)
    if kind == "alaw":
        return np.asarray(alaw_decode(data), dtype=np.int16)
    if kind == "s16le":
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
    return ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)


@dataclass
class Stats:
    frames_out: int = 0
    frames_in: int = 0
    underruns: int = 0
    overruns: int = 0
    tx_depth_samples: list[int] = field(default_factory=list)   # modem TX buffer depth per tick
    commands: list[str] = field(default_factory=list)
    resets: int = 0


class VoiceModemEmulator(ModemEmulator):
    """A V.253 voice modem behind a pty. Start with `start()`; the DTE opens `port`."""

    PROFILES = PROFILES
    NAME = "voicemodem"

    def __init__(self, profile: str = "conexant", link: str | None = None, *, drift_ppm: float = 0.0,
                 ring_period_s: float = 6.0, cid_delay_s: float = 0.5, response_delay_s: float = 0.01,
                 stray_on_open: bool = True, seed: int = 1, dial_answer_s: float = 1.0):
        self.cid_delay_s, self.stray_on_open = cid_delay_s, stray_on_open
        self.dial_result = "VCON"        # what the far end does on ATD: VCON, BUSY, NO DIALTONE, NO ANSWER
        self.stats = Stats()
        super().__init__(profile, link, drift_ppm=drift_ppm, ring_period_s=ring_period_s,
                         response_delay_s=response_delay_s, seed=seed, dial_answer_s=dial_answer_s)
        self._power_on()

    def _power_on(self) -> None:
        """Power-up / ATZ / DTR drop: echo on, data class, on-hook, voice settings forgotten."""
        self.lines.echo = True
        self.fclass = "0"
        self.vsm_cml: int | None = None
        self.vcid = 0
        self.hook_off = False
        self.mode = "cmd"                # cmd | duplex | play | record
        self.call = None                 # None | ringing | connected
        self.ring_count = 0
        self._rx_dle_pending = False
        self._txbuf = bytearray()
        self._tx_started = False
        self._in_underrun = False
        self._play_ending = False
        self._dial_digits = ""
        self.sched.clear()

    # ---- far-end actions -----------------------------------------------------------
    def ring(self, number: str = "5551234", name: str = "ALICE", rings: int = 10) -> None:
        """An inbound call: RING every `ring_period_s`, caller ID after the first RING."""
        with self._lock:
            self.far = FarEnd()
            self.call = "ringing"
            self.ring_count = 0
        self._number, self._name, self._rings = number, name, rings
        self._ring_once()

    def _ring_once(self) -> None:
        with self._lock:
            if self.call != "ringing":
                return
            if self.hook_off or self.mode != "cmd":
                # the line is still off hook from the last call: this call rings once it is free
                self.sched.at(0.1, self._ring_once)
                return
            if self.ring_count >= self._rings:
                self.call = None                  # caller gave up
                return
            self.ring_count += 1
            self._result("RING")
            if self.ring_count == 1 and self.vcid:
                self.sched.at(self.cid_delay_s, self._send_cid)
        self.sched.at(self.ring_period_s, self._ring_once)

    def _send_cid(self) -> None:
        with self._lock:
            if self.call != "ringing":
                return
            now = time.localtime()
            spaced = self.profile.name == "agere"    # Intel/spec style "NMBR = 123" (MODEMS.md 1.5)
            sep = " = " if spaced else "="
            for tag, val in (("DATE", time.strftime("%m%d", now)), ("TIME", time.strftime("%H%M", now)),
                             ("NMBR", self._number), ("NAME", self._name)):
                if val:
                    self._result(f"{tag}{sep}{val}")

    def send_dtmf(self, digits: str, on_ms: int = 120, gap_ms: int = 120) -> None:
        """The far end presses keys: DLE events as the profile reports them."""
        t = 0.0
        for d in digits:
            self.far.dtmf_sent += d
            if self.profile.dtmf_marks:
                self.sched.at(t, lambda d=d: self._dle_event("/" + d))
                for k in range(70, on_ms, 70):    # the digit repeats about every 70 ms while held
                    self.sched.at(t + k / 1000, lambda d=d: self._dle_event(d))
                self.sched.at(t + on_ms / 1000, lambda: self._dle_event("~"))
            else:
                self.sched.at(t, lambda d=d: self._dle_event(d))
            t += (on_ms + gap_ms) / 1000

    def far_hangup(self) -> None:
        """The far end hangs up: the exchange sends busy tone, reported as DLE b (repeating)."""
        with self._lock:
            self.far.hung_up = True
            self.call = None
        self._busy_tone()

    def _busy_tone(self) -> None:
        with self._lock:
            if not self.hook_off or not self.far.hung_up:
                return
            if self.mode != "cmd":
                self._dle_event_locked("b")
        self.sched.at(0.5, self._busy_tone)

    def _dle_event(self, codes: str) -> None:
        with self._lock:
            self._dle_event_locked(codes)

    def _dle_event_locked(self, codes: str) -> None:
        if self.wedged or self.mode == "cmd":
            return                                # events reach the DTE in voice data mode
        self.pty.write(b"".join(bytes([DLE, ord(c)]) for c in codes))

    # ---- DTE bytes -----------------------------------------------------------------------
    def _on_dtr_rise(self) -> None:
        if self.stray_on_open:
            self.pty.write(b"\r\nOK\r\n\xff\x00\xfe")      # stray OK when DTR rises (MODEMS.md §3)

    def _on_dtr_drop(self) -> None:
        with self._lock:
            self.wedged = False
            self.stats.resets += 1
            if self.call == "connected":
                self.far.hung_up = True
            self._power_on()

    def _on_bytes(self, data: bytes) -> None:
        if self.wedged:
            return
        while data:
            with self._lock:
                mode = self.mode
            if mode == "cmd":
                for line in self.lines.feed(data):
                    self._command_line(line)
                return
            data = self._data_bytes(data)

    def _data_bytes(self, data: bytes) -> bytes:
        """DTE->DCE voice stream; returns bytes left after the stream ended (commands)."""
        with self._lock:
            i = 0
            while i < len(data):
                b = data[i]
                i += 1
                if self._rx_dle_pending:
                    self._rx_dle_pending = False
                    if b == DLE:
                        self._txbuf.append(DLE)
                    elif b == 0x1A:
                        self._txbuf += b"\x10\x10"
                    elif b == ETX and self.mode == "play":
                        self._play_ending = True       # OK once the buffer drains
                    elif b == 0x18:                    # DLE CAN: flush TX
                        self._txbuf.clear()
                    elif (b == ord("^") and self.mode == "duplex") or (b in (ord("!"), 0x1B) and self.mode == "record"):
                        self.mode = "cmd"
                        self._txbuf.clear()
                        self.pty.write(b"\x10\x03\r\nOK\r\n")
                        return data[i:]
                    continue
                if b == DLE:
                    self._rx_dle_pending = True
                    continue
                if self.mode in ("duplex", "play"):
                    j = data.find(b"\x10", i)
                    j = len(data) if j < 0 else j
                    self._txbuf += data[i - 1:j]
                    self._tx_started = True
                    i = j
                if len(self._txbuf) > 8000 * 4:       # >2 s queued: overrun, drop the oldest
                    del self._txbuf[:8000]
                    self.stats.overruns += 1
                    self.pty.write(b"\x10o")
            return b""

    def _result(self, text: str) -> None:
        self.pty.write(f"\r\n{text}\r\n".encode("latin-1"))

    # ---- commands --------------------------------------------------------------------------
    def _command_line(self, line: str) -> None:
        if self.response_delay_s:
            time.sleep(self.rng.uniform(0, self.response_delay_s))
        with self._lock:
            if self.wedged:
                return
            self.stats.commands.append(line)
            body = line[2:]
            parts = [body] if body[:1].upper() == "D" else [p for p in body.split(";") if p] or [""]
            for part in parts:
                out = self._one(part.strip())
                if out is None:          # went into data mode or answers later
                    return
                if out == "ERROR":
                    self._result("ERROR")
                    return
                for text in out:
                    self._result(text)
            self._result("OK")

    def _one(self, cmd: str) -> list[str] | str | None:
        u = cmd.upper()
        voice = self.fclass == "8"
        p = self.profile
        if u in ("", "Q0", "V1", "&F", "&W", "&W0", "L0", "M0", "&C1", "&D2") or re.fullmatch(r"S[0-9.]+=\d+", u):
            return []
        if u == "Z":
            self._power_on()
            return []
        if u in ("E0", "E1"):
            self.lines.echo = u == "E1"
            return []
        if u in ("I", "I0"):
            return [p.ati0]
        if u == "I3":
            return [p.ati3]
        if u == "+GMI":
            return [p.gmi]
        if u == "+GMM":
            return [p.ati3]
        if u == "+FCLASS=?":
            return [p.classes]
        if u == "+FCLASS?":
            return [self.fclass]
        if u.startswith("+FCLASS="):
            val = u.split("=", 1)[1]
            if val not in p.classes.split(","):
                return "ERROR"
            self.fclass = val
            return []
        if u in ("H", "H0"):
            return self._on_hook()
        if u == "A":
            if self.call == "ringing":
                self._connect()
                self._result("VCON")
                return None
            return "ERROR"
        if u.startswith("D"):
            return self._dial(re.sub(r"[^0-9*#]", "", u[1:]))
        if not u.startswith("+V"):
            return "ERROR"
        # ---- voice commands: only in +FCLASS=8 (V.253) ----
        if not voice:
            return "ERROR"
        if u == "+VSM=?":
            return [p.vsm_prefix + text for _, text, _ in p.vsm]
        if u == "+VSM?":
            return [f"{self.vsm_cml},8000,0,0"] if self.vsm_cml is not None else ["0"]
        if u.startswith("+VSM="):
            try:
                args = [int(a) for a in re.findall(r"\d+", u)]
            except ValueError:
                return "ERROR"
            if not args or args[0] not in {c for c, _, _ in p.vsm} or (len(args) > 1 and args[1] != 8000):
                return "ERROR"
            self.vsm_cml = args[0]
            return []
        if u == "+VLS=?":
            return ['0,"",00000000,00000000,00000000', '1,"T",0CA0B3E0,0CA0B3E0,00000000']
        if u.startswith("+VLS="):
            val = u.split("=", 1)[1]
            if val == "0":
                return self._on_hook()
            self.hook_off = True
            if self.call == "ringing":
                self._connect()
            return []
        if u == "+VTR=?":
            return [] if p.duplex else "ERROR"
        if u in ("+VTR", "+VTX", "+VRX"):
            if not self.hook_off or self.vsm_cml is None:
                return "ERROR"
            if u == "+VTR" and not p.duplex:
                return "ERROR"
            self.mode = {"+VTR": "duplex", "+VTX": "play", "+VRX": "record"}[u]
            self._txbuf.clear()
            self._tx_started = self._in_underrun = self._play_ending = False
            self._result("CONNECT")
            if self.mode == "play" and p.spurious_dialtone_on_play:
                self.pty.write(b"\x10d")          # USR quirk: false dial tone while playing (MODEMS.md 1.7)
            return None
        if u == "+VTS=?":       # frequency ranges and duration (10 ms units), as Conexant lists them
            return ["(200-3200),(200-3200),(0-50)"]
        if u.startswith("+VTS="):
            return self._vts(cmd.split("=", 1)[1])
        if u.startswith(("+VCID=", "+VSD=", "+VGT=", "+VGR=", "+VIT=", "+VRA=", "+VRN=", "+VNH=",
                         "+VDR=", "+VPR=", "+VEM=", "+VCID?", "+VTD=")):
            if u.startswith("+VCID="):
                self.vcid = int(u.split("=", 1)[1] or 0) if u.split("=", 1)[1].isdigit() else 0
            return []
        return "ERROR"

    def _vts(self, arg: str) -> list[str] | str:
        if not self.hook_off:
            return "ERROR"
        for tok in re.findall(r"\{[^}]*\}|\[[^\]]*\]|[^,]+", arg):
            tok = tok.strip()
            sym = tok.strip("{}").split(",")[0].strip() if tok.startswith("{") else tok
            if sym == "!":
                self.far.flash_count += 1
                self._dial_digits = ""
                time.sleep(0.05)
            elif re.fullmatch(r"[0-9*#A-D]", sym):
                self.far.dtmf_heard += sym
                if self.far.flash_count:
                    self._dial_digits += sym
                time.sleep(0.01)
        return []

    def _connect(self) -> None:
        self.call = "connected"
        self.hook_off = True

    def _on_hook(self) -> list[str]:
        if self.far.flash_count and self._dial_digits and self.call == "connected":
            self.far.transferred_to = self._dial_digits    # the exchange joins caller and target
        elif self.call == "connected":
            self.far.hung_up = True
        self.hook_off = False
        if self.call != "ringing":       # a new caller waiting for the line keeps ringing
            self.call = None
        self.mode = "cmd"
        return []

    def _dial(self, number: str) -> list[str] | None:
        self.hook_off = True
        self.far = FarEnd()
        self.far.dialled = number
        result = self.dial_result

        def done() -> None:
            with self._lock:
                if result == "VCON":
                    self.call = "connected"
                else:
                    self.hook_off = False
                self._result(result)
        self.sched.at(0.05 if result == "NO DIALTONE" else self.dial_answer_s, done)
        return None

    # ---- the 8 kHz clock ---------------------------------------------------------------
    def _clock_loop(self) -> None:
        period = 0.020 / (1.0 + self.drift_ppm * 1e-6)
        next_tick = time.monotonic()
        while not self._stop:
            self.sched.run_due()
            with self._lock:
                active = self.mode != "cmd" and not self.wedged
            now = time.monotonic()
            if not active:
                next_tick = now + period
                time.sleep(0.005)
                continue
            if now < next_tick:
                time.sleep(min(next_tick - now, 0.005))
                continue
            next_tick += period
            if now - next_tick > 0.5:       # we were starved (machine busy): resync, do not burst
                next_tick = now + period
            self._tick()

    def _tick(self) -> None:
        with self._lock:
            if self.mode == "cmd":
                return
            kind = {c: k for c, _, k in self.profile.vsm}.get(self.vsm_cml, "ulaw")
            bps = 2 if kind == "s16le" else 1
            n = 160
            if self.mode in ("duplex", "record"):
                pcm = self.far.next_frame(n)
                self.pty.write(_encode(kind, pcm).replace(b"\x10", b"\x10\x10"))
                self.stats.frames_out += 1
            if self.mode in ("duplex", "play"):
                self.stats.tx_depth_samples.append(len(self._txbuf) // bps)
                want = n * bps
                chunk = bytes(self._txbuf[:want])
                del self._txbuf[:want]
                pcm = np.zeros(n, dtype=np.int16)
                if chunk:
                    dec = _decode(kind, chunk)
                    pcm[:len(dec)] = dec
                if len(chunk) < want and self._tx_started:
                    if self._play_ending and self.mode == "play":
                        self.mode = "cmd"
                        self._result("OK")
                    elif not self._in_underrun:
                        self._in_underrun = True
                        self.stats.underruns += 1
                        self.pty.write(b"\x10u")
                elif len(chunk) == want:
                    self._in_underrun = False
                self.far.hear(pcm)
                self.stats.frames_in += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default="/tmp/modem0", help="stable path the DTE opens (symlink to the pty)")
    ap.add_argument("--profile", default="conexant", choices=sorted(PROFILES))
    ap.add_argument("--ring", metavar="NUMBER", help="ring with this caller ID once started")
    ap.add_argument("--ring-period-s", type=float, default=6.0)
    ap.add_argument("--tone-hz", type=float, default=0.0, help="far end plays this tone once connected")
    ap.add_argument("--drift-ppm", type=float, default=0.0)
    args = ap.parse_args(argv)
    emu = VoiceModemEmulator(args.profile, link=args.link, ring_period_s=args.ring_period_s,
                             drift_ppm=args.drift_ppm).start()
    print(f"voice modem ({args.profile}) on {emu.port} -> {emu.pty.slave_path}; Ctrl-C to stop", flush=True)
    if args.ring:
        emu.ring(args.ring)
    try:
        while True:
            time.sleep(0.5)
            if args.tone_hz and emu.call == "connected" and not emu.far.said_samples:
                from modem_emulator_base import tone
                emu.far.say(tone(args.tone_hz, 60000))
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
