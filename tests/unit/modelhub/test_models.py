import json
from pathlib import Path

import pytest

from genesis_platform import InvalidInput, NotFound, Platform


def test_register_versions_and_load_json(platform: Platform) -> None:
    v1 = platform.models.register("m", json.dumps({"w": 1}).encode(), framework="json")
    v2 = platform.models.register(
        "m", json.dumps({"w": 2}).encode(), framework="json", metrics={"rmse": 0.1}
    )
    assert (v1.version, v2.version) == (1, 2)
    assert platform.models.load("m") == {"w": 2}
    assert platform.models.load("m", 1) == {"w": 1}
    [info] = platform.models.list()
    assert (info.name, info.versions, info.framework) == ("m", 2, "json")
    assert platform.models.get("m").metrics == {"rmse": 0.1}


def test_trained_on_links_a_dataset_version(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("x\n1\n")
    platform.datasets.add("d", [tmp_path / "d.csv"])
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"\x00weights")
    info = platform.models.register("m", artifact, framework="onnx", trained_on="d@1")
    assert info.trained_on == "d@1"
    assert platform.models.load("m") == b"\x00weights"
    assert "dataset d@1" in platform.lineage.text("model", "m")


def test_errors_name_what_is_wrong(platform: Platform, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="dataset version nope@1"):
        platform.models.register("m", b"x", trained_on="nope@1")
    with pytest.raises(InvalidInput, match="artifact"):
        platform.models.register("m", tmp_path / "missing.bin")
    with pytest.raises(InvalidInput, match="metrics"):
        platform.models.register("m", b"x", metrics={"f": object()})
    assert platform.models.list() == []
    with pytest.raises(NotFound, match="model m"):
        platform.models.get("m")
