"""A closed-loop campaign runs end to end on a registered station of every driver.

Simulated: in this process. SiLA 2: the shipped SiLA 2 server on loopback, registered as a
``sila2`` station by its port. Bluesky: a RunEngine over ophyd simulated devices. Each
campaign goes through the station service (safety, shared queue, records), and a station
limit narrower than the campaign's space refuses the proposals outside it before the
instrument sees them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from genesis_platform import Platform
from tests.unit.labs import backend_bluesky, backend_sila


@contextlib.contextmanager
def simulated() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "simulated", {"emulator": "electrolyte", "latency_s": 0.0, "slots": 2}


@contextlib.contextmanager
def sila() -> Iterator[tuple[str, dict[str, Any]]]:
    with backend_sila.serve("electrolyte", latency_s=0.0, slots=2, noise=1.0) as server:
        yield "sila2", {"host": server.host, "port": server.port, "slots": 2}


@contextlib.contextmanager
def bluesky() -> Iterator[tuple[str, dict[str, Any]]]:
    backend_bluesky.require_bluesky()
    yield "bluesky", {"emulator": "electrolyte"}


REGISTRATIONS = {"simulated": simulated, "sila2": sila, "bluesky": bluesky}


@pytest.mark.parametrize("driver", list(REGISTRATIONS))
def test_a_campaign_runs_end_to_end(platform: Platform, driver: str) -> None:
    with REGISTRATIONS[driver]() as (kind, options):
        platform.stations.add(
            "instrument", kind, options, {"limits": {"temperature_c": ":45"}, "timeout_s": 30}
        )
        campaign = platform.campaigns.create(
            {
                "name": f"on-{driver}",
                "project": "battery-lab",
                "space": {
                    "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
                    "temperature_c": {"type": "int", "low": 10, "high": 60},
                    "solvent": {"type": "choice", "values": ["EC-DMC", "PC"]},
                },
                "objectives": {"conductivity": "max"},
                "planner": "random",
                "runner": {"station": "instrument"},
                "budget": {"trials": 8, "parallel": 2},  # default retries: refusals are final
                "seed": 11,
            }
        )
        info = campaign.run()
        operations = platform.stations.operations(station="instrument")
    assert info.n_trials == 8
    refused = [o for o in operations if o.state == "refused"]
    completed = [o for o in operations if o.state == "completed"]
    assert len(refused) + len(completed) == 8  # a refused proposal is not sent again
    assert refused and completed
    assert all(o.params["temperature_c"] > 45 for o in refused)
    assert all(o.params["temperature_c"] <= 45 for o in completed)
    assert info.n_observed == len(completed) >= 1
    assert info.n_failed == len(refused)
    assert {o.project for o in operations} == {"battery-lab"}
    assert all(o.instrument_seconds >= 0 and o.external_id for o in completed)
    assert info.best is not None and info.best > 0
