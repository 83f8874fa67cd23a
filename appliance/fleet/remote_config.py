"""Remote configuration: a desired config arrives (retained `config` topic or the `config.set`
command), is applied by the runtime's callback, written atomically, and reported.

Order matters for a box nobody visits: the callback validates and applies first; only a config that
applied is written to the config file (temp file, fsync, rename, fsync of the folder). If the callback
raises (a line did not come up), the previous file is applied again, so the box keeps running on the
config it had. A crash mid-way boots the old file; the retained desired config then arrives again.

Callback contract: `async fn(data) -> list[str]`. An empty list means applied. A non-empty list means
rejected and nothing changed (validation problems, every one). Raising (e.g. `ConfigApplyError`) means
the apply failed part-way: the previous config is applied again.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from ..errors import ApplianceError

log = logging.getLogger("appliance.fleet")

MAX_CONFIG_BYTES = 512 * 1024
ConfigHandler = Callable[[dict], Awaitable[list[str]]]


class ConfigApplyError(ApplianceError):
    """Raised by a config callback when applying failed part-way; the previous config is restored."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def digest(data: dict) -> str:
    """Stable fingerprint of a config (key order does not matter)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader (or a reboot) sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def parse_payload(payload: bytes) -> tuple[dict | None, list[str]]:
    """A desired config payload: a JSON object (YAML accepted too, as YAML is a superset)."""
    if len(payload) > MAX_CONFIG_BYTES:
        return None, [f"config too large: {len(payload)} bytes, at most {MAX_CONFIG_BYTES}"]
    try:
        data = yaml.safe_load(payload.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, [f"not JSON or YAML: {exc}"]
    if not isinstance(data, dict):
        return None, [f"<top>: got {type(data).__name__}, expected a mapping of sections"]
    return data, []


class RemoteConfig:
    """Applies desired configs one at a time and remembers the last one it processed."""

    def __init__(self, handler: ConfigHandler, config_path: Path, meta_get, meta_set):
        self.handler = handler
        self.config_path = Path(config_path)
        self._meta_get, self._meta_set = meta_get, meta_set
        self._lock = asyncio.Lock()

    async def apply(self, data: dict, source: str, force: bool = False) -> dict:
        """Apply one desired config; returns the report (also stored for repeats of the same config)."""
        async with self._lock:
            fp = digest(data)
            if not force and self._meta_get("config.digest") == fp:
                last = self._meta_get("config.report")
                if last:  # the retained desired config re-arrives on every reconnect: not news
                    report = json.loads(last)
                    report["repeat"] = True
                    return report
            report = await self._apply(data, fp)
            report.update(source=source, ts=time.time())
            self._meta_set("config.digest", fp)
            self._meta_set("config.report", json.dumps(report))
            return report

    async def _apply(self, data: dict, fp: str) -> dict:
        try:
            problems = await self.handler(data)
        except Exception as exc:
            problems = exc.problems if isinstance(exc, ConfigApplyError) else [f"{type(exc).__name__}: {exc}"]
            log.error("fleet: applying config %s failed (%s); restoring the previous one", fp, "; ".join(problems))
            return {"status": "rolled_back", "digest": fp, "problems": problems,
                    "rollback_problems": await self._restore()}
        if problems:
            return {"status": "rejected", "digest": fp, "problems": [str(p) for p in problems]}
        try:
            write_atomically(self.config_path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        except OSError as exc:
            problems = [f"cannot write {self.config_path}: {exc}"]
            return {"status": "rolled_back", "digest": fp, "problems": problems,
                    "rollback_problems": await self._restore()}
        return {"status": "applied", "digest": fp, "problems": []}

    async def _restore(self) -> list[str]:
        """Apply the config file as it still is on disk; problems if even that fails."""
        try:
            previous = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            previous = {}
        except (OSError, yaml.YAMLError) as exc:
            return [f"cannot read the previous config {self.config_path}: {exc}"]
        try:
            return [str(p) for p in await self.handler(previous)]
        except Exception as exc:
            log.critical("fleet: restoring the previous config failed too: %s", exc)
            return [f"{type(exc).__name__}: {exc}"]
