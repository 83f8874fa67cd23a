"""Fixtures for SIP tests: real peers (baresip, kamailio) started and stopped per test."""
from __future__ import annotations

import pytest

from .peers import BARESIP, KAMAILIO, Baresip, Kamailio

needs_baresip = pytest.mark.skipif(BARESIP is None, reason="baresip not installed (Debian: baresip-core)")
needs_kamailio = pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed (Debian: kamailio)")


@pytest.fixture
def baresip_factory(tmp_path):
    started: list[Baresip] = []

    def make(**kw) -> Baresip:
        b = Baresip(tmp_path, **kw).start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def kamailio_factory(tmp_path):
    started: list[Kamailio] = []

    def make(**kw) -> Kamailio:
        k = Kamailio(tmp_path, **kw).start()
        started.append(k)
        return k

    yield make
    for k in started:
        k.stop()
