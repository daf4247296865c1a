from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.planning import registry
from genesis_platform.planning.gp import GaussianProcessPlanner
from genesis_platform.planning.random import RandomPlanner
from genesis_platform.planning.registry import builtin_planners, load_surrogate, make_planner
from genesis_platform.planning.sobol import SobolPlanner
from genesis_platform.planning.space import Real, Space

SPACE = Space({"x": Real(0.0, 1.0)})
THIRD_PARTY = """
from genesis_platform.planning.random import RandomPlanner


class EveryOther(RandomPlanner):
    def __init__(self, space, objectives, *, seed=0, stride=2):
        super().__init__(space, objectives, seed=seed)
        self.stride = stride


class NotAPlanner:
    def __init__(self, space, objectives, *, seed=0):
        pass


class TakesNoSpace(RandomPlanner):
    def __init__(self, *, seed=0):
        raise AssertionError("never called")


def not_a_class(space, objectives, *, seed=0):
    raise AssertionError("never called")
"""
BROKEN = """
raise RuntimeError("boom")
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "genesis_test_plugin.py").write_text(textwrap.dedent(THIRD_PARTY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "genesis_test_plugin"
    sys.modules.pop("genesis_test_plugin", None)


def test_builtins() -> None:
    assert builtin_planners() == ["ax", "gp", "optuna", "random", "sobol"]
    assert isinstance(make_planner("random", SPACE, {"y": "max"}), RandomPlanner)
    assert isinstance(make_planner("sobol", SPACE, {"y": "max"}), SobolPlanner)
    gp = make_planner("gp", SPACE, {"y": "min"}, seed=3, options={"n_initial": 6})
    assert isinstance(gp, GaussianProcessPlanner)
    assert gp.n_initial == 6 and gp.seed == 3


def test_unknown_planner() -> None:
    with pytest.raises(InvalidInput) as info:
        make_planner("x", SPACE, {"y": "max"})
    assert info.value.field == "planner"
    assert info.value.problem == "unknown planner 'x'"
    assert info.value.fix == "use one of ax, gp, optuna, random, sobol, or package.module:Class"


@pytest.mark.parametrize(
    "kind", ["nosuchmodule_xyz:Planner", "genesis_platform.planning.gp:Nope", ":"]
)
def test_unloadable_class(kind: str) -> None:
    with pytest.raises(InvalidInput) as info:
        make_planner(kind, SPACE, {"y": "max"})
    assert info.value.field == "planner"


def test_module_class(plugin_module: str) -> None:
    planner = make_planner(
        f"{plugin_module}:EveryOther", SPACE, {"y": "max"}, seed=1, options={"stride": 3}
    )
    assert type(planner).__name__ == "EveryOther"
    assert planner.stride == 3  # type: ignore[attr-defined]
    assert len(planner.ask(2)) == 2
    planner = make_planner("genesis_platform.planning.sobol:SobolPlanner", SPACE, {"y": "max"})
    assert isinstance(planner, SobolPlanner)


def test_class_that_is_not_a_planner(plugin_module: str) -> None:
    with pytest.raises(InvalidInput) as info:
        make_planner(f"{plugin_module}:NotAPlanner", SPACE, {"y": "max"})
    assert info.value.field == "planner"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("collections:OrderedDict", "it has no ask, tell"),
        ("os:system", "not a class"),
        ("os:path", "module, not a class"),
        ("genesis_platform.planning.registry:_UNKNOWN_FIX", "str, not a class"),
        ("genesis_test_plugin:not_a_class", "function, not a class"),
        ("genesis_test_plugin:NotAPlanner", "it has no ask"),
        ("genesis_test_plugin:TakesNoSpace", "cannot be built"),
        ("genesis_test_broken:Planner", "RuntimeError: boom"),
    ],
)
def test_references_that_are_not_planner_classes_are_refused_before_a_call(
    plugin_module: str, tmp_path: Path, kind: str, words: str
) -> None:
    (tmp_path / "genesis_test_broken.py").write_text(BROKEN)
    with pytest.raises(InvalidInput) as info:
        make_planner(kind, SPACE, {"y": "max"})
    sys.modules.pop("genesis_test_broken", None)
    assert info.value.field == "planner"
    assert words in info.value.problem
    assert info.value.fix


def test_entry_points(monkeypatch: pytest.MonkeyPatch, plugin_module: str) -> None:
    fake = EntryPoint("every-other", f"{plugin_module}:EveryOther", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [fake])
    planner = make_planner("every-other", SPACE, {"y": "max"})
    assert type(planner).__name__ == "EveryOther"


def test_bad_options() -> None:
    with pytest.raises(InvalidInput) as info:
        make_planner("gp", SPACE, {"y": "max"}, options={"n_inital": 5})
    assert info.value.field == "planner.options.n_inital"
    assert "n_initial" in info.value.fix
    with pytest.raises(InvalidInput) as info:
        make_planner("random", SPACE, {"y": "max"}, options={"seed": 5})
    assert info.value.field == "planner.options.seed"
    with pytest.raises(InvalidInput) as info:
        make_planner("gp", SPACE, {"y": "max"}, options={"n_initial": -2})
    assert info.value.field == "planner.options.n_initial"


def test_bad_objectives_and_seed() -> None:
    with pytest.raises(InvalidInput) as info:
        make_planner("random", SPACE, {"y": "up"})
    assert info.value.field == "objectives.y"
    with pytest.raises(InvalidInput) as info:
        make_planner("sobol", SPACE, {})
    assert info.value.field == "objectives"
    with pytest.raises(InvalidInput) as info:
        make_planner("sobol", SPACE, {"y": "max"}, seed=-1)
    assert info.value.field == "seed"


def test_load_surrogate_dispatch() -> None:
    with pytest.raises(InvalidInput) as info:
        load_surrogate({"kind": "forest"})
    assert info.value.field == "surrogate.kind"
    with pytest.raises(InvalidInput) as info:
        load_surrogate({})
    assert info.value.field == "surrogate.kind"
    with pytest.raises(InvalidInput):
        load_surrogate({"kind": "gp"})
