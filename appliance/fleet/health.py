"""What a box can say about its own health, read from /proc and /sys (Linux).

Every helper returns None (or omits a key) where this machine does not offer the figure, e.g. no
thermal zone inside a container: a missing figure is reported as missing, never as zero.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

_PROCESS_START = time.monotonic()


def cpu_load() -> dict | None:
    """Load averages over 1, 5, 15 minutes, and the 1-minute load per core (1.0 = all cores busy)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    cores = os.cpu_count() or 1
    return {"load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2),
            "cores": cores, "load_per_core": round(one / cores, 3)}


def temperature_c(sys_root: Path = Path("/sys")) -> float | None:
    """Hottest thermal zone in °C (the SoC on a Raspberry Pi), or None without /sys thermal zones."""
    hottest = None
    for zone in sorted((sys_root / "class" / "thermal").glob("thermal_zone*/temp")):
        try:
            milli = int(zone.read_text().strip())
        except (OSError, ValueError):
            continue
        value = milli / 1000.0
        if -40.0 < value < 150.0 and (hottest is None or value > hottest):
            hottest = value
    return None if hottest is None else round(hottest, 1)


def memory(proc_root: Path = Path("/proc")) -> dict | None:
    """Total and available memory (MB), the used share, and this process's resident size."""
    try:
        text = (proc_root / "meminfo").read_text()
    except OSError:
        return None
    kb = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            kb[name] = int(parts[0])
    total = kb.get("MemTotal")
    avail = kb.get("MemAvailable", kb.get("MemFree"))
    if not total or avail is None:
        return None
    out = {"total_mb": round(total / 1024, 1), "available_mb": round(avail / 1024, 1),
           "used_pct": round(100.0 * (total - avail) / total, 1)}
    rss = process_rss_mb(proc_root)
    if rss is not None:
        out["process_rss_mb"] = rss
    return out


def process_rss_mb(proc_root: Path = Path("/proc"), pid: int | str = "self") -> float | None:
    """Resident set size of a process in MB (VmRSS)."""
    try:
        for line in (proc_root / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def disk(path: str | os.PathLike = "/") -> dict | None:
    """Size, free space (MB) and used share of the file system holding `path`."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return {"path": str(path), "total_mb": round(usage.total / 2**20, 1), "free_mb": round(usage.free / 2**20, 1),
            "used_pct": round(100.0 * usage.used / usage.total, 1) if usage.total else None}


def uptime_s(proc_root: Path = Path("/proc")) -> dict:
    """Seconds since the system booted (if known) and since this process started."""
    out = {"process_s": round(time.monotonic() - _PROCESS_START, 1)}
    try:
        out["system_s"] = round(float((proc_root / "uptime").read_text().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        pass
    return out


def snapshot(disk_path: str | os.PathLike = "/") -> dict:
    """All of the above in one dict, keys omitted where this machine has no figure."""
    out: dict = {"uptime_s": uptime_s()}
    for key, value in (("cpu", cpu_load()), ("temperature_c", temperature_c()), ("memory", memory()),
                       ("disk", disk(disk_path))):
        if value is not None:
            out[key] = value
    return out
