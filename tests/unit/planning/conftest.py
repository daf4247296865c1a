"""Fixtures of the planning tests: a small mixed space and a smooth objective on it."""

from __future__ import annotations

import math

import pytest

from genesis_platform.planning.protocols import Params
from genesis_platform.planning.space import Choice, Int, Real, Space


@pytest.fixture
def mixed_space() -> Space:
    """A real, a log-scaled real, an integer and a choice."""
    return Space(
        {
            "temperature": Real(20.0, 80.0),
            "concentration": Real(0.01, 10.0, log=True),
            "steps": Int(1, 5),
            "solvent": Choice(["EC", "DMC", "PC"]),
        }
    )


def mixed_objective(p: Params) -> float:
    """A smooth function of the mixed space with its maximum inside."""
    t = (float(p["temperature"]) - 55.0) / 30.0
    c = math.log10(float(p["concentration"])) - 0.3
    bonus = {"EC": 0.0, "DMC": 0.4, "PC": -0.3}[str(p["solvent"])]
    return -(t * t) - c * c - 0.1 * (int(p["steps"]) - 3) ** 2 + bonus
