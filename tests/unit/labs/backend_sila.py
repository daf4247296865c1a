"""The SiLA 2 backend of the station contract: a SilaStation against a real server on loopback.

The server is the shipped :class:`~genesis_platform.labs.sila_server.SilaStationServer`
wrapping a noise-free :class:`~genesis_platform.labs.simulated.SimulatedStation`; both run
in this process, talking gRPC over 127.0.0.1 on a free port.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from genesis_platform.labs.protocols import Station
from genesis_platform.labs.simulated import SimulatedStation
from tests.requires import require_extra


def require_sila() -> None:
    """Skip (fail under ``CI=true``) when sila2 is not installed."""
    require_extra("labs", "sila2")


@contextlib.contextmanager
def serve(emulator: str = "electrolyte", **options: Any) -> Iterator[Any]:
    """A running SilaStationServer around ``SimulatedStation(emulator, **options)``.

    Options default to a noise-free, jitter-free station with seed 0. The server is stopped
    and the simulated station aborted and closed afterwards; ``server.station`` is it.
    """
    require_sila()
    from genesis_platform.labs.sila_server import SilaStationServer

    settings: dict[str, Any] = {"latency_jitter": 0.0, "noise": 0.0, "seed": 0, **options}
    wrapped = SimulatedStation(emulator, **settings)
    server = SilaStationServer(wrapped, expected_duration_s=settings.get("latency_s"))
    try:
        yield server.start()
    finally:
        server.stop()
        wrapped.abort()
        wrapped.close()


@contextlib.contextmanager
def station(
    emulator: str = "electrolyte", *, latency_s: float = 0.05, slots: int = 2
) -> Iterator[Station]:
    """A SilaStation connected to a shipped SiLA 2 server on loopback.

    The server wraps ``SimulatedStation(emulator, latency_s=latency_s, latency_jitter=0.0,
    noise=0.0, slots=slots, seed=0)``; the SilaStation has ``slots`` slots too. Both are
    aborted, closed and stopped afterwards.
    """
    require_sila()
    from genesis_platform.labs.sila import SilaStation

    with serve(emulator, latency_s=latency_s, slots=slots) as server:
        opened = SilaStation(emulator, host=server.host, port=server.port, slots=slots)
        try:
            yield opened
        finally:
            opened.abort()
            opened.close()
