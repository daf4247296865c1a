"""The benchmark problems: search space, objectives, options, evaluation and optimum.

Every problem is handed to every planner in the same form: a
:class:`~genesis_platform.planning.space.Space` (with its parameter constraints), the
objectives with their directions, and the planner options the problem needs
(``outcome_constraints``, ``reference_point``), passed through ``make_planner``.

Scores (see :meth:`Problem.trace`):

- single objective: **simple regret** of the best *true* (noiseless) objective value among
  the evaluated points, ``|optimum - best|``. An evaluation that breaks a parameter or
  outcome constraint counts as the problem's ``worst`` value. For the noisy problem the
  planner is told the noisy value, but the regret is computed on the noiseless values of
  the points it evaluated (the best true value among them): it measures where the planner
  went, not how lucky its noise was.
- two objectives: the **hypervolume** (both objectives minimized) of the evaluated points'
  values with respect to the reference point; higher is better, the optimum is the
  hypervolume of the true Pareto front.

The problems (``python benchmarks/planners/problems.py`` checks every optimum constant):

========================= ===== =============================================================
name                      dims  definition
========================= ===== =============================================================
branin                    2     Branin on [-5, 10] x [0, 15]; min 0.397887
hartmann6                 6     Hartmann-6 on [0, 1]^6; min -3.322368
ackley5                   5     Ackley (a=20, b=0.2, c=2 pi) on [-32.768, 32.768]^5, shifted; min 0
rosenbrock4               4     Rosenbrock on [-5, 10]^4; min 0
hartmann6_noisy           6     Hartmann-6 + N(0, sigma^2), sigma = 0.05 * (max - min) = 0.166118
mixed_hartmann3           3+1   Hartmann-3 of a level-dependent transform, plus a level offset
constrained_hartmann6     6     Hartmann-6 with x0 + x1 <= 1 and c = sum(x) - 2 <= 0
branin_currin             2     (Branin, Currin) as in BoTorch, both minimized, ref (18, 6)
suzuki                    4     emulator of the Olympus ``suzuki`` data (yield, maximized)
hplc                      6     emulator of the Olympus ``hplc`` data (peak area, maximized)
========================= ===== =============================================================

Details that are choices of this benchmark:

- ``mixed_hartmann3``: reals ``x0, x1, x2`` in [0, 1] and ``kind`` in ``A, B, C, D``;
  ``f(x, kind) = H3(T_kind(x)) + o_kind`` with ``T_A(x) = x``, ``T_B(x) = 1 - x``,
  ``T_C(x) = (x1, x2, x0)``, ``T_D(x) = 1 - (x1, x2, x0)`` and offsets ``o = (0.5, 0, 1,
  0.25)``. The minimum, -3.862780, is at ``kind = B``, ``x = 1 - x*_H3 = (0.885411,
  0.444351, 0.147453)``; the best values of the other levels are -3.363, -2.863 and -3.613.
- ``constrained_hartmann6``: BoTorch's constrained Hartmann uses ``||x||_1 - 3 <= 0``, which
  does not bind at Hartmann-6's minimum (``||x*||_1 = 2.073``), so a planner that ignores it
  loses nothing. Here the bound is 2, which binds (about 9% of the cube satisfies it), plus
  the parameter constraint ``x0 + x1 <= 1`` (which removes the second-best basin). The
  constrained minimum, -3.307536, was computed once with SLSQP (both constraints, bounds,
  ``ftol`` 1e-15) from the 40 best of 200,000 uniform feasible points; all converged starts
  agreed to 1e-14. It lies on ``sum(x) = 2`` at (0.186480, 0.131388, 0.456224, 0.269105,
  0.307459, 0.649343). An infeasible evaluation counts as 0 (the supremum of Hartmann-6).
- ``ackley5``: the domain is BoTorch's, but the function is ``Ackley(x - s)`` with the fixed
  shift ``s = ACKLEY_SHIFT = (-9.3, 4.1, 12.7, -2.6, 7.9)``, so the minimum is at ``s``,
  not at the centre of the box. Ax's default strategy (and gp's) evaluates the centre of
  the search space first, which for the unshifted function *is* the global minimum (regret 4e-16
  after its first trial, measured): the comparison would show that design choice, not
  how well a planner searches. Shifting the optimum away from the centre is the usual
  remedy (COCO/BBOB shifts every function). The unshifted function is kept as the extra
  problem ``ackley5_centered`` (not run by default, not counted by the targets).
- ``hartmann6_noisy``: Hartmann-6's maximum on the cube is -2.8e-8 (at a corner), so its
  range is 3.322368 and sigma = 0.166118. The noise is drawn per evaluation from a
  generator seeded by ``(seed, problem)``, so every planner of a seed meets the same noise
  sequence.
- ``suzuki``, ``hplc``: see :mod:`emulators`; the optimum is the emulator's own maximum over
  the domain, found numerically when the emulator is fitted and cached with it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genesis_platform.planning.constraints import parse_outcome_constraint
from genesis_platform.planning.pareto import hypervolume
from genesis_platform.planning.protocols import Params
from genesis_platform.planning.space import Choice, Real, Space

Values = dict[str, float]


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    Attributes:
        name: Short name (the CLI's ``--problems``).
        title: One line for reports.
        space: The search space, with its parameter constraints.
        objectives: Objective names with ``"min"`` or ``"max"``.
        evaluate: The noiseless measurement of a point: every objective, and every metric
            an outcome constraint names.
        optimum: The best objective value (one objective) or the largest hypervolume
            (two objectives).
        options: Planner options every planner receives (``outcome_constraints``,
            ``reference_point``).
        noise_sd: Standard deviation of the Gaussian noise added to each objective value the
            planner is told (0: noiseless).
        worst: Objective value counted for an evaluation that breaks a constraint.
    """

    name: str
    title: str
    space: Space
    objectives: dict[str, str]
    evaluate: Callable[[Params], Values]
    optimum: float
    options: dict[str, Any] = field(default_factory=dict)
    noise_sd: float = 0.0
    worst: float | None = None

    @property
    def noise(self) -> bool:
        """Whether the planner is told noisy values."""
        return self.noise_sd > 0.0

    @property
    def multi_objective(self) -> bool:
        """Whether the score is a hypervolume rather than a regret."""
        return len(self.objectives) > 1

    @property
    def score_name(self) -> str:
        """``"hypervolume"`` or ``"regret"``."""
        return "hypervolume" if self.multi_objective else "regret"

    def fingerprint(self) -> str:
        """A short hash of the definition, including values at three fixed points.

        Stored with every result, so results of an earlier definition of a problem are
        never mixed with (or resumed as) results of the current one.
        """
        probes = []
        for fraction in (0.1, 0.37, 0.83):
            point: dict[str, Any] = {}
            for i, (name, spec) in enumerate(self.space.items()):
                if isinstance(spec, Choice):
                    point[name] = spec.values[(i + int(10 * fraction)) % len(spec.values)]
                else:
                    point[name] = spec.low + fraction * (spec.high - spec.low)
            probes.append(self.evaluate(point))
        definition = {
            "space": self.space.to_dict(),
            "constraints": [c.text for c in self.space.constraints],
            "objectives": self.objectives,
            "options": self.options,
            "optimum": self.optimum,
            "noise_sd": self.noise_sd,
            "worst": self.worst,
            "probes": [{k: round(v, 9) for k, v in values.items()} for values in probes],
        }
        text = json.dumps(definition, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def noise_rng(self, seed: int) -> np.random.Generator:
        """The noise generator of one seed: the same for every planner."""
        return np.random.default_rng([seed, zlib.crc32(self.name.encode())])

    def measure(self, point: Params, rng: np.random.Generator) -> tuple[Values, Values]:
        """``(told, true)``: the values the planner is told, and the noiseless ones."""
        true = self.evaluate(point)
        if not self.noise:
            return dict(true), true
        told = dict(true)
        for name in self.objectives:
            told[name] = true[name] + self.noise_sd * float(rng.standard_normal())
        return told, true

    def feasible(self, point: Params, true: Values) -> bool:
        """Whether a point keeps every parameter and (noiseless) outcome constraint."""
        if not self.space.is_feasible(point):
            return False
        return all(
            c.satisfied(true[c.metric])
            for c in (
                parse_outcome_constraint(t) for t in self.options.get("outcome_constraints", ())
            )
        )

    def trace(self, points: Sequence[Params], true: Sequence[Values]) -> list[float]:
        """The score after each evaluation, in the order the points were evaluated.

        Returns:
            Best-so-far simple regret (one objective; 0 is perfect) or hypervolume (two
            objectives; ``optimum`` is perfect), one entry per evaluation.
        """
        feasible = [self.feasible(p, v) for p, v in zip(points, true, strict=True)]
        if self.multi_objective:
            return self._hypervolume_trace(true, feasible)
        [(name, direction)] = self.objectives.items()
        sign = 1.0 if direction == "min" else -1.0  # regret = sign * (best - optimum)
        best = math.inf
        out = []
        for values, ok in zip(true, feasible, strict=True):
            value = values[name] if ok else self.worst
            if value is None:
                raise ValueError(f"{self.name}: an infeasible evaluation needs a worst value")
            best = min(best, sign * value)
            out.append(best - sign * self.optimum)
        return out

    def _hypervolume_trace(self, true: Sequence[Values], feasible: Sequence[bool]) -> list[float]:
        names = list(self.objectives)
        # pareto.hypervolume maximizes: negate minimized objectives and the reference point.
        signs = np.array([-1.0 if self.objectives[n] == "min" else 1.0 for n in names])
        ref = signs * np.array([self.options["reference_point"][n] for n in names])
        rows: list[np.ndarray] = []
        out = []
        for values, ok in zip(true, feasible, strict=True):
            if ok:
                rows.append(signs * np.array([values[n] for n in names]))
            out.append(hypervolume(np.array(rows), ref) if rows else 0.0)
        return out


# -- test functions (one point at a time, as a planner's loop evaluates them) ----------------

_H6_A = np.array(
    [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H3_A = np.array([[3.0, 10.0, 30.0], [0.1, 10.0, 35.0], [3.0, 10.0, 30.0], [0.1, 10.0, 35.0]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])

BRANIN_MIN = 0.397887357729738
HARTMANN6_MIN = -3.322368011415513
HARTMANN6_MAX = -2.8e-8  # at the corner (1, 1, 0, 1, 1, 1); multistart L-BFGS-B
HARTMANN3_MIN = -3.862779787332662
HARTMANN3_ARGMIN = (0.114589, 0.555649, 0.852547)
CONSTRAINED_HARTMANN6_MIN = -3.307536305619513
CONSTRAINED_HARTMANN6_ARGMIN = (0.186480, 0.131388, 0.456224, 0.269105, 0.307459, 0.649343)
BRANIN_CURRIN_MAX_HV = 59.36011874867746
"""BoTorch's ``BraninCurrin._max_hv`` (found with NSGA-II); dense grids approach it from below."""
NOISE_FRACTION = 0.05
ACKLEY_SHIFT = (-9.3, 4.1, 12.7, -2.6, 7.9)

MIXED_OFFSETS = {"A": 0.5, "B": 0.0, "C": 1.0, "D": 0.25}


def branin(x1: float, x2: float) -> float:
    """Branin on ``[-5, 10] x [0, 15]``; minimum ``BRANIN_MIN`` at three points."""
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def currin(x1: float, x2: float) -> float:
    """Currin's exponential function on ``[0, 1]^2`` (BoTorch's form)."""
    factor = 1.0 if x2 == 0.0 else 1.0 - math.exp(-1.0 / (2.0 * x2))
    numerator = 2300 * x1**3 + 1900 * x1**2 + 2092 * x1 + 60
    denominator = 100 * x1**3 + 500 * x1**2 + 4 * x1 + 20
    return factor * numerator / denominator


def hartmann6(x: np.ndarray) -> float:
    """Hartmann-6 on ``[0, 1]^6``; minimum ``HARTMANN6_MIN``. ``x`` has shape ``(6,)``."""
    return -float(_ALPHA @ np.exp(-(_H6_A * (x - _H6_P) ** 2).sum(1)))


def hartmann3(x: np.ndarray) -> float:
    """Hartmann-3 on ``[0, 1]^3``; minimum ``HARTMANN3_MIN``. ``x`` has shape ``(3,)``."""
    return -float(_ALPHA @ np.exp(-(_H3_A * (x - _H3_P) ** 2).sum(1)))


def ackley(x: np.ndarray) -> float:
    """Ackley with ``a = 20, b = 0.2, c = 2 pi``; minimum 0 at the origin."""
    d = len(x)
    return float(
        -20.0 * np.exp(-0.2 * np.sqrt((x**2).sum() / d))
        - np.exp(np.cos(2 * np.pi * x).sum() / d)
        + 20.0
        + math.e
    )


def rosenbrock(x: np.ndarray) -> float:
    """Rosenbrock; minimum 0 at ``(1, ..., 1)``."""
    return float((100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum())


def mixed_hartmann3(x: np.ndarray, kind: str) -> float:
    """Hartmann-3 of a level-dependent transform of ``x``, plus the level's offset."""
    if kind in ("C", "D"):
        x = x[[1, 2, 0]]
    if kind in ("B", "D"):
        x = 1.0 - x
    return hartmann3(x) + MIXED_OFFSETS[kind]


def _vector(point: Params, names: Sequence[str]) -> np.ndarray:
    return np.array([float(point[n]) for n in names])


def _unit_space(d: int, low: float = 0.0, high: float = 1.0) -> Space:
    return Space({f"x{i}": Real(low, high) for i in range(d)})


_X6 = [f"x{i}" for i in range(6)]


# -- the problems ------------------------------------------------------------------------------


def _branin() -> Problem:
    return Problem(
        name="branin",
        title="Branin (2-d)",
        space=Space({"x0": Real(-5.0, 10.0), "x1": Real(0.0, 15.0)}),
        objectives={"y": "min"},
        evaluate=lambda p: {"y": branin(float(p["x0"]), float(p["x1"]))},
        optimum=BRANIN_MIN,
    )


def _hartmann6() -> Problem:
    return Problem(
        name="hartmann6",
        title="Hartmann-6",
        space=_unit_space(6),
        objectives={"y": "min"},
        evaluate=lambda p: {"y": hartmann6(_vector(p, _X6))},
        optimum=HARTMANN6_MIN,
    )


def _ackley5(shift: tuple[float, ...] = ACKLEY_SHIFT) -> Callable[[], Problem]:
    names = [f"x{i}" for i in range(5)]
    s = np.array(shift)

    def build() -> Problem:
        return Problem(
            name="ackley5" if any(shift) else "ackley5_centered",
            title="Ackley-5" + ("" if any(shift) else ", optimum at the centre"),
            space=_unit_space(5, -32.768, 32.768),
            objectives={"y": "min"},
            evaluate=lambda p: {"y": ackley(_vector(p, names) - s)},
            optimum=0.0,
        )

    return build


def _rosenbrock4() -> Problem:
    names = [f"x{i}" for i in range(4)]
    return Problem(
        name="rosenbrock4",
        title="Rosenbrock-4",
        space=_unit_space(4, -5.0, 10.0),
        objectives={"y": "min"},
        evaluate=lambda p: {"y": rosenbrock(_vector(p, names))},
        optimum=0.0,
    )


def _hartmann6_noisy() -> Problem:
    return Problem(
        name="hartmann6_noisy",
        title="Hartmann-6, noise sd 5% of range",
        space=_unit_space(6),
        objectives={"y": "min"},
        evaluate=lambda p: {"y": hartmann6(_vector(p, _X6))},
        optimum=HARTMANN6_MIN,
        noise_sd=NOISE_FRACTION * (HARTMANN6_MAX - HARTMANN6_MIN),
    )


def _mixed_hartmann3() -> Problem:
    names = ["x0", "x1", "x2"]
    space = Space({**{n: Real(0.0, 1.0) for n in names}, "kind": Choice(["A", "B", "C", "D"])})
    return Problem(
        name="mixed_hartmann3",
        title="Mixed: Hartmann-3 + 4-level choice",
        space=space,
        objectives={"y": "min"},
        evaluate=lambda p: {"y": mixed_hartmann3(_vector(p, names), str(p["kind"]))},
        optimum=HARTMANN3_MIN,
    )


def _constrained_hartmann6() -> Problem:
    def evaluate(p: Params) -> Values:
        x = _vector(p, _X6)
        return {"y": hartmann6(x), "c": float(x.sum()) - 2.0}

    return Problem(
        name="constrained_hartmann6",
        title="Constrained Hartmann-6",
        space=Space({n: Real(0.0, 1.0) for n in _X6}, constraints=["x0 + x1 <= 1"]),
        objectives={"y": "min"},
        evaluate=evaluate,
        optimum=CONSTRAINED_HARTMANN6_MIN,
        options={"outcome_constraints": ["c <= 0"]},
        worst=0.0,
    )


def _branin_currin() -> Problem:
    def evaluate(p: Params) -> Values:
        u0, u1 = float(p["x0"]), float(p["x1"])
        return {"f1": branin(15.0 * u0 - 5.0, 15.0 * u1), "f2": currin(u0, u1)}

    return Problem(
        name="branin_currin",
        title="Branin-Currin (2 objectives)",
        space=_unit_space(2),
        objectives={"f1": "min", "f2": "min"},
        evaluate=evaluate,
        optimum=BRANIN_CURRIN_MAX_HV,
        options={"reference_point": {"f1": 18.0, "f2": 6.0}},
    )


def _emulated(name: str) -> Callable[[], Problem]:
    def build() -> Problem:
        import emulators

        emulator = emulators.load(name)
        return Problem(
            name=name,
            title=emulator.title,
            space=emulator.space(),
            objectives={emulator.measurement: emulator.goal},
            evaluate=lambda p: {emulator.measurement: emulator(p)},
            optimum=emulator.optimum,
        )

    return build


BUILDERS: dict[str, Callable[[], Problem]] = {
    "branin": _branin,
    "hartmann6": _hartmann6,
    "ackley5": _ackley5(),
    "rosenbrock4": _rosenbrock4,
    "hartmann6_noisy": _hartmann6_noisy,
    "mixed_hartmann3": _mixed_hartmann3,
    "constrained_hartmann6": _constrained_hartmann6,
    "branin_currin": _branin_currin,
    "suzuki": _emulated("suzuki"),
    "hplc": _emulated("hplc"),
    "ackley5_centered": _ackley5((0.0,) * 5),
}
"""Every problem, in report order."""

REQUIRED = tuple(name for name in BUILDERS if name != "ackley5_centered")
"""The issue's problems: the default of ``run.py`` and the ones the targets count."""

EMULATED = ("suzuki", "hplc")


@functools.cache
def get(name: str) -> Problem:
    """The problem called ``name`` (built once per process)."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; known: {', '.join(BUILDERS)}") from None
    return builder()


# -- self-check ----------------------------------------------------------------------------------


def _check() -> None:
    """Evaluate every problem at its known optimum and recompute the constants."""
    from scipy.optimize import minimize

    checks = [
        ("branin", {"x0": math.pi, "x1": 2.275}, BRANIN_MIN),
        (
            "hartmann6",
            dict(zip(_X6, (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573), strict=True)),
            HARTMANN6_MIN,
        ),
        ("ackley5", dict(zip([f"x{i}" for i in range(5)], ACKLEY_SHIFT, strict=True)), 0.0),
        ("rosenbrock4", {f"x{i}": 1.0 for i in range(4)}, 0.0),
        (
            "mixed_hartmann3",
            {**{f"x{i}": 1.0 - v for i, v in enumerate(HARTMANN3_ARGMIN)}, "kind": "B"},
            HARTMANN3_MIN,
        ),
        (
            "constrained_hartmann6",
            dict(zip(_X6, CONSTRAINED_HARTMANN6_ARGMIN, strict=True)),
            CONSTRAINED_HARTMANN6_MIN,
        ),
    ]
    for name, point, expected in checks:
        problem = get(name)
        value = problem.evaluate(point)["y"]
        regret = problem.trace([point], [problem.evaluate(point)])[0]
        print(f"{name:24} f(x*) = {value:.6f}  (constant {expected:.6f}); regret {regret:.2e}")
    # The constrained optimum, again, from a few hundred random feasible starts.
    rng = np.random.default_rng(1)
    x = rng.random((20000, 6))
    x = x[(x[:, 0] + x[:, 1] <= 1) & (x.sum(1) <= 2)]
    starts = x[np.argsort([hartmann6(r) for r in x])[:20]]
    cons = [
        {"type": "ineq", "fun": lambda v: 1.0 - v[0] - v[1]},
        {"type": "ineq", "fun": lambda v: 2.0 - v.sum()},
    ]
    best = min(
        minimize(
            hartmann6,
            s,
            method="SLSQP",
            bounds=[(0, 1)] * 6,
            constraints=cons,
            options={"ftol": 1e-15, "maxiter": 2000},
        ).fun
        for s in starts
    )
    print(
        f"constrained_hartmann6 recomputed minimum {best:.9f}"
        f" (constant {CONSTRAINED_HARTMANN6_MIN:.9f})"
    )
    # Branin-Currin: the hypervolume of a dense grid approaches the maximum from below.
    problem = get("branin_currin")
    u = np.linspace(0.0, 1.0, 301)
    grid = [{"x0": a, "x1": b} for a in u for b in u]
    y = np.array([[-v["f1"], -v["f2"]] for v in map(problem.evaluate, grid)])
    hv = hypervolume(y, np.array([-18.0, -6.0]))
    print(
        f"branin_currin hypervolume of a 301 x 301 grid {hv:.4f} (max {BRANIN_CURRIN_MAX_HV:.4f};"
        " a grid misses the narrow valleys of Branin: 1001 x 1001 gives 59.149)"
    )
    for kind, offset in MIXED_OFFSETS.items():
        level = min(
            minimize(mixed_hartmann3, s, args=(kind,), bounds=[(0, 1)] * 3).fun
            for s in rng.random((20, 3))
        )
        print(f"mixed_hartmann3 level {kind} (offset {offset}): best {level:.6f}")
    noisy = get("hartmann6_noisy")
    print(f"hartmann6_noisy noise sd {noisy.noise_sd:.6f}")


if __name__ == "__main__":
    _check()
