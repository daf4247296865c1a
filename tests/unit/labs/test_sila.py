"""SilaStation and SilaStationServer against real SiLA 2 servers on loopback (no mocks)."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("sila2")

from sila2.client import SilaClient
from sila2.framework import DefinedExecutionError, Feature
from sila2.server import FeatureImplementationBase, SilaServer

from genesis_platform.errors import InvalidInput, OperationFailed, StationError
from genesis_platform.labs.emulators import EMULATORS, AnalyticEmulator, get_emulator
from genesis_platform.labs.protocols import Measurement, Operation, StationState
from genesis_platform.labs.sila import (
    OperationProgress,
    SilaStation,
    genesis_name,
    sila_identifier,
)
from genesis_platform.labs.sila_server import (
    CANCEL_CONTROLLER_FDL,
    SilaStationServer,
    _close_discovery,
    feature_definition,
    find_free_port,
    run_sila_server,
)
from genesis_platform.labs.simulated import SimulatedStation
from genesis_platform.planning.space import Choice, Int, Real

from .backend_sila import serve, station

POINT = {"salt_molality": 1.2, "temperature_c": 25, "solvent": "EC-DMC"}
STOPPED = r"aborted|cancelled"
"""What the message of a cancelled or aborted operation's StationError says."""


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def connect(server: SilaStationServer, **options: Any) -> SilaStation:
    return SilaStation("electrolyte", host=server.host, port=server.port, **options)


# --- the generated feature ------------------------------------------------------------------


def test_names_map_to_sila_identifiers_and_back() -> None:
    for name in ("salt_molality", "temperature_c", "x", "time_min", "température"):
        assert genesis_name(sila_identifier(name), name) == name
    assert sila_identifier("1st-pass") == "X1stPass"
    assert genesis_name("TargetTemperature", "Target Temperature") == "target_temperature"
    assert genesis_name("HPLCFlowRate") == "hplc_flow_rate"
    assert genesis_name("Replicates") == "replicates"


@pytest.mark.parametrize("emulator", sorted(EMULATORS))
def test_generated_feature_is_valid_fdl(emulator: str) -> None:
    info = SimulatedStation(emulator, latency_s=0).describe()
    layout = feature_definition(info)
    feature = Feature(layout.fdl)  # sila2 validates it against the SiLA 2 XML schema
    command = feature["RunOperation"]
    identifiers = [p._identifier for p in command.parameters]
    assert identifiers == ["OperationId", *(sila_identifier(n) for n in info.parameters)]
    assert [r._identifier for r in command.responses] == [
        sila_identifier(n) for n in info.measurements
    ]
    assert {"StationState", "Heartbeat", "Abort"} <= {
        *feature._unobservable_properties,
        *feature._unobservable_commands,
    }


def test_unexpressible_names_are_refused() -> None:
    info = SimulatedStation("electrolyte", latency_s=0).describe()
    clash = {**info.parameters, "saltMolality": info.parameters["salt_molality"]}
    with pytest.raises(InvalidInput, match="both become the SiLA identifier 'SaltMolality'"):
        feature_definition(replace(info, parameters=clash))
    reserved = {**info.parameters, "operation_id": info.parameters["salt_molality"]}
    with pytest.raises(InvalidInput, match="'OperationId'"):
        feature_definition(replace(info, parameters=reserved))
    twice = {**info.measurements, "Conductivity": {"unit": "S/m"}}
    with pytest.raises(InvalidInput, match="'Conductivity'") as caught:
        feature_definition(replace(info, measurements=twice))
    assert caught.value.field == "measurements.Conductivity"


class Mixer(AnalyticEmulator):
    """An emulator with numeric and mixed choices, a log scale and units SiLA cannot express."""

    name = "mixer"
    description = "Mixes at a speed and pressure."
    units = {"blades": "", "ratio": "", "pressure": "bar", "stroke": "furlong", "mode": ""}
    measurement_units = {"torque": "N*m", "power": "W"}
    bounds = {"torque": (0.0, math.inf), "power": (0.0, math.inf)}

    def __init__(self) -> None:
        super().__init__(
            {
                "blades": Choice([2, 3, 4]),
                "ratio": Choice([0.5, 1.5]),
                "pressure": Real(0.01, 10.0, log=True),
                "stroke": Int(1, 8),
                "mode": Choice(["pulse", 3]),
            }
        )

    def _model(self, point: Any) -> dict[str, float]:
        torque = point["blades"] * point["ratio"] * point["pressure"] + point["stroke"]
        return {"torque": torque, "power": torque * (2.0 if point["mode"] == 3 else 1.0)}

    def _noise_sd(self, values: Any) -> dict[str, float]:
        return {key: 0.0 for key in values}


def test_numeric_choices_log_scales_and_free_text_units_round_trip() -> None:
    mixer = Mixer()
    wrapped = SimulatedStation(mixer, latency_s=0.0, noise=0.0)
    with SilaStationServer(wrapped) as server, connect(server) as sila:
        info = sila.describe()
        expected = dict(mixer.parameters)
        expected["mode"] = {**expected["mode"], "values": ["pulse", "3"]}  # mixed: as text
        assert info.parameters == expected
        assert info.measurements == mixer.measurements
        for mode in ("pulse", 3):
            point = {"blades": 3, "ratio": 1.5, "pressure": 0.2, "stroke": 5, "mode": mode}
            values = sila.run(Operation(f"op-{mode}", point)).result(timeout=5).values
            assert values == mixer.mean(point)
        bad = {"blades": 5, "ratio": 1.5, "pressure": 0.2, "stroke": 5, "mode": "pulse"}
        error = sila.run(Operation("bad", bad)).exception(timeout=0)
        assert isinstance(error, InvalidInput) and error.field == "op.params.blades"
    wrapped.close()


# --- SilaStation against the shipped server ---------------------------------------------------


@pytest.mark.parametrize("emulator", sorted(EMULATORS))
def test_describe_round_trips_the_emulator_schema(emulator: str) -> None:
    with station(emulator, latency_s=0.0) as sila:
        info = sila.describe()
    expected = get_emulator(emulator)
    assert info.parameters == expected.parameters
    assert list(info.parameters) == list(expected.parameters)
    assert info.measurements == expected.measurements
    assert (info.driver, info.protocol, info.slots) == ("sila2", "SiLA 2", 2)
    assert info.description == expected.description


@pytest.mark.parametrize("emulator", sorted(EMULATORS))
def test_run_measures_what_the_wrapped_station_measures(emulator: str) -> None:
    expected = get_emulator(emulator)
    info = SimulatedStation(emulator, latency_s=0).describe()
    points = [_corner(info.parameters, i) for i in range(3)]
    with station(emulator, latency_s=0.0) as sila:
        for i, point in enumerate(points):
            measurement = sila.run(Operation(f"op-{i}", point)).result(timeout=5)
            assert measurement.values == expected.mean(point)
            assert measurement.operation_id == f"op-{i}"
            assert uuid.UUID(measurement.external_id)
            assert 0 < measurement.duration_s < 5
            assert measurement.metadata["sila_server"].startswith("127.0.0.1:")


def _corner(parameters: Any, i: int) -> dict[str, Any]:
    """Low bounds, middles or high bounds of every range, and the i-th of every choice."""
    point: dict[str, Any] = {}
    for name, schema in parameters.items():
        if schema["type"] == "choice":
            point[name] = schema["values"][i % len(schema["values"])]
        else:
            low, high = schema["low"], schema["high"]
            value = (low, (low + high) / 2, high)[i]
            point[name] = int(value) if schema["type"] == "int" else float(value)
    return point


def test_same_operation_id_in_flight_runs_once() -> None:
    with station(latency_s=0.5) as sila:
        first = sila.run(Operation("op-1", POINT))
        assert sila.run(Operation("op-1", dict(POINT))) is first
        status = sila.status()
        assert status.busy_slots + status.queue_length == 1
        clash = sila.run(Operation("op-1", {**POINT, "temperature_c": 30}))
        assert isinstance(clash.exception(timeout=0), InvalidInput)
        assert first.result(timeout=5).operation_id == "op-1"
        assert sila.run(Operation("op-1", POINT)) is not first  # done: a new run


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"salt_molality": 3.5}, "op.params.salt_molality"),
        ({"temperature_c": 20.5}, "op.params.temperature_c"),
        ({"temperature_c": True}, "op.params.temperature_c"),
        ({"solvent": "water"}, "op.params.solvent"),
        ({"stirring": 1}, "op.params.stirring"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_sent(
    change: dict[str, Any], field: str
) -> None:
    with serve(latency_s=0.0) as server:
        sila = connect(server)
        server.stop()  # from here on, anything sent would fail with StationError
        try:
            future = sila.run(Operation("bad", {**POINT, **change}))
            assert future.done(), "validation must fail the future at once"
            error = future.exception()
            assert isinstance(error, InvalidInput)
            assert error.field == field
            missing = sila.run(Operation("missing", {"salt_molality": 1.0, "solvent": "PC"}))
            assert getattr(missing.exception(timeout=0), "field", "") == "op.params.temperature_c"
            unreachable = sila.run(Operation("good", POINT)).exception(timeout=5)
            assert isinstance(unreachable, StationError)
            assert server.address in str(unreachable)
        finally:
            sila.close()


def test_slots_bound_the_commands_on_the_server() -> None:
    with serve(latency_s=0.3, slots=4) as server, connect(server, slots=2) as sila:
        futures = [sila.run(Operation(f"op-{i}", POINT)) for i in range(4)]
        wait_for(lambda: sila.status().busy_slots == 2)
        assert sila.status().queue_length == 2
        assert server.station.status().busy_slots == 2
        assert all(f.result(timeout=5).values for f in futures)


def test_a_transient_fault_on_the_station_is_operation_failed() -> None:
    with (
        serve(latency_s=0.0, failure_rate=1.0) as server,
        connect(server) as sila,
        pytest.raises(OperationFailed, match="transient fault"),
    ):
        sila.run(Operation("op-1", POINT)).result(timeout=5)


def test_abort_cancels_a_long_operation_on_the_server() -> None:
    with serve(latency_s=5.0, slots=1) as server, connect(server, slots=1) as sila:
        running = sila.run(Operation("long", POINT))
        queued = sila.run(Operation("queued", POINT))
        wait_for(lambda: server.station.status().busy_slots == 1)
        start = time.monotonic()
        sila.abort()
        for future in (running, queued):
            with pytest.raises(StationError, match="aborted"):
                future.result(timeout=3)
        assert time.monotonic() - start < 3.0  # not the 5 s the operation takes
        wait_for(lambda: server.station.status().state is StationState.IDLE)
        wait_for(lambda: sila.status().state is StationState.IDLE)
        again = sila.run(Operation("again", POINT))  # the station takes work again
        wait_for(lambda: server.station.status().busy_slots == 1)
        assert not again.done()
        sila.abort()


def test_cancel_controller_cancels_one_command_for_any_client() -> None:
    with serve(latency_s=5.0, slots=2) as server:
        client = SilaClient(server.host, server.port, insecure=True)
        try:
            feature = getattr(client, server.layout.identifier)
            kept = feature.RunOperation("kept", 1.0, 25, "PC")
            cancelled = feature.RunOperation("cancelled", 1.0, 25, "PC")
            wait_for(lambda: server.station.status().busy_slots == 2)
            client.CancelController.CancelCommand(str(cancelled.execution_uuid))
            wait_for(lambda: cancelled.done)
            with pytest.raises(DefinedExecutionError, match="Cancelled"):
                cancelled.get_responses()
            assert not kept.done  # cancelling one leaves the other running
            client.CancelController.CancelCommand(str(kept.execution_uuid))
            wait_for(lambda: server.station.status().state is StationState.IDLE)
            with pytest.raises(DefinedExecutionError, match="InvalidCommandExecutionUUID"):
                client.CancelController.CancelCommand(str(kept.execution_uuid))
        finally:
            client.close()


def test_cancel_stops_one_running_operation_and_the_others_go_on() -> None:
    with serve(latency_s=1.0, slots=2) as server, connect(server, slots=2) as sila:
        long = sila.run(Operation("long", POINT))
        kept = sila.run(Operation("kept", {**POINT, "temperature_c": 30}))
        queued = sila.run(Operation("queued", {**POINT, "temperature_c": 35}))
        wait_for(lambda: _accepted(sila, "long") and _accepted(sila, "kept"))
        start = time.monotonic()
        assert sila.cancel("long") is True
        assert long.done(), "the future fails at once"
        with pytest.raises(StationError, match=STOPPED):
            long.result(timeout=0)
        assert time.monotonic() - start < 3.0
        assert sila.cancel("long") is False  # already stopped
        assert not kept.done() and not queued.done()
        expected = get_emulator("electrolyte")
        for future, temperature in ((kept, 30), (queued, 35)):
            measurement = future.result(timeout=5)
            assert measurement.values == expected.mean({**POINT, "temperature_c": temperature})
        wait_for(lambda: sila.status().state is StationState.IDLE)


def test_cancel_drops_a_queued_operation_and_unknown_ids_are_false() -> None:
    with serve(latency_s=0.3, slots=1) as server, connect(server, slots=1) as sila:
        running = sila.run(Operation("running", POINT))
        queued = sila.run(Operation("queued", POINT))
        wait_for(lambda: _accepted(sila, "running"))
        assert sila.status().queue_length == 1
        assert sila.cancel("queued") is True
        with pytest.raises(StationError, match=STOPPED):
            queued.result(timeout=0)
        assert sila.status().queue_length == 0
        assert sila.cancel("no-such-operation") is False
        assert running.result(timeout=5).operation_id == "running"
        assert sila.cancel("running") is False  # finished
        again = sila.run(Operation("queued", POINT))  # the id is free again
        assert again is not queued
        assert again.result(timeout=5).operation_id == "queued"


def test_abort_server_from_a_fresh_station_stops_what_another_started() -> None:
    with serve(latency_s=5.0, slots=1) as server, connect(server) as first:
        future = first.run(Operation("long", POINT))
        wait_for(lambda: server.station.status().busy_slots == 1)
        start = time.monotonic()
        with connect(server) as operator:  # `genesis station abort` in another shell
            assert operator.abort_server() is True
        with pytest.raises(StationError, match=STOPPED):
            future.result(timeout=3)
        assert time.monotonic() - start < 3.0  # not the 5 s the operation takes
        wait_for(lambda: server.station.status().state is StationState.IDLE)
        wait_for(lambda: first.status().state is StationState.IDLE)
        after = first.run(Operation("after", POINT))  # the station takes work again
        wait_for(lambda: server.station.status().busy_slots == 1)
        assert not after.done()
        first.abort()


def test_progress_and_remaining_time_are_followed() -> None:
    # 10 s, so that the operation is still running however late a loaded machine looks
    with serve(latency_s=10.0) as server, connect(server) as sila:
        assert sila.progress("op-1") is None
        sila.run(Operation("op-1", POINT))
        wait_for(lambda: (sila.progress("op-1") or _NO_PROGRESS).progress is not None)
        first = sila.progress("op-1")
        assert first is not None and first.status == "running"
        assert 0 < (first.progress or 0) < 0.5
        assert 5.0 < (first.remaining_s or 0) <= 10.0
        assert uuid.UUID(first.execution_uuid)
        wait_for(lambda: _advanced(sila.progress("op-1") or first, first))
        sila.abort()


def _advanced(later: OperationProgress, first: OperationProgress) -> bool:
    """Whether progress went up and the remaining time down since ``first``."""
    more = (later.progress or 0) > (first.progress or 0)
    return more and (later.remaining_s or math.inf) < (first.remaining_s or 0)


_NO_PROGRESS = type("P", (), {"progress": None})()


def _accepted(sila: SilaStation, op_id: str) -> bool:
    """Whether the server has accepted the operation's command (its execution UUID is known)."""
    progress = sila.progress(op_id)
    return progress is not None and bool(progress.execution_uuid)


def test_status_reads_the_server_and_goes_offline_when_it_stops() -> None:
    with serve(latency_s=0.0) as server:
        sila = connect(server)
        try:
            before = time.time()
            status = sila.status()
            assert status.state is StationState.IDLE
            assert status.heartbeat >= before
            server.stop()
            offline = sila.status()
            assert offline.state is StationState.OFFLINE
            assert server.address in offline.reason
            assert offline.heartbeat == pytest.approx(status.heartbeat, abs=1.0)
        finally:
            sila.close()
        assert sila.status().reason == "station closed"
        with pytest.raises(StationError, match="closed"):
            sila.run(Operation("late", POINT)).result(timeout=0)


def test_server_stopping_under_a_running_operation_is_operation_failed() -> None:
    with serve(latency_s=5.0) as server, connect(server) as sila:
        future = sila.run(Operation("op-1", POINT))
        wait_for(lambda: server.station.status().busy_slots == 1)
        server.stop()
        with pytest.raises(OperationFailed, match="retry"):
            future.result(timeout=3)


def test_no_server_gives_station_error_with_the_address_and_how_to_start_one() -> None:
    port = find_free_port()
    with pytest.raises(StationError) as caught:
        SilaStation("electrolyte", host="127.0.0.1", port=port)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "genesis station serve-sila --emulator NAME --port P" in str(caught.value)


def test_a_served_port_is_refused_and_port_zero_picks_a_free_one() -> None:
    with serve(latency_s=0.0) as server:
        assert server.port > 0
        other = SimulatedStation("electrolyte", latency_s=0.0)
        try:
            with pytest.raises(StationError, match=f"127.0.0.1:{server.port}"):
                SilaStationServer(other, port=server.port).start()
        finally:
            other.close()


def test_tls_with_a_generated_certificate(tmp_path: Path) -> None:
    wrapped = SimulatedStation("electrolyte", latency_s=0.0, noise=0.0)
    with SilaStationServer(wrapped, insecure=False) as server:
        assert server.root_certificate is not None
        cert = tmp_path / "root.pem"
        cert.write_bytes(server.root_certificate)
        with connect(server, insecure=False, root_cert=str(cert)) as sila:
            value = sila.run(Operation("op-1", POINT)).result(timeout=5).values
            assert value == get_emulator("electrolyte").mean(POINT)
        with pytest.raises(StationError, match="insecure"):
            connect(server, timeout_s=2.0)
    wrapped.close()


# --- the blocking entry point of `genesis station serve-sila` ------------------------------


def test_run_sila_server_serves_until_stopped() -> None:
    stop = threading.Event()
    started: list[SilaStationServer] = []
    thread = threading.Thread(
        target=run_sila_server,
        args=("reaction-yield",),
        kwargs={"port": 0, "latency_s": 0.0, "noise": 0.0, "stop": stop, "ready": started.append},
    )
    thread.start()
    try:
        wait_for(lambda: bool(started))
        with connect(started[0]) as sila:
            point = {"temperature_c": 60.0, "time_min": 80.0, "equivalents": 1.6}
            point["catalyst"] = "XPhos Pd G3"
            values = sila.run(Operation("op-1", point)).result(timeout=5).values
            assert values == get_emulator("reaction-yield").mean(point)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert not started[0].running


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_serve_sila_stops_cleanly_on_sigterm_and_logs_no_routine_tracebacks() -> None:
    port = find_free_port()
    code = (
        "from genesis_platform.labs.sila_server import run_sila_server; "
        f"run_sila_server('electrolyte', port={port}, latency_s=0.0, failure_rate=1.0)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    try:
        sila = _connect_when_up(port, process)
        with sila, pytest.raises(OperationFailed, match="transient fault"):
            sila.run(Operation("op-1", POINT)).result(timeout=5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def _connect_when_up(port: int, process: subprocess.Popen[bytes]) -> SilaStation:
    deadline = time.monotonic() + 4.0
    while True:
        try:
            return SilaStation("electrolyte", host="127.0.0.1", port=port, timeout_s=1.0)
        except StationError:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)


# --- SilaStation against a SiLA 2 server that is not Genesis's -----------------------------

PH_METER_FDL = """<?xml version="1.0" encoding="utf-8"?>
<Feature xmlns="http://www.sila-standard.org" SiLA2Version="1.0" FeatureVersion="2.1"
         Originator="com.example" Category="instruments">
  <Identifier>PhMeter</Identifier>
  <DisplayName>pH Meter</DisplayName>
  <Description>Measures the pH of a sample.</Description>
  <Command>
    <Identifier>Calibrate</Identifier><DisplayName>Calibrate</DisplayName>
    <Description>Calibrates.</Description><Observable>Yes</Observable>
    <Response><Identifier>Offset</Identifier><DisplayName>Offset</DisplayName>
      <Description>Offset.</Description><DataType><Basic>Real</Basic></DataType></Response>
  </Command>
  <Command>
    <Identifier>Measure</Identifier><DisplayName>Measure</DisplayName>
    <Description>Measures one sample.</Description><Observable>Yes</Observable>
    <Parameter><Identifier>TargetTemperature</Identifier>
      <DisplayName>Target Temperature</DisplayName><Description>Sample temperature.</Description>
      <DataType><DataTypeIdentifier>Temperature</DataTypeIdentifier></DataType></Parameter>
    <Parameter><Identifier>Replicates</Identifier><DisplayName>Replicates</DisplayName>
      <Description>How often.</Description>
      <DataType><Constrained><DataType><Basic>Integer</Basic></DataType><Constraints>
        <MinimalExclusive>0</MinimalExclusive><MaximalExclusive>10</MaximalExclusive>
      </Constraints></Constrained></DataType></Parameter>
    <Parameter><Identifier>Buffer</Identifier><DisplayName>Buffer</DisplayName>
      <Description>Calibration buffer.</Description>
      <DataType><Constrained><DataType><Basic>String</Basic></DataType><Constraints>
        <Set><Value>pH4</Value><Value>pH7</Value><Value>pH10</Value></Set>
      </Constraints></Constrained></DataType></Parameter>
    <Parameter><Identifier>SampleCode</Identifier><DisplayName>Sample Code</DisplayName>
      <Description>Barcode.</Description>
      <DataType><Constrained><DataType><Basic>String</Basic></DataType><Constraints>
        <Pattern>[A-Z]{2}[0-9]{3}</Pattern>
      </Constraints></Constrained></DataType></Parameter>
    <Parameter><Identifier>Stir</Identifier><DisplayName>Stir</DisplayName>
      <Description>Stir while measuring.</Description>
      <DataType><Basic>Boolean</Basic></DataType></Parameter>
    <Response><Identifier>PH</Identifier><DisplayName>pH</DisplayName>
      <Description>pH.</Description><DataType><Basic>Real</Basic></DataType></Response>
    <Response><Identifier>Note</Identifier><DisplayName>Note</DisplayName>
      <Description>Remark.</Description><DataType><Basic>String</Basic></DataType></Response>
  </Command>
  <Command>
    <Identifier>Abort</Identifier><DisplayName>Abort</DisplayName>
    <Description>Stops measuring.</Description><Observable>No</Observable>
  </Command>
  <DataTypeDefinition>
    <Identifier>Temperature</Identifier><DisplayName>Temperature</DisplayName>
    <Description>A temperature.</Description>
    <DataType><Constrained><DataType><Basic>Real</Basic></DataType><Constraints>
      <MinimalExclusive>0</MinimalExclusive><MaximalInclusive>95.5</MaximalInclusive>
      <Unit><Label>degC</Label><Factor>1</Factor><Offset>273.15</Offset>
        <UnitComponent><SIUnit>Kelvin</SIUnit><Exponent>1</Exponent></UnitComponent></Unit>
    </Constraints></Constrained></DataType>
  </DataTypeDefinition>
</Feature>
"""

SAMPLE = {
    "target_temperature": 25.0,
    "replicates": 3,
    "buffer": "pH7",
    "sample_code": "AB123",
    "stir": True,
}


class PhMeter(FeatureImplementationBase):
    """A hand-written SiLA 2 feature: no OperationId, no status property, no CancelController."""

    def __init__(self, server: SilaServer) -> None:
        super().__init__(parent_server=server)
        self.delay_s = 0.0
        self.stopped = threading.Event()

    def Calibrate(self, *, metadata: Any, instance: Any) -> float:
        return 0.01

    def Measure(self, *args: Any, metadata: Any, instance: Any) -> tuple[float, str]:
        temperature, replicates, buffer, code, stir = args
        instance.begin_execution()
        if self.stopped.wait(self.delay_s):
            raise RuntimeError("stopped by Abort")
        return 7.0 + temperature / 100, f"{code} x{replicates} in {buffer}, stir={stir}"

    def Abort(self, *, metadata: Any) -> None:
        self.stopped.set()


@pytest.fixture
def ph_meter() -> Iterator[tuple[PhMeter, int]]:
    server = SilaServer("pH meter", "PhMeter", "A pH meter", "2.1", "https://example.com")
    implementation = PhMeter(server)
    server.set_feature_implementation(Feature(PH_METER_FDL), implementation)
    port = find_free_port()
    server.start_insecure("127.0.0.1", port, enable_discovery=False)
    try:
        yield implementation, port
    finally:
        implementation.stopped.set()
        server.stop(grace_period=0.5)
        _close_discovery(server)


def test_a_foreign_feature_gives_its_schema(ph_meter: tuple[PhMeter, int]) -> None:
    _, port = ph_meter
    with SilaStation("ph", host="127.0.0.1", port=port) as default:
        assert list(default.describe().measurements) == ["offset"]  # the first command
    with SilaStation("ph", host="127.0.0.1", port=port, command="Measure") as sila:
        info = sila.describe()
    assert info.description == "Measures the pH of a sample."
    assert info.parameters == {
        "target_temperature": {
            "type": "real",
            "low": 0.0,
            "high": 95.5,
            "log": False,
            "unit": "degC",
        },
        "replicates": {"type": "int", "low": 1, "high": 9, "log": False, "unit": ""},
        "buffer": {"type": "choice", "values": ["pH4", "pH7", "pH10"], "unit": ""},
        "sample_code": {"type": "string", "pattern": "[A-Z]{2}[0-9]{3}", "unit": ""},
        "stir": {"type": "boolean", "unit": ""},
    }
    assert info.measurements == {"ph": {"unit": ""}}


def test_a_foreign_command_runs_and_validates(ph_meter: tuple[PhMeter, int]) -> None:
    _, port = ph_meter
    with SilaStation(
        "ph", host="127.0.0.1", port=port, feature="PhMeter", command="Measure"
    ) as sila:
        measurement = sila.run(Operation("s-1", SAMPLE)).result(timeout=5)
        assert measurement.values == {"ph": 7.25}
        assert measurement.metadata["responses"] == {"note": "AB123 x3 in pH7, stir=True"}
        for change, problem in (
            ({"sample_code": "ab123"}, "pattern"),
            ({"target_temperature": 0.0}, "outside (0, 95.5]"),
            ({"replicates": 10}, "outside [1, 9]"),
            ({"stir": 1}, "not a boolean"),
        ):
            error = sila.run(Operation("bad", {**SAMPLE, **change})).exception(timeout=0)
            assert isinstance(error, InvalidInput) and problem in str(error)
        assert sila.status().state is StationState.IDLE


def test_abort_falls_back_to_the_features_abort_command(ph_meter: tuple[PhMeter, int]) -> None:
    meter, port = ph_meter
    meter.delay_s = 5.0
    with SilaStation("ph", host="127.0.0.1", port=port, command="Measure") as sila:
        future: Future[Measurement] = sila.run(Operation("s-1", SAMPLE))
        wait_for(lambda: _accepted(sila, "s-1"))
        sila.abort()
        assert meter.stopped.is_set(), "abort() returns once the server has been told"
        with pytest.raises(StationError, match="aborted"):
            future.result(timeout=3)


def test_cancel_falls_back_to_the_features_abort_command(ph_meter: tuple[PhMeter, int]) -> None:
    meter, port = ph_meter
    meter.delay_s = 5.0
    with SilaStation("ph", host="127.0.0.1", port=port, command="Measure") as sila:
        future = sila.run(Operation("s-1", SAMPLE))
        wait_for(lambda: _accepted(sila, "s-1"))
        assert sila.cancel("s-1") is True
        assert meter.stopped.is_set(), "cancel() returns once the server has been told"
        with pytest.raises(StationError, match=STOPPED):
            future.result(timeout=0)
        assert sila.abort_server() is True  # Abort again: no CancelController either


class CancellableMeter(PhMeter):
    """The pH meter whose measurements stop one by one (:class:`MeterCancelController`).

    A sample code's measurement takes ``delays[code]`` s (default ``delay_s``).
    """

    def __init__(self, server: SilaServer) -> None:
        super().__init__(server)
        self.delays: dict[str, float] = {}
        self.lock = threading.Lock()
        self.running: dict[str, threading.Event] = {}

    def Measure(self, *args: Any, metadata: Any, instance: Any) -> tuple[float, str]:
        temperature, replicates, buffer, code, stir = args
        instance.begin_execution()
        stop = threading.Event()
        with self.lock:
            self.running[str(instance.execution_uuid)] = stop
            if self.stopped.is_set():
                stop.set()
        if stop.wait(self.delays.get(code, self.delay_s)):
            raise RuntimeError("stopped")
        return 7.0 + temperature / 100, f"{code} x{replicates} in {buffer}, stir={stir}"

    def Abort(self, *, metadata: Any) -> None:
        with self.lock:
            self.stopped.set()
            for stop in self.running.values():
                stop.set()


class MeterCancelController(FeatureImplementationBase):
    """SiLA 2's CancelController for the meter, recording what it was told."""

    def __init__(self, server: SilaServer, meter: CancellableMeter, feature: Feature) -> None:
        super().__init__(parent_server=server)
        self.meter = meter
        self.errors = feature.defined_execution_errors
        self.cancelled: list[str] = []
        self.cancelled_all = threading.Event()

    def CancelCommand(self, CommandExecutionUUID: str, *, metadata: Any) -> None:
        self.cancelled.append(CommandExecutionUUID)
        with self.meter.lock:
            stop = self.meter.running.get(CommandExecutionUUID)
        if stop is None:
            raise DefinedExecutionError(self.errors["InvalidCommandExecutionUUID"], "unknown")
        stop.set()

    def CancelAll(self, *, metadata: Any) -> None:
        self.cancelled_all.set()
        self.meter.Abort(metadata=metadata)


@pytest.fixture
def cancellable_meter() -> Iterator[tuple[CancellableMeter, MeterCancelController, int]]:
    server = SilaServer("pH meter", "PhMeter", "A pH meter", "2.1", "https://example.com")
    meter = CancellableMeter(server)
    server.set_feature_implementation(Feature(PH_METER_FDL), meter)
    feature = Feature(CANCEL_CONTROLLER_FDL)
    controller = MeterCancelController(server, meter, feature)
    server.set_feature_implementation(feature, controller)
    port = find_free_port()
    server.start_insecure("127.0.0.1", port, enable_discovery=False)
    try:
        yield meter, controller, port
    finally:
        meter.Abort(metadata={})
        server.stop(grace_period=0.5)
        _close_discovery(server)


def test_cancel_sends_cancel_command_with_the_execution_uuid(
    cancellable_meter: tuple[CancellableMeter, MeterCancelController, int],
) -> None:
    meter, controller, port = cancellable_meter
    meter.delays = {"AB001": 5.0, "AB002": 1.0}
    with SilaStation("ph", host="127.0.0.1", port=port, command="Measure", slots=2) as sila:
        long = sila.run(Operation("s-1", {**SAMPLE, "sample_code": "AB001"}))
        kept = sila.run(Operation("s-2", {**SAMPLE, "sample_code": "AB002"}))
        wait_for(lambda: _accepted(sila, "s-1") and _accepted(sila, "s-2"))
        progress = sila.progress("s-1")
        assert progress is not None
        assert sila.cancel("s-1") is True
        assert controller.cancelled == [progress.execution_uuid], "told before cancel returns"
        assert not meter.stopped.is_set(), "CancelCommand, not the Abort that stops everything"
        with pytest.raises(StationError, match=STOPPED):
            long.result(timeout=0)
        assert kept.result(timeout=5).metadata["responses"]["note"].startswith("AB002")
        assert controller.cancelled == [progress.execution_uuid]


def test_abort_server_sends_cancel_all(
    cancellable_meter: tuple[CancellableMeter, MeterCancelController, int],
) -> None:
    meter, controller, port = cancellable_meter
    meter.delay_s = 5.0
    with SilaStation("ph", host="127.0.0.1", port=port, command="Measure") as sila:
        future = sila.run(Operation("s-1", SAMPLE))
        wait_for(lambda: _accepted(sila, "s-1"))
        assert sila.abort_server() is True
        assert controller.cancelled_all.is_set()
        with pytest.raises(StationError, match="aborted"):
            future.result(timeout=0)  # its own operations are aborted too
        assert sila.status().state is StationState.IDLE


NO_ABORT_FDL = re.sub(
    r"<Command>\s*<Identifier>Abort</Identifier>.*?</Command>", "", PH_METER_FDL, flags=re.S
).replace(  # a feature of its own name: protobuf refuses two different files of one name
    "<Identifier>PhMeter</Identifier>", "<Identifier>PhMeterNoAbort</Identifier>"
)


def test_abort_server_without_cancel_controller_or_abort_is_false() -> None:
    server = SilaServer("pH meter", "PhMeter", "A pH meter", "2.1", "https://example.com")
    meter = PhMeter(server)
    meter.delay_s = 5.0
    server.set_feature_implementation(Feature(NO_ABORT_FDL), meter)
    port = find_free_port()
    server.start_insecure("127.0.0.1", port, enable_discovery=False)
    try:
        with SilaStation("ph", host="127.0.0.1", port=port, command="Measure") as sila:
            future = sila.run(Operation("s-1", SAMPLE))
            wait_for(lambda: _accepted(sila, "s-1"))
            assert sila.cancel("s-1") is True  # only stops waiting: the meter goes on
            with pytest.raises(StationError, match=STOPPED):
                future.result(timeout=0)
            assert sila.abort_server() is False
            assert not meter.stopped.is_set()
    finally:
        meter.stopped.set()
        server.stop(grace_period=0.5)
        _close_discovery(server)


def test_unknown_feature_or_command_is_invalid_input(ph_meter: tuple[PhMeter, int]) -> None:
    _, port = ph_meter
    with pytest.raises(InvalidInput, match="no feature 'Thermometer'") as caught:
        SilaStation("ph", host="127.0.0.1", port=port, feature="Thermometer")
    assert caught.value.field == "feature"
    with pytest.raises(InvalidInput, match="no observable command 'Abort'"):
        SilaStation("ph", host="127.0.0.1", port=port, feature="PhMeter", command="Abort")


def test_sila2_imports_after_other_protobuf_users() -> None:
    """sila2 0.14 with protobuf 7 failed to import once any other protobuf module (Ray's,
    for one) was loaded ("duplicate file name SiLAFramework.proto"); 0.13 does not."""
    code = "import ray\nimport genesis_platform.labs.sila, genesis_platform.labs.sila_server\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
