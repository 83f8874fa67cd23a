"""Detectors on 8 kHz line audio: VAD, AMD, beep/DTMF/tones, endpointing, echo gating."""
