"""The peer runners live in tools/sip_peers.py (the SIP bench uses them too); loaded by path."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "tools" / "sip_peers.py"
_spec = importlib.util.spec_from_file_location("appliance_tools_sip_peers", _PATH)
_mod = sys.modules.get("appliance_tools_sip_peers")
if _mod is None:
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["appliance_tools_sip_peers"] = _mod
    _spec.loader.exec_module(_mod)

globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})
