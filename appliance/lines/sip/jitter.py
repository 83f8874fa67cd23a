"""Selector for the jitter buffer: the compiled one (native/jitter.pyx) unless
APPLIANCE_NO_EXTENSIONS=1 or it is not built; `IMPLEMENTATION` says which is in use."""
from __future__ import annotations

import os

from . import jitter_pure as pure
from .jitter_pure import CONCEALED, OK, PUT_DUPLICATE, PUT_LATE, PUT_OK, PUT_RESYNC, SILENCE

try:
    from ..._native import jitter as compiled
except ImportError:  # not built: the twin still works
    compiled = None

FORCED_PURE = os.environ.get("APPLIANCE_NO_EXTENSIONS", "") not in ("", "0")
JitterBuffer = pure.JitterBuffer if (FORCED_PURE or compiled is None) else compiled.JitterBuffer
IMPLEMENTATION = "pure" if JitterBuffer is pure.JitterBuffer else "compiled"

__all__ = ["JitterBuffer", "IMPLEMENTATION", "OK", "CONCEALED", "SILENCE",
           "PUT_OK", "PUT_LATE", "PUT_DUPLICATE", "PUT_RESYNC", "compiled", "pure"]
