"""A modem or GSM line refusing a number to dial says what it expected."""
from __future__ import annotations

import asyncio

import pytest

from appliance.errors import LineError
from appliance.lines.gsm import GsmLine
from appliance.lines.modem import VoiceModemLine
from appliance.lines.modem_config import GsmLineConfig, ModemLineConfig


@pytest.mark.parametrize("make, expected", [
    (lambda: VoiceModemLine(ModemLineConfig(name="pots", port="loop://")), r"expected digits 0-9 \* # A-D"),
    (lambda: GsmLine(GsmLineConfig(name="cell", port="loop://")), r"expected digits, '\*' and '#'"),
])
def test_dial_garbage_names_line_number_and_what_was_expected(make, expected):
    async def scenario():
        line = make()  # the number is checked before the port is touched: no start needed
        with pytest.raises(LineError, match=rf"^{line.name}: cannot dial '1; ATH': {expected}"):
            await line.dial("1; ATH")

    asyncio.run(scenario())
