"""Qualify a modem on a serial port: what it really can do for the agent.

`qualify(port)` asks the device (never assumes from its name) and returns a capability
matrix: does it answer AT, who it says it is, its service classes, whether V.253 voice mode
works (`AT+FCLASS=8` accepted and `AT+VSM=?` listing an 8 kHz format we can use), full duplex
(`AT+VTR=?`), caller ID (`AT+VCID=1`), DTMF detection, and for cellular modems the SIM,
registration and signal. A lenient Hayes parser (iaxmodem answers OK to `AT+VTR=?` and
`AT+VCID=1`) is not taken at its word: voice needs class 8 *and* a sample format.

`format_report(result)` renders it for `appliance doctor --port PORT`.
Run by hand: `python -m appliance.modem_doctor /dev/ttyACM0`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .errors import LineError
from .lines.at import ATChannel, ModemGone, ModemTimeout, Response
from .lines.gsm import CREG_STAT, detect_gsm_dialect, parse_creg, rssi_to_dbm
from .lines.modem_dialects import detect_dialect
from .lines.vsm import choose_codec, parse_vsm_list

SIM_STATES = ("READY", "SIM PIN", "SIM PUK", "PH-SIM PIN", "SIM PIN2", "SIM PUK2", "NOT INSERTED", "NOT READY")


def _ask(ch: ATChannel, cmd: str, timeout_s: float, log: list[str]) -> Response | None:
    """Send one command; record `cmd -> result` in the transcript; None on ERROR/timeout."""
    try:
        r = ch.command(cmd, timeout_s, check=False)
    except ModemTimeout:
        log.append(f"{cmd} -> (no answer)")
        return None
    shown = " | ".join(r.lines[:4]) + (" | " if r.lines else "") + r.final
    log.append(f"{cmd} -> {shown}")
    if r.final != "OK":
        return None
    return r


def qualify(port: str, baudrate: int = 115200, timeout_s: float = 2.0) -> dict[str, Any]:
    """Probe the modem on `port` (device path or pyserial URL) and return its capability matrix.
    `ok` is True only for a device that can carry calls (a V.253 voice modem or a 27.007
    cellular modem); `summary` (= `verdict`) says what it is and why, in one line."""
    res = _qualify(port, baudrate, timeout_s)
    res["ok"] = res["kind"] in ("voice-modem", "gsm-modem")
    res["summary"] = res.get("verdict", "")
    return res


def _qualify(port: str, baudrate: int, timeout_s: float) -> dict[str, Any]:
    res: dict[str, Any] = {
        "port": port, "responds": False, "kind": "no-answer", "identity": {}, "dialect": None,
        "classes": [], "fclass8": None, "voice": False, "sample_formats": [], "format": None,
        "full_duplex": None, "barge_in": False, "caller_id": None, "dtmf_detection": None, "dtmf_generation": None,
        "gsm": None, "notes": [], "transcript": [],
    }
    log: list[str] = res["transcript"]
    ch = ATChannel(port, baudrate, name="doctor")
    try:
        ch.open()
    except ModemGone as exc:
        res["verdict"] = f"cannot open {port}: {exc}"
        return res
    try:
        for _ in range(3):
            if _ask(ch, "AT", timeout_s, log) is not None:
                res["responds"] = True
                break
        if not res["responds"]:
            res["verdict"] = "no answer to AT: not a modem, wrong port or baud rate, or the modem is wedged"
            return res
        res["kind"] = "at-device"
        _ask(ch, "ATZ", max(timeout_s, 3.0), log)
        _ask(ch, "ATE0", timeout_s, log)
        ident = {}
        for cmd in ("ATI", "ATI3", "AT+GMI", "AT+CGMI", "AT+CGMM", "AT+CGMR"):
            r = _ask(ch, cmd, timeout_s, log)
            if r is not None and r.lines:
                ident[cmd] = " ".join(r.lines)
        res["identity"] = ident
        ident_text = " ".join(ident.values())
        _qualify_voice(ch, res, ident_text, timeout_s, log)
        _qualify_gsm(ch, res, ident_text, timeout_s, log)
        res["verdict"] = _verdict(res)
        return res
    except (ModemGone, LineError) as exc:
        res["notes"].append(f"device lost during the probe: {exc}")
        res["verdict"] = f"device lost during the probe: {exc}"
        return res
    finally:
        ch.close()


def _qualify_voice(ch: ATChannel, res: dict[str, Any], ident_text: str, timeout_s: float, log: list[str]) -> None:
    r = _ask(ch, "AT+FCLASS=?", timeout_s, log)
    classes = [c.strip().strip("()") for c in ",".join(r.lines).split(",") if c.strip()] if r else []
    res["classes"] = classes
    if classes:
        res["kind"] = "data-modem" if any(c in ("1", "1.0", "2", "2.0", "2.1") for c in classes) else "at-device"
    res["fclass8"] = _ask(ch, "AT+FCLASS=8", timeout_s, log) is not None
    if not res["fclass8"]:
        res["notes"].append("AT+FCLASS=8 refused: no V.253 voice mode")
        return
    r = _ask(ch, "AT+VSM=?", timeout_s, log)
    codecs = parse_vsm_list(r.lines if r else [])
    res["sample_formats"] = [c.describe() for c in codecs]
    chosen = choose_codec(codecs)
    res["format"] = chosen.describe() if chosen else None
    if chosen is None:
        res["notes"].append("voice class accepted but AT+VSM=? lists no 8 kHz format we can use "
                            "(u-law, A-law, 8/16-bit linear)")
    if "8" not in classes:
        res["notes"].append("class 8 works although AT+FCLASS=? does not list it")
    res["voice"] = chosen is not None
    if res["voice"]:
        res["kind"] = "voice-modem"
        res["dialect"] = detect_dialect(ident_text).name
        res["full_duplex"] = _ask(ch, "AT+VTR=?", timeout_s, log) is not None
        res["barge_in"] = bool(res["full_duplex"])
        if not res["full_duplex"]:
            res["notes"].append("half duplex (no +VTR): the caller cannot be heard while the agent speaks, "
                                "so barge-in is impossible")
        cid = _ask(ch, "AT+VCID=1", timeout_s, log) is not None
        if not cid and res["dialect"] == "zyxel":
            cid = _ask(ch, "ATS40.2=1", timeout_s, log) is not None
        res["caller_id"] = cid
        # V.253 voice mode reports DTMF as DLE events (mandatory); +VTS generates it
        res["dtmf_detection"] = True
        res["dtmf_generation"] = _ask(ch, "AT+VTS=?", timeout_s, log) is not None
        _ask(ch, "AT+VLS=?", timeout_s, log)
    _ask(ch, "AT+FCLASS=0", timeout_s, log)


def _qualify_gsm(ch: ATChannel, res: dict[str, Any], ident_text: str, timeout_s: float, log: list[str]) -> None:
    r = _ask(ch, "AT+CSQ", timeout_s, log)
    csq = r.first("+CSQ:") if r else None
    r = _ask(ch, "AT+CPIN?", timeout_s, log)
    sim = (r.first("+CPIN:") or "").upper() if r else ""
    if csq is None or sim not in SIM_STATES:
        if r is None and csq is not None:
            sim = "absent or error"
        else:
            return
    gsm: dict[str, Any] = {"sim": sim.lower(), "dialect": detect_gsm_dialect(ident_text).name}
    parts = [p.strip() for p in (csq or "").split(",")]
    if parts and parts[0].isdigit():
        gsm["rssi"] = int(parts[0])
        gsm["signal_dbm"] = rssi_to_dbm(int(parts[0]))
    for cmd, key in (("AT+CREG?", "creg"), ("AT+CEREG?", "cereg")):
        r = _ask(ch, cmd, timeout_s, log)
        parsed = parse_creg(r.lines[0]) if r and r.lines else None
        if parsed:
            gsm[key] = CREG_STAT.get(parsed[0], str(parsed[0]))
    gsm["registered"] = any(gsm.get(k) in ("home", "roaming") for k in ("creg", "cereg"))
    r = _ask(ch, "AT+COPS?", timeout_s, log)
    if r and r.first("+COPS:"):
        op = (r.first("+COPS:") or "").split('"')
        gsm["operator"] = op[1] if len(op) > 1 else ""
    gsm["clip"] = _ask(ch, "AT+CLIP=1", timeout_s, log) is not None
    gsm["call_list"] = _ask(ch, "AT+CLCC", timeout_s, log) is not None
    gsm["transfer_ctfr"] = _ask(ch, "AT+CTFR=?", timeout_s, log) is not None
    gsm["hold_chld"] = _ask(ch, "AT+CHLD=?", timeout_s, log) is not None
    dtmf_cmd = {"sim7600": "AT+DDET=1", "sim800": "AT+DDET=1", "ec25": "AT+QTONEDET=1"}.get(gsm["dialect"])
    res["dtmf_detection"] = (_ask(ch, dtmf_cmd, timeout_s, log) is not None) if dtmf_cmd else None
    gsm["audio"] = {"sim7600": "serial PCM (AT+CPCMREG)", "ec25": "serial PCM or UAC (AT+QPCMV)",
                    "sim800": "analog MIC/SPK only: needs a USB sound card"}.get(gsm["dialect"], "unknown: check the manual")
    res["gsm"] = gsm
    res["kind"] = "gsm-modem"
    res["caller_id"] = gsm["clip"]
    res["dtmf_generation"] = True
    res["full_duplex"] = True
    res["barge_in"] = True


def _verdict(res: dict[str, Any]) -> str:
    kind = res["kind"]
    if kind == "voice-modem":
        duplex = "full duplex" if res["full_duplex"] else "HALF DUPLEX (barge-in impossible)"
        return f"V.253 voice modem ({res['dialect']} dialect), {duplex}, format {res['format']}: usable as a phone line"
    if kind == "gsm-modem":
        g = res["gsm"]
        reg = "registered" if g.get("registered") else "NOT registered"
        return (f"3GPP 27.007 cellular modem ({g['dialect']} dialect), SIM {g['sim']}, {reg}, "
                f"signal {g.get('signal_dbm')} dBm: usable as a phone line")
    if kind == "data-modem":
        classes = ",".join(res["classes"])
        why = "AT+FCLASS=8 -> ERROR" if res["fclass8"] is False else "no usable voice sample format"
        return (f"Hayes-compatible data/fax modem (classes {classes}), NOT a voice modem ({why}): "
                "it cannot carry calls for the agent")
    if kind == "at-device":
        return "answers AT but is neither a V.253 voice modem nor a cellular modem: not usable as a phone line"
    return res.get("verdict") or "no answer"


def _yn(v: Any) -> str:
    return "n/a" if v is None else ("yes" if v is True else "no" if v is False else str(v))


def format_report(result: dict[str, Any]) -> str:
    """The capability matrix as text."""
    r = result
    ident = " / ".join(dict.fromkeys(r["identity"].values())) or "-"
    rows = [
        ("responds to AT", _yn(r["responds"])),
        ("identity", ident),
        ("service classes", ",".join(r["classes"]) or "-"),
        ("V.253 voice (+FCLASS=8)", _yn(r["voice"]) + ("" if r["fclass8"] is not False else "  (AT+FCLASS=8 -> ERROR)")),
        ("full duplex (+VTR)", _yn(r["full_duplex"])),
        ("barge-in possible", _yn(r["barge_in"])),
        ("caller ID", _yn(r["caller_id"])),
        ("DTMF detection", _yn(r["dtmf_detection"])),
        ("sample formats", "; ".join(r["sample_formats"]) or "-"),
        ("format chosen", r["format"] or "-"),
    ]
    g = r.get("gsm")
    if g:
        rows += [("GSM SIM", g.get("sim")), ("GSM registration", f"CS {g.get('creg', '-')}, LTE {g.get('cereg', '-')}"),
                 ("GSM signal", f"{g.get('signal_dbm')} dBm (rssi {g.get('rssi')})"),
                 ("GSM operator", g.get("operator") or "-"),
                 ("GSM hold / transfer", f"+CHLD {_yn(g.get('hold_chld'))}, +CTFR {_yn(g.get('transfer_ctfr'))}"),
                 ("GSM audio", g.get("audio"))]
    else:
        rows.append(("GSM (27.007)", "no" if r["responds"] else "n/a"))
    width = max(len(k) for k, _ in rows)
    out = [f"Modem on {r['port']}: {r.get('verdict', '')}"]
    out += [f"  {k:<{width}}  {v}" for k, v in rows]
    out += [f"  note: {n}" for n in r["notes"]]
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("port", help="serial device or pyserial URL")
    p.add_argument("--baudrate", type=int, default=115200)
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--transcript", action="store_true", help="print every command and answer")


def main(args: argparse.Namespace) -> int:
    import json

    res = qualify(args.port, args.baudrate, args.timeout_s)
    if args.json:
        print(json.dumps(res))
    else:
        print(format_report(res))
        if args.transcript:
            print("\n".join("  > " + t for t in res["transcript"]))
    return 0 if res["kind"] in ("voice-modem", "gsm-modem") else 1


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(prog="python -m appliance.modem_doctor", description=__doc__.splitlines()[0])
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
