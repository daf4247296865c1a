"""The simulated backend of the driver contract: a SimulatedStation in this process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from genesis_platform.labs.protocols import Station
from genesis_platform.labs.simulated import SimulatedStation


@contextlib.contextmanager
def station(
    emulator: str = "electrolyte", *, latency_s: float = 0.05, slots: int = 2
) -> Iterator[Station]:
    """A noise-free SimulatedStation for ``emulator``, aborted and closed afterwards."""
    opened = SimulatedStation(
        emulator, slots=slots, latency_s=latency_s, latency_jitter=0.0, noise=0.0
    )
    try:
        yield opened
    finally:
        opened.abort()
        opened.close()
