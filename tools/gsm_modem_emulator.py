#!/usr/bin/env python3
"""A 3GPP 27.007 GSM/LTE voice modem on two ptys (AT port + serial PCM port), for tests and by hand.

    python tools/gsm_modem_emulator.py --link /tmp/gsm0 [--profile sim7600] [--ring +15551234]

The AT port is `--link`, the PCM port `--link`-audio (SIM7600 ttyUSB2 + ttyUSB4; EC25 ttyUSB2 +
ttyUSB1). Behaviour per MODEMS.md §2 and the drivers it cites, quirks included:
- echo on after power-up/ATZ; `+CPIN: READY` or `SIM PIN` (PIN `1234`), `+CME ERROR: 16` on a wrong PIN;
- registration `+CREG: <n>,<stat>` (read form) vs `+CREG: <stat>` URC; `+CSQ: <rssi>,<ber>`;
- RING + `+CLIP: "<number>",<type>,,,,<validity>` every `ring_period_s`; `+CLCC` URCs after
  `AT+CLCC=1` (SIMCom); `VOICE CALL: BEGIN` / `VOICE CALL: END: <dur>` (SIMCom); `MISSED_CALL:`;
- `ATA`, `ATD<n>;` (OK at once, then the call progresses: dialing, alerting, active or BUSY /
  NO ANSWER), `ATH` (only with `+CVHU=0`), `AT+CHUP`, `AT+VTS`, `AT+CHLD` (0,1,1x,2,4 ECT),
  `AT+CTFR` (deflect a ringing call);
- DTMF from the far end: `+RXDTMF: 5` after `AT+DDET=1` (SIMCom), `+QTONEDET: 53` after
  `AT+QTONEDET=1` (Quectel), `+DTMF: 5` (SIM800);
- audio: SIM7600 `AT+CPCMREG=1` once the call is active (and the quirk that after an on/off
  cycle the next `CPCMREG=1` fails once), EC25 `AT+QPCMV=1,0`; 8 kHz 16-bit LE, 320 B per
  20 ms on the module's own clock (`drift_ppm`); SIM800 has analog audio only;
- faults: `wedge()`, `unplug()`/`replug()` (both ptys vanish), `inject()` stray bytes.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modem_emulator_base import FarEnd, ModemEmulator, PtyEndpoint  # noqa: E402


@dataclass(frozen=True)
class GsmProfile:
    name: str
    manufacturer: str
    model: str
    revision: str
    audio: str            # cpcmreg | qpcmv | analog
    dtmf: str             # ddet-rxdtmf | qtonedet | ddet-dtmf
    voice_call_urcs: bool
    clcc_urc: bool


PROFILES = {
    "sim7600": GsmProfile("sim7600", "SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H", "LE20B04SIM7600G22",
                          "cpcmreg", "ddet-rxdtmf", True, True),
    "ec25": GsmProfile("ec25", "Quectel", "EC25", "EC25EFAR06A06M4G", "qpcmv", "qtonedet", False, False),
    "sim800": GsmProfile("sim800", "SIMCOM_Ltd", "SIMCOM_SIM800L", "Revision:1418B04SIM800L24",
                         "analog", "ddet-dtmf", False, False),
}


@dataclass
class GsmCall:
    idx: int
    dir: int              # 0 MO, 1 MT
    stat: int             # 0 active 1 held 2 dialing 3 alerting 4 incoming 5 waiting
    number: str
    started: float = 0.0

    def clcc(self) -> str:
        typ = 145 if self.number.startswith("+") else 129
        return f'+CLCC: {self.idx},{self.dir},{self.stat},0,0,"{self.number}",{typ}'


class GsmModemEmulator(ModemEmulator):
    """A cellular voice modem behind an AT pty and a PCM pty."""

    PROFILES = PROFILES
    NAME = "gsm-at"

    def __init__(self, profile: str = "sim7600", link: str | None = None, *, pin: str | None = None,
                 drift_ppm: float = 0.0, ring_period_s: float = 3.0, response_delay_s: float = 0.01,
                 rssi: int = 20, seed: int = 1, dial_answer_s: float = 0.8):
        self.pin, self.rssi = pin, rssi
        self.dial_result: dict[str, str] = {}     # number -> "BUSY" / "NO ANSWER" (default: answers)
        super().__init__(profile, link, drift_ppm=drift_ppm, ring_period_s=ring_period_s,
                         response_delay_s=response_delay_s, seed=seed, dial_answer_s=dial_answer_s)
        self.audio_pty = PtyEndpoint(self._on_audio, link=f"{link}-audio" if link else None, name="gsm-pcm")
        self.commands: list[str] = []
        self.pcm_errors = 0
        self.underruns = 0
        self.tx_depth_samples: list[int] = []
        self._power_on()

    def _ptys(self) -> list[PtyEndpoint]:
        return [self.pty, self.audio_pty]

    @property
    def audio_port(self) -> str:
        return self.audio_pty.path

    def _power_on(self) -> None:
        self.lines.echo = True
        self.sim_ready = self.pin is None
        self.creg_n = self.cereg_n = 0
        self.clip = False
        self.clcc_urc = False
        self.cvhu = 1
        self.dtmf_on = False
        self.cmee = 0
        self.calls: dict[int, GsmCall] = {}
        self.pcm_on = False
        self.qpcmv = False
        self._pcm_cycled = False
        self._pcm_reg = False
        self._txbuf = bytearray()
        self._tx_started = False
        self.sched.clear()

    # ---- far end ----------------------------------------------------------------------
    def ring(self, number: str = "+15551234", rings: int = 10, withheld: bool = False) -> None:
        with self._lock:
            self.far = FarEnd()
            idx = self._free_idx()
            self.calls[idx] = GsmCall(idx, 1, 4, "" if withheld else number)
            self._ringing_idx, self._rings, self._withheld = idx, rings, withheld
            self._ring_count = 0
            self._clcc_urc(self.calls[idx])
        self._ring_once()

    def _ring_once(self) -> None:
        with self._lock:
            c = self.calls.get(self._ringing_idx)
            if c is None or c.stat != 4:
                return
            if self._ring_count >= self._rings:
                self._release(c, missed=True)
                return
            self._ring_count += 1
            self._urc("RING")
            if self.clip:
                if self._withheld:
                    self._urc('+CLIP: "",128,,,,1')
                else:
                    self._urc(f'+CLIP: "{c.number}",{145 if c.number.startswith("+") else 129},,,,0')
        self.sched.at(self.ring_period_s, self._ring_once)

    def send_dtmf(self, digits: str, gap_s: float = 0.15) -> None:
        for k, d in enumerate(digits):
            self.far.dtmf_sent += d
            self.sched.at(k * gap_s, lambda d=d: self._dtmf_urc(d))

    def _dtmf_urc(self, d: str) -> None:
        with self._lock:
            if not self.dtmf_on or not self._active():
                return
            p = self.profile.dtmf
            self._urc(f"+QTONEDET: {ord(d)}" if p == "qtonedet" else
                      f"+RXDTMF: {d}" if p == "ddet-rxdtmf" else f"+DTMF: {d}")

    def far_hangup(self) -> None:
        with self._lock:
            self.far.hung_up = True
            for c in list(self.calls.values()):
                self._release(c)

    # ---- helpers ------------------------------------------------------------------------
    def _free_idx(self) -> int:
        i = 1
        while i in self.calls:
            i += 1
        return i

    def _active(self) -> GsmCall | None:
        return next((c for c in self.calls.values() if c.stat == 0), None)

    def _urc(self, text: str) -> None:
        if not self.wedged:
            self.pty.write(f"\r\n{text}\r\n".encode())

    def _clcc_urc(self, c: GsmCall) -> None:
        if self.clcc_urc and self.profile.clcc_urc:
            self._urc(c.clcc())

    def _set_stat(self, c: GsmCall, stat: int) -> None:
        c.stat = stat
        if stat == 0 and not c.started:
            c.started = time.monotonic()
            if self.profile.voice_call_urcs:
                self._urc("VOICE CALL: BEGIN")
        self._clcc_urc(c)

    def _release(self, c: GsmCall, missed: bool = False) -> None:
        self.calls.pop(c.idx, None)
        if missed:
            if self.profile.voice_call_urcs:
                self._urc(f"MISSED_CALL: {time.strftime('%I:%M%p')} {c.number}")
        else:
            if c.started and self.profile.voice_call_urcs:
                dur = int(time.monotonic() - c.started)
                self._urc(f"VOICE CALL: END: {dur // 60:04d}{dur % 60:02d}")
            if self.clcc_urc and self.profile.clcc_urc:
                self._urc(f'+CLCC: {c.idx},{c.dir},6,0,0,"{c.number}",129')
            if not self.calls:
                self._urc("NO CARRIER")
        if not self.calls:
            self.pcm_on = False

    # ---- DTE bytes ----------------------------------------------------------------------------
    def _on_dtr_drop(self) -> None:
        with self._lock:
            self.wedged = False
            for c in list(self.calls.values()):    # &D2-style: DTR drop ends calls
                self.calls.pop(c.idx, None)
            self._power_on()

    def _on_bytes(self, data: bytes) -> None:
        if self.wedged:
            return
        for line in self.lines.feed(data):
            if self.response_delay_s:
                time.sleep(self.rng.uniform(0, self.response_delay_s))
            with self._lock:
                if self.wedged:
                    return
                self.commands.append(line)
                out = self._command(line[2:].strip())
                if out is None:
                    continue
                if isinstance(out, str):
                    self.pty.write(f"\r\n{out}\r\n".encode())
                    continue
                for text in out:
                    self.pty.write(f"\r\n{text}\r\n".encode())
                self.pty.write(b"\r\nOK\r\n")

    def _err(self, code: int) -> str:
        return f"+CME ERROR: {code}" if self.cmee else "ERROR"

    def _command(self, cmd: str) -> list[str] | str | None:
        u = cmd.upper()
        p = self.profile
        if u in ("", "V1", "Q0", "&F", "&W", "+CRC=0", "+CRC=1", "+CPCMFRM=0", "+CPCMFRM=1", "+CLVL=5"):
            return []
        if u == "Z":
            self._power_on()
            return []
        if u in ("E0", "E1"):
            self.lines.echo = u == "E1"
            return []
        if u in ("I", "I0"):
            return [f"Manufacturer: {p.manufacturer}", f"Model: {p.model}", f"Revision: {p.revision}",
                    "IMEI: 861234567890123", "+GCAP: +CGSM"]
        if u in ("+CGMI", "+GMI"):
            return [p.manufacturer]
        if u in ("+CGMM", "+GMM"):
            return [p.model]
        if u in ("+CGMR", "+GMR"):
            return [p.revision]
        if u.startswith("+CMEE="):
            self.cmee = int(u[6:] or 0) if u[6:].isdigit() else 0
            return []
        if u == "+CPIN?":
            return ["+CPIN: READY" if self.sim_ready else "+CPIN: SIM PIN"]
        if u.startswith("+CPIN="):
            if self.sim_ready:
                return self._err(3)
            if u[6:].strip('"') == (self.pin or ""):
                self.sim_ready = True
                self.sched.at(0.2, lambda: self._urc("SMS DONE"))
                return []
            return self._err(16)
        if not self.sim_ready and u.startswith(("D", "A", "+CREG", "+CEREG", "+CLCC", "+CHLD", "+CTFR")):
            return self._err(11)                  # SIM PIN required
        if u.startswith("+CREG=") or u.startswith("+CEREG="):
            n = int(u.split("=")[1]) if u.split("=")[1].isdigit() else 0
            if u.startswith("+CREG="):
                self.creg_n = n
            else:
                self.cereg_n = n
            return []
        if u == "+CREG?":
            extra = ',"1A2B","01C3D4E5",7' if self.creg_n == 2 else ""
            return [f"+CREG: {self.creg_n},1{extra}"]
        if u == "+CEREG?":
            extra = ',"1A2B","01C3D4E5",7' if self.cereg_n == 2 else ""
            return [f"+CEREG: {self.cereg_n},1{extra}"]
        if u == "+CSQ":
            return [f"+CSQ: {self.rssi},99"]
        if u == "+COPS?":
            return ['+COPS: 0,0,"Emulated Net",7']
        if u.startswith("+CLIP="):
            self.clip = u.endswith("1")
            return []
        if u.startswith("+CVHU="):
            self.cvhu = int(u[6:]) if u[6:].isdigit() else 1
            return []
        if u == "+CLCC":
            return [c.clcc() for c in sorted(self.calls.values(), key=lambda c: c.idx)]
        if u.startswith("+CLCC="):
            self.clcc_urc = u.endswith("1")
            return []
        if u == "+DDET=1" and p.dtmf.startswith("ddet") or u == "+QTONEDET=1" and p.dtmf == "qtonedet":
            self.dtmf_on = True
            return []
        if u.startswith("+CPCMREG=") and p.audio == "cpcmreg":
            on = u[9:].startswith("1")
            if on:
                if not self._active():
                    return "ERROR"
                if self._pcm_cycled:
                    self._pcm_cycled = False
                    return "ERROR"            # CP #121: the first CPCMREG=1 after a cycle fails
                self.pcm_on = self._pcm_reg = True
                self._txbuf.clear()
                self._tx_started = False
            else:
                if self._pcm_reg:           # registered, then released: the endpoint degrades
                    self._pcm_cycled = True
                self.pcm_on = self._pcm_reg = False
            return []
        if u.startswith("+QPCMV=") and p.audio == "qpcmv":
            self.qpcmv = u[7:].startswith("1")
            return []
        if u == "A":
            c = next((c for c in self.calls.values() if c.stat == 4), None)
            if c is None:
                return "NO CARRIER"
            self._set_stat(c, 0)
            if p.audio == "qpcmv" and self.qpcmv:
                self.pcm_on = True
            return []
        if u.startswith("D"):
            return self._dial(u[1:])
        if u in ("H", "H0"):
            if self.cvhu != 0:
                return []                  # +CVHU=1: ATH does not end voice calls (SW)
            for c in [c for c in self.calls.values() if c.stat == 0]:
                self._release(c)
            return []
        if u == "+CHUP":
            for c in list(self.calls.values()):
                self._release(c)
            return []
        if u.startswith("+VTS="):
            if not self._active():
                return self._err(3)
            self.far.dtmf_heard += u[5:].strip('"')[:1]
            return []
        if u == "+CHLD=?":
            return ["+CHLD: (0,1,1x,2,2x,3,4)"]
        if u == "+CTFR=?":
            return []
        if u.startswith("+CHLD="):
            return self._chld(u[6:])
        if u.startswith("+CTFR="):
            c = next((c for c in self.calls.values() if c.stat in (4, 5)), None)
            if c is None:
                return self._err(3)
            self.far.transferred_to = u[6:].split(",")[0].strip('"')
            self.calls.pop(c.idx, None)
            return []
        if u.startswith("+CFUN=1,1"):
            self.sched.at(0.3, lambda: self._reboot())
            return []
        return "ERROR"

    def _reboot(self) -> None:
        with self._lock:
            self._power_on()
            self._urc("RDY")
            self._urc("+CPIN: READY" if self.sim_ready else "+CPIN: SIM PIN")

    def _dial(self, rest: str) -> list[str] | str:
        if not rest.endswith(";"):
            return "NO CARRIER"                       # a data call: no data service here
        number = re.sub(r"[^0-9+*#]", "", rest)
        idx = self._free_idx()
        c = GsmCall(idx, 0, 2, number)
        self.calls[idx] = c
        self._clcc_urc(c)
        result = self.dial_result.get(number, "ANSWER")

        def alerting() -> None:
            with self._lock:
                if self.calls.get(idx) is c:
                    self._set_stat(c, 3)

        def outcome() -> None:
            with self._lock:
                if self.calls.get(idx) is not c:
                    return
                if result == "ANSWER":
                    if not any(x.stat == 1 for x in self.calls.values()):
                        self.far = FarEnd()
                    self.far.dialled = number
                    self._set_stat(c, 0)
                    if self.profile.audio == "qpcmv" and self.qpcmv:
                        self.pcm_on = True
                else:
                    self.calls.pop(idx, None)
                    self._urc(result)
        self.sched.at(0.2, alerting)
        self.sched.at(self.dial_answer_s, outcome)
        return []

    def _chld(self, arg: str) -> list[str] | str:
        calls = self.calls
        if arg == "0":
            for c in [c for c in calls.values() if c.stat in (1, 5)]:
                self._release(c)
        elif arg == "1":
            for c in [c for c in calls.values() if c.stat == 0]:
                self._release(c)
            other = next((c for c in calls.values() if c.stat in (1, 5)), None)
            if other:
                self._set_stat(other, 0)
        elif re.fullmatch(r"1\d", arg):
            c = calls.get(int(arg[1]))
            if c is None:
                return self._err(3)
            self._release(c)
        elif arg == "2":
            for c in calls.values():
                if c.stat == 0:
                    self._set_stat(c, 1)
                elif c.stat in (1, 5):
                    self._set_stat(c, 0)
            self.pcm_on = self.pcm_on and self._active() is not None
        elif arg == "4":
            held = next((c for c in calls.values() if c.stat == 1), None)
            other = next((c for c in calls.values() if c.stat in (0, 3)), None)
            if held is None or other is None:
                return self._err(3)
            self.far.transferred_to = other.number    # the held party now talks to `other`
            for c in (held, other):
                calls.pop(c.idx, None)
            self._urc("NO CARRIER")
            self.pcm_on = False
        else:
            return self._err(3)
        return []

    # ---- PCM audio --------------------------------------------------------------------------------
    def _on_audio(self, data: bytes) -> None:
        with self._lock:
            if self.pcm_on:
                self._txbuf += data
                self._tx_started = True
                if len(self._txbuf) > 16000 * 2:
                    del self._txbuf[:16000]

    def _clock_loop(self) -> None:
        period = 0.020 / (1.0 + self.drift_ppm * 1e-6)
        next_tick = time.monotonic()
        while not self._stop:
            self.sched.run_due()
            with self._lock:
                active = self.pcm_on and not self.wedged and self._active() is not None
            now = time.monotonic()
            if not active:
                next_tick = now + period
                time.sleep(0.005)
                continue
            if now < next_tick:
                time.sleep(min(next_tick - now, 0.005))
                continue
            next_tick += period
            if now - next_tick > 0.5:
                next_tick = now + period
            with self._lock:
                self.audio_pty.write(self.far.next_frame(160).astype("<i2").tobytes())
                self.tx_depth_samples.append(len(self._txbuf) // 2)
                chunk = bytes(self._txbuf[:320])
                del self._txbuf[:320]
                pcm = np.zeros(160, dtype=np.int16)
                if chunk:
                    pcm[:len(chunk) // 2] = np.frombuffer(chunk[: len(chunk) // 2 * 2], dtype="<i2")
                if len(chunk) < 320 and self._tx_started:
                    self.underruns += 1
                self.far.hear(pcm)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default="/tmp/gsm0", help="AT port path (the PCM port is LINK-audio)")
    ap.add_argument("--profile", default="sim7600", choices=sorted(PROFILES))
    ap.add_argument("--pin", default=None, help="SIM asks for this PIN")
    ap.add_argument("--ring", metavar="NUMBER", help="ring with this caller ID once started")
    ap.add_argument("--ring-period-s", type=float, default=3.0)
    ap.add_argument("--drift-ppm", type=float, default=0.0)
    args = ap.parse_args(argv)
    emu = GsmModemEmulator(args.profile, link=args.link, pin=args.pin, ring_period_s=args.ring_period_s,
                           drift_ppm=args.drift_ppm).start()
    print(f"GSM modem ({args.profile}): AT {emu.port}, PCM {emu.audio_port}; Ctrl-C to stop", flush=True)
    if args.ring:
        emu.ring(args.ring)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
