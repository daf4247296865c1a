"""The Bluesky backend of the station contract: a real RunEngine over ophyd simulated devices."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from genesis_platform.labs.protocols import Station
from tests.requires import require_extra


def require_bluesky() -> None:
    """Skip (fail under ``CI=true``) when bluesky or ophyd is not installed."""
    require_extra("labs", "bluesky", "ophyd")


@contextlib.contextmanager
def station(
    emulator: str = "electrolyte", *, latency_s: float = 0.05, slots: int = 2
) -> Iterator[Station]:
    """A simulated BlueskyStation for ``emulator`` with noise 0, aborted and closed afterwards.

    ``latency_s`` is the detectors' acquisition time. ``slots`` is ignored: a RunEngine runs
    one plan at a time, so a Bluesky station always has one slot (``describe().slots == 1``)
    and queues the other operations.
    """
    require_bluesky()
    from genesis_platform.labs.bluesky import BlueskyStation

    opened = BlueskyStation.simulated(emulator, latency_s=latency_s, noise=0.0)
    try:
        yield opened
    finally:
        opened.abort()
        opened.close()
