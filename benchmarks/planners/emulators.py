"""Emulators of real experimental data sets: ensembles of small neural networks.

A planner cannot run a real laboratory in a benchmark, so each data set is replaced by a
model fitted to it. The model is deliberately *not* a Gaussian process, which would favour
the GP planners: it is the average of ``MEMBERS`` multilayer perceptrons (scikit-learn's
``MLPRegressor``: two hidden layers of 32 tanh units, L2 penalty ``alpha = 0.1``, L-BFGS
for at most 1,000 iterations), identical except for their initial weights (seeds 0 to 4).
Inputs are scaled to the unit cube by the data set's bounds and the target is
standardized; a target with many zeros and a long upper tail (``hplc``) is modelled as its
square root. Predictions are clipped at 0 (both measurements are non-negative). tanh units
make the emulator smooth, like the chemistry it stands for, and an average of networks is
smoother still.

Fitting needs scikit-learn (``/work/benchvenv/bin/pip install scikit-learn``); it runs once
per data set and writes the weights, the cross-validation scores and the emulator's
optimum to ``benchmarks/.cache/emulators/<name>-<key>.npz``, where ``key`` hashes the data
files and the settings above. Evaluating a cached emulator needs only NumPy, so the
benchmark runs under any interpreter once the cache exists.

The emulator's **optimum** (the reference for regret) is its maximum (or minimum) over the
whole domain: the best of 65,536 Sobol' points and the data points, then L-BFGS-B from the
32 best. Its argmax is stored with it, so extrapolation far beyond the data would show.

Usage: ``python benchmarks/planners/emulators.py [suzuki hplc] [--refit]`` fits (or loads)
and prints the 5-fold cross-validated R^2 and RMSE, the optimum and the data's best value.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genesis_platform.planning.protocols import Params
from genesis_platform.planning.space import Real, Space

DATA = Path(__file__).resolve().parents[1] / "data"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "emulators"

HIDDEN = (32, 32)
ALPHA = 0.1
MAX_ITER = 1000
MEMBERS = 5
FOLDS = 5
FORMAT = 1
TRANSFORMS = {"suzuki": "identity", "hplc": "sqrt"}
TITLES = {"suzuki": "Suzuki coupling yield (emulator)", "hplc": "HPLC peak area (emulator)"}
SETTINGS = {
    "hidden": HIDDEN,
    "activation": "tanh",
    "alpha": ALPHA,
    "max_iter": MAX_ITER,
    "members": MEMBERS,
    "format": FORMAT,
}


@dataclass(frozen=True)
class Dataset:
    """A data set as the emulator sees it."""

    name: str
    names: list[str]
    low: np.ndarray
    high: np.ndarray
    measurement: str
    goal: str  # "max" or "min"
    x: np.ndarray  # (n, d), raw units
    y: np.ndarray  # (n,)

    def unit(self, x: np.ndarray) -> np.ndarray:
        """Raw inputs ``(n, d)`` scaled to the unit cube."""
        return (x - self.low) / (self.high - self.low)


def load_dataset(name: str) -> Dataset:
    """Read ``benchmarks/data/<name>/{config.json,data.csv}`` (Olympus layout)."""
    folder = DATA / name
    config = json.loads((folder / "config.json").read_text())
    params = config["parameters"]
    if any(p["type"] != "continuous" for p in params):
        raise ValueError(f"{name}: only continuous parameters are emulated")
    data = np.loadtxt(folder / "data.csv", delimiter=",", ndmin=2)
    [measurement] = config["measurements"]
    return Dataset(
        name=name,
        names=[p["name"] for p in params],
        low=np.array([float(p["low"]) for p in params]),
        high=np.array([float(p["high"]) for p in params]),
        measurement=measurement["name"],
        goal="max" if config["default_goal"] == "maximize" else "min",
        x=data[:, : len(params)],
        y=data[:, len(params)],
    )


class Emulator:
    """A fitted ensemble, evaluated with NumPy.

    Args:
        dataset: The data set it was fitted on (for names, bounds and goal).
        layers: Per member, the ``(weights, bias)`` of each layer; hidden layers use tanh.
        y_mean, y_std: Standardization of the (transformed) target.
        transform: ``"identity"`` or ``"sqrt"``.
        meta: Cross-validation scores, optimum and fit details.
    """

    def __init__(
        self,
        dataset: Dataset,
        layers: list[list[tuple[np.ndarray, np.ndarray]]],
        y_mean: float,
        y_std: float,
        transform: str,
        meta: dict[str, Any],
    ) -> None:
        self.dataset = dataset
        self.layers = layers
        self.y_mean = y_mean
        self.y_std = y_std
        self.transform = transform
        self.meta = meta

    @property
    def measurement(self) -> str:
        return self.dataset.measurement

    @property
    def goal(self) -> str:
        return self.dataset.goal

    @property
    def title(self) -> str:
        return TITLES.get(self.dataset.name, self.dataset.name)

    @property
    def optimum(self) -> float:
        return float(self.meta["optimum"])

    def space(self) -> Space:
        """The data set's domain as a search space."""
        d = self.dataset
        return Space(
            {
                n: Real(float(lo), float(hi))
                for n, lo, hi in zip(d.names, d.low, d.high, strict=True)
            }
        )

    def predict_unit(self, u: np.ndarray) -> np.ndarray:
        """Predictions at unit-cube inputs ``u`` of shape ``(n, d)``; shape ``(n,)``."""
        total = np.zeros(u.shape[0])
        for member in self.layers:
            h = u
            for i, (w, b) in enumerate(member):
                h = h @ w + b
                if i < len(member) - 1:
                    h = np.tanh(h)
            total += h[:, 0]
        z = self.y_mean + self.y_std * total / len(self.layers)
        if self.transform == "sqrt":
            return np.maximum(z, 0.0) ** 2
        return np.maximum(z, 0.0)

    def __call__(self, point: Params) -> float:
        """The emulated measurement at one point of the space."""
        x = np.array([[float(point[n]) for n in self.dataset.names]])
        return float(self.predict_unit(self.dataset.unit(x))[0])


def cache_path(name: str) -> Path:
    """Where the fitted emulator of ``name`` is cached (the key covers data and settings)."""
    digest = hashlib.sha256()
    for file in ("config.json", "data.csv"):
        digest.update((DATA / name / file).read_bytes())
    digest.update(json.dumps({**SETTINGS, "transform": TRANSFORMS[name]}).encode())
    return CACHE / f"{name}-{digest.hexdigest()[:12]}.npz"


def load(name: str, refit: bool = False) -> Emulator:
    """The emulator of data set ``name``, from the cache or fitted now (needs scikit-learn)."""
    dataset = load_dataset(name)
    path = cache_path(name)
    if refit or not path.exists():
        _fit_and_cache(dataset, path)
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        layers = [
            [(stored[f"w{m}_{i}"], stored[f"b{m}_{i}"]) for i in range(meta["n_layers"])]
            for m in range(meta["members"])
        ]
    return Emulator(dataset, layers, meta["y_mean"], meta["y_std"], meta["transform"], meta)


# -- fitting (scikit-learn) ----------------------------------------------------------------------


def _ensemble(seed_offset: int = 0) -> list[Any]:
    from sklearn.neural_network import MLPRegressor

    return [
        MLPRegressor(
            hidden_layer_sizes=HIDDEN,
            activation="tanh",
            alpha=ALPHA,
            solver="lbfgs",
            max_iter=MAX_ITER,
            random_state=seed_offset + m,
        )
        for m in range(MEMBERS)
    ]


def _fit_members(u: np.ndarray, y: np.ndarray, transform: str) -> tuple[list[Any], float, float]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    z = np.sqrt(y) if transform == "sqrt" else y
    mean, std = float(z.mean()), float(z.std())
    members = _ensemble()
    with warnings.catch_warnings():
        # L-BFGS stopping at MAX_ITER is the intended early stop, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for model in members:
            model.fit(u, (z - mean) / std)
    return members, mean, std


def _emulator_from(
    dataset: Dataset, members: list[Any], mean: float, std: float, transform: str
) -> Emulator:
    layers = [
        [(np.asarray(w), np.asarray(b)) for w, b in zip(m.coefs_, m.intercepts_, strict=True)]
        for m in members
    ]
    return Emulator(dataset, layers, mean, std, transform, {})


def _cross_validate(dataset: Dataset, transform: str) -> dict[str, float]:
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import KFold

    u, y = dataset.unit(dataset.x), dataset.y
    pred = np.zeros_like(y)
    trees = np.zeros_like(y)
    for train, test in KFold(FOLDS, shuffle=True, random_state=0).split(u):
        members, mean, std = _fit_members(u[train], y[train], transform)
        pred[test] = _emulator_from(dataset, members, mean, std, transform).predict_unit(u[test])
        gbt = GradientBoostingRegressor(
            n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=0
        )
        trees[test] = gbt.fit(u[train], y[train]).predict(u[test])
    total = float(((y - y.mean()) ** 2).sum())
    return {
        "cv_r2": 1.0 - float(((pred - y) ** 2).sum()) / total,
        "cv_rmse": float(np.sqrt(((pred - y) ** 2).mean())),
        "cv_r2_boosted_trees": 1.0 - float(((trees - y) ** 2).sum()) / total,
        "y_sd": float(y.std()),
    }


def _optimize(emulator: Emulator) -> tuple[float, np.ndarray]:
    """The emulator's best value over the unit cube and where it is (unit coordinates)."""
    from scipy.optimize import minimize
    from scipy.stats import qmc

    d = emulator.dataset
    sign = -1.0 if d.goal == "max" else 1.0
    candidates = np.vstack(
        [
            qmc.Sobol(len(d.names), scramble=True, rng=np.random.default_rng(0)).random(65536),
            d.unit(d.x),
        ]
    )
    scores = sign * emulator.predict_unit(candidates)
    best_value, best_u = np.inf, candidates[0]
    for start in candidates[np.argsort(scores)[:32]]:
        result = minimize(
            lambda u: sign * float(emulator.predict_unit(u[None, :])[0]),
            start,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * len(d.names),
        )
        if result.fun < best_value:
            best_value, best_u = float(result.fun), result.x
    return sign * best_value, best_u


def _fit_and_cache(dataset: Dataset, path: Path) -> None:
    try:
        import sklearn
    except ImportError as exc:
        raise SystemExit(
            f"the {dataset.name} emulator is not cached yet and fitting it needs scikit-learn: "
            "run `/work/benchvenv/bin/python benchmarks/planners/emulators.py` once"
        ) from exc
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    transform = TRANSFORMS[dataset.name]
    with threadpool_limits(1):  # several BLAS threads make these tiny fits 20x slower here
        scores = _cross_validate(dataset, transform)
        members, mean, std = _fit_members(dataset.unit(dataset.x), dataset.y, transform)
    emulator = _emulator_from(dataset, members, mean, std, transform)
    optimum, argopt = _optimize(emulator)
    best = int(np.argmax(dataset.y) if dataset.goal == "max" else np.argmin(dataset.y))
    meta = {
        "name": dataset.name,
        "transform": transform,
        "settings": SETTINGS,
        "sklearn": sklearn.__version__,
        "n_data": len(dataset.y),
        "members": MEMBERS,
        "n_layers": len(emulator.layers[0]),
        "y_mean": mean,
        "y_std": std,
        **scores,
        "optimum": optimum,
        "argopt": dict(
            zip(
                dataset.names,
                (dataset.low + argopt * (dataset.high - dataset.low)).tolist(),
                strict=True,
            )
        ),
        "data_best": float(dataset.y[best]),
        "emulator_at_data_best": float(
            emulator.predict_unit(dataset.unit(dataset.x[best : best + 1]))[0]
        ),
        "fit_seconds": time.perf_counter() - start,
    }
    arrays = {
        f"{kind}{m}_{i}": array
        for m, member in enumerate(emulator.layers)
        for i, (w, b) in enumerate(member)
        for kind, array in (("w", w), ("b", b))
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(TRANSFORMS), help="data sets")
    parser.add_argument("--refit", action="store_true", help="fit again even if cached")
    args = parser.parse_args()
    for name in args.names:
        m = load(name, refit=args.refit).meta
        print(
            f"{name}: {m['n_data']} measurements; {FOLDS}-fold CV R^2 {m['cv_r2']:.3f}, "
            f"RMSE {m['cv_rmse']:.3g} (sd of the data {m['y_sd']:.3g}; boosted trees R^2 "
            f"{m['cv_r2_boosted_trees']:.3f}); fit {m['fit_seconds']:.0f} s"
        )
        where = ", ".join(f"{k}={v:.4g}" for k, v in m["argopt"].items())
        print(
            f"  emulator optimum {m['optimum']:.4g} at {where}; best measurement "
            f"{m['data_best']:.4g} (emulator there: {m['emulator_at_data_best']:.4g})"
        )


if __name__ == "__main__":
    main()
