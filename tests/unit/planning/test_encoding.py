from __future__ import annotations

import numpy as np
import pytest

from genesis_platform.planning.encoding import Encoder, point_key
from genesis_platform.planning.space import Choice, Int, Real, Space


def test_layout(mixed_space: Space) -> None:
    enc = Encoder(mixed_space)
    assert enc.dim == 6
    assert enc.n_params == 4
    assert enc.categorical_blocks == [(3, 6)]
    assert enc.integer_columns.tolist() == [2]
    assert enc.continuous_columns.tolist() == [0, 1, 2]
    assert enc.categorical_columns().tolist() == [3, 4, 5]
    assert enc.categorical_combinations() == 3
    assert enc.size() is None


def test_round_trip(mixed_space: Space) -> None:
    enc = Encoder(mixed_space)
    points = [
        {"temperature": 20.0, "concentration": 0.01, "steps": 1, "solvent": "EC"},
        {"temperature": 80.0, "concentration": 10.0, "steps": 5, "solvent": "PC"},
        {"temperature": 33.3, "concentration": 0.5, "steps": 3, "solvent": "DMC"},
    ]
    x = enc.encode(points)
    assert x.shape == (3, 6)
    assert np.all((x >= 0.0) & (x <= 1.0))
    back = enc.decode(x)
    for original, decoded in zip(points, back, strict=True):
        assert decoded["steps"] == original["steps"] and type(decoded["steps"]) is int
        assert decoded["solvent"] == original["solvent"]
        for name in ("temperature", "concentration"):
            assert type(decoded[name]) is float
            assert decoded[name] == pytest.approx(original[name], rel=1e-12)
        assert mixed_space.validate(decoded) == decoded


def test_log_scale_is_linear_in_log() -> None:
    enc = Encoder(Space({"c": Real(0.01, 100.0, log=True), "n": Int(1, 1000, log=True)}))
    x = enc.encode([{"c": 1.0, "n": 1}])
    assert x[0, 0] == pytest.approx(0.5)
    decoded = enc.decode(np.array([[0.5, 0.5]]))[0]
    assert decoded["c"] == pytest.approx(1.0)
    assert 10 <= int(decoded["n"]) <= 40  # about sqrt(1000)


def test_decode_clips_and_rounds() -> None:
    space = Space({"x": Real(-1.0, 1.0), "k": Int(0, 3), "c": Choice(["a", "b", 7])})
    enc = Encoder(space)
    decoded = enc.decode(np.array([[1.5, 0.49, 0.1, 0.2, 0.9]]))[0]
    assert decoded == {"x": 1.0, "k": 1, "c": 7}


def test_int_bins_are_equally_wide() -> None:
    enc = Encoder(Space({"k": Int(0, 3)}))
    u = (np.arange(4000)[:, None] + 0.5) / 4000
    counts = np.bincount([p["k"] for p in enc.decode(enc.from_uniform(u))])  # type: ignore[misc]
    assert counts.tolist() == [1000, 1000, 1000, 1000]


def test_snap_is_idempotent_and_valid(mixed_space: Space) -> None:
    enc = Encoder(mixed_space)
    rng = np.random.default_rng(0)
    snapped = enc.snap(rng.random((50, enc.dim)) * 1.2 - 0.1)
    assert np.array_equal(enc.snap(snapped), snapped)
    assert np.array_equal(snapped[:, 3:].sum(1), np.ones(50))
    assert np.allclose(enc.encode(enc.decode(snapped)), snapped)


def test_from_uniform_covers_every_choice(mixed_space: Space) -> None:
    enc = Encoder(mixed_space)
    points = enc.decode(enc.from_uniform(np.random.default_rng(1).random((300, 4))))
    assert {p["solvent"] for p in points} == {"EC", "DMC", "PC"}
    assert {p["steps"] for p in points} == {1, 2, 3, 4, 5}
    for p in points:
        mixed_space.validate(p)


def test_enumerate_finite_space() -> None:
    space = Space({"k": Int(2, 4), "c": Choice(["a", "b"])})
    enc = Encoder(space)
    assert enc.size() == 6
    points = enc.decode(enc.enumerate())
    assert len({point_key(space, p) for p in points}) == 6
    assert enc.enumerate_categorical().tolist() == [[1.0, 0.0], [0.0, 1.0]]
