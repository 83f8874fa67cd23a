"""Line adapters: SIP/RTP, V.253 voice modem, 3GPP 27.007 GSM modem, simulated. See base.py.

`create_line(cfg)` builds the adapter a line config names; adapters are imported only when used,
so a box without serial hardware never imports pyserial, and one without SIP never binds a socket.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError

# config type -> (module, class)
ADAPTERS = {
    "sim": ("appliance.lines.sim", "SimLine"),
    "sip": ("appliance.lines.sip.line", "SipLine"),
    "modem": ("appliance.lines.modem", "VoiceModemLine"),
    "gsm": ("appliance.lines.gsm", "GsmLine"),
}


def create_line(cfg, **kwargs):
    """Build (but do not start) the Line for one entry of `lines:` in the config."""
    try:
        module_name, class_name = ADAPTERS[cfg.type]
    except KeyError:
        raise ConfigError(
            [f"lines: unknown line type {cfg.type!r}; expected one of {', '.join(ADAPTERS)}"]
        ) from None
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(cfg, **kwargs)
