"""Preparing a Piper voice for sherpa-onnx 2.x, and phonemizing text for it.

sherpa-onnx reads a VITS/Piper voice's settings from the ONNX file's metadata (`model_type`,
`comment=piper`, `sample_rate`, ...) and wants a `tokens.txt` (`symbol id` per line). Piper's own
files keep these in the `.onnx.json` instead. `prepare_voice` writes, once, a copy of the model with
the metadata appended (protobuf field 14 `metadata_props` of ModelProto: appending encoded entries
to the serialized message is valid protobuf, so no `onnx` package is needed) and the tokens file
into a cache folder keyed by the model's sha256.

sherpa-onnx 2.x no longer phonemizes Piper voices itself: `phonemize` returns one list of IPA
code points per sentence (espeak-ng via `piper-phonemize`, as Piper does), for
`GenerationConfig.phoneme_codepoints`.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from ..errors import ModelError


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def _metadata_entries(meta: dict[str, str]) -> bytes:
    # ModelProto.metadata_props = 14; StringStringEntryProto: key = 1, value = 2
    return b"".join(_field(14, _field(1, k.encode()) + _field(2, v.encode())) for k, v in meta.items())


def voice_metadata(config: dict) -> dict[str, str]:
    """The metadata sherpa-onnx reads for a Piper voice, from its `.onnx.json`."""
    try:
        rate = int(config["audio"]["sample_rate"])
        voice = config.get("espeak", {}).get("voice", "en-us")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"Piper voice config lacks audio.sample_rate ({exc!r})") from None
    return {
        "model_type": "vits", "comment": "piper", "language": config.get("language", {}).get("name_english", voice)
        if isinstance(config.get("language"), dict) else voice,
        "voice": voice, "has_espeak": "1", "n_speakers": str(int(config.get("num_speakers", 1))),
        "sample_rate": str(rate),
    }


def tokens_text(config: dict) -> str:
    """`tokens.txt` from the voice's phoneme_id_map (a space symbol is written as-is)."""
    lines = []
    for symbol, ids in config["phoneme_id_map"].items():
        lines.append(f"{symbol} {ids[0]}")
    return "\n".join(lines) + "\n"


def default_cache_dir(models_dir: Path) -> Path:
    """<models_dir>/.cache if writable, else the user's cache folder."""
    for candidate in (models_dir / ".cache",
                      Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "appliance" / "models"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise ModelError(f"no writable cache folder for prepared voices (tried {models_dir / '.cache'})")


def prepare_voice(model: Path, config_json: Path, cache_dir: Path, model_sha256: str) -> tuple[Path, Path, dict]:
    """Return (model_with_metadata, tokens_txt, voice_config), preparing them once into cache_dir."""
    config = json.loads(Path(config_json).read_text())
    meta = voice_metadata(config)
    key = hashlib.sha256((model_sha256 + json.dumps(meta, sort_keys=True)).encode()).hexdigest()[:16]
    out = cache_dir / f"piper-{key}"
    onnx, tokens = out / "model.onnx", out / "tokens.txt"
    if onnx.is_file() and tokens.is_file() and onnx.stat().st_size == Path(model).stat().st_size + len(_metadata_entries(meta)):
        return onnx, tokens, config
    tmp = cache_dir / f".piper-{key}.tmp{os.getpid()}-{threading.get_ident()}"
    tmp.mkdir(parents=True, exist_ok=True)
    with open(model, "rb") as fi, open(tmp / "model.onnx", "wb") as fo:
        while chunk := fi.read(1 << 20):
            fo.write(chunk)
        fo.write(_metadata_entries(meta))
    (tmp / "tokens.txt").write_text(tokens_text(config), encoding="utf-8")
    try:
        tmp.rename(out)
    except OSError:    # another process prepared it meanwhile
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return onnx, tokens, config


_phonemize_lock = threading.Lock()   # espeak-ng keeps global state: one caller at a time


def phonemize(text: str, voice: str = "en-us") -> list[list[int]]:
    """IPA code points per sentence for `text` (espeak-ng via piper-phonemize)."""
    try:
        from piper_phonemize import phonemize_espeak
    except ImportError:
        raise ModelError("the Piper voice needs the phonemizer: pip install piper-phonemize") from None
    with _phonemize_lock:
        sentences = phonemize_espeak(text, voice)
    return [[ord(c) for ph in s for c in ph] for s in sentences if s]
