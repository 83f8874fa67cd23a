"""Per-chipset differences of V.253 voice modems (MODEMS.md §1.1, §1.5, §1.7).

A dialect only says *how* to do something on its chipset; what the modem can do is read from
the modem itself (`AT+FCLASS=?`, `AT+VSM=?`, `AT+VTR=?`). Setup commands are best effort: a
modem that rejects one (some reject `+IFC`) still works.
"""
from __future__ import annotations

from . import dle


class VoiceDialect:
    """Generic V.253 (vgetty's V253modem driver)."""

    name = "generic"
    markers: tuple[str, ...] = ()
    voice_class = "AT+FCLASS=8"
    caller_id = ("AT+VCID=1",)
    setup: tuple[str, ...] = ("AT+VSD=128,0", "AT+VIT=0", "AT+VNH=0")
    reapply_each_call = False          # settings forgotten on leaving voice mode (USR, ZyXEL)
    off_hook = "AT+VLS=1"
    on_hook: tuple[str, ...] = ("AT+VLS=0",)
    end_duplex = dle.END_DUPLEX
    abort_record = dle.ABORT_RX
    ignore_events = ""                 # spurious DLE events this chipset emits
    hook_flash = "AT+VTS=!"

    @classmethod
    def matches(cls, identity: str) -> bool:
        ident = identity.upper()
        return any(m in ident for m in cls.markers)

    def vts(self, digits: str) -> str:
        return "AT+VTS=" + ",".join(digits)


class ConexantDialect(VoiceDialect):
    """Conexant/Rockwell (Zoom 3095 and most USB voice modems): callattendant sets +VSD=0,0."""

    name = "conexant"
    markers = ("CONEXANT", "CX93", "CX06", "CX11", "ROCKWELL", "ZOOM", "56000")
    setup = ("AT+VSD=0,0", "AT+VIT=0", "AT+VNH=0")


class USRoboticsDialect(VoiceDialect):
    """USRobotics 5637 softmodem: forgets voice settings on leaving voice mode and reports a
    spurious dial tone (DLE d / DLE i) while playing or recording (vgetty US_Robotics.c)."""

    name = "usrobotics"
    markers = ("U.S. ROBOTICS", "USROBOTICS", "US ROBOTICS", "5601", "5637")
    setup = ("AT+VSD=128,0", "AT+VIT=0")
    reapply_each_call = True
    ignore_events = "di"


class AgereDialect(VoiceDialect):
    """Agere/LSI/Lucent Venus: one silence event `s` only; init +VIT=0, +VPR=0, +VLS=0."""

    name = "agere"
    markers = ("AGERE", "LSI", "LUCENT", "LT V.92", "VENUS")
    setup = ("AT+VIT=0", "AT+VPR=0", "AT+VLS=0")


class ZyXELDialect(VoiceDialect):
    """ZyXEL: caller ID by S-register, voice settings reset on leaving voice mode, often no +VTR."""

    name = "zyxel"
    markers = ("ZYXEL", "2864", "U-1496", "OMNI")
    caller_id = ("ATS40.2=1", "AT+VCID=1")
    setup = ("AT+VIT=0",)
    reapply_each_call = True


DIALECTS: dict[str, type[VoiceDialect]] = {
    d.name: d for d in (ConexantDialect, USRoboticsDialect, AgereDialect, ZyXELDialect, VoiceDialect)
}


def detect_dialect(identity: str) -> VoiceDialect:
    """Pick a dialect from the ATI/ATI3/+GMI text; generic V.253 if nothing matches."""
    for cls in (USRoboticsDialect, AgereDialect, ZyXELDialect, ConexantDialect):
        if cls.matches(identity):
            return cls()
    return VoiceDialect()
