"""Gaussian-process regression on the unit cube: kernel, MAP fit, posterior, output transform.

Units: inputs are encoded points in ``[0, 1]^d``; outputs are *standardized* (see
:class:`OutputTransform`), and higher is better (a minimized objective is negated first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack
from scipy.optimize import minimize

from genesis_platform.errors import PlannerError
from genesis_platform.planning.encoding import FloatArray

__all__ = [
    "Hyperparameters",
    "OutputTransform",
    "Posterior",
    "fit_hyperparameters",
    "robust_cholesky",
    "should_log",
]

SQRT5 = math.sqrt(5.0)
_JITTERS = (0.0, 1e-10, 1e-8, 1e-6, 1e-4)
"""Jitter tried on the diagonal, relative to its mean, before giving up on a Cholesky."""

_LS_BOUNDS = (math.log(1e-3), math.log(1e2))
_SCALE_BOUNDS = (math.log(5e-2), math.log(2e1))
_NOISE_MAX = math.log(1.0)


@dataclass(frozen=True)
class Hyperparameters:
    """Matérn-5/2 ARD kernel hyperparameters (standardized output units).

    Attributes:
        lengthscales: Shape ``(d,)``, in encoded (unit-cube) units.
        outputscale: Prior variance of the latent function.
        noise: Observation noise variance.
    """

    lengthscales: tuple[float, ...]
    outputscale: float
    noise: float

    def to_vector(self) -> FloatArray:
        """``log`` of ``[*lengthscales, outputscale, noise]``. Shape ``(d + 2,)``."""
        out: FloatArray = np.log(np.array([*self.lengthscales, self.outputscale, self.noise]))
        return out

    @classmethod
    def from_vector(cls, theta: FloatArray) -> Hyperparameters:
        """Inverse of :meth:`to_vector`."""
        values = np.exp(theta)
        return cls(
            lengthscales=tuple(float(v) for v in values[:-2]),
            outputscale=float(values[-2]),
            noise=float(values[-1]),
        )

    def to_json(self) -> dict[str, object]:
        """A JSON-serializable dict."""
        return {
            "lengthscales": list(self.lengthscales),
            "outputscale": self.outputscale,
            "noise": self.noise,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Hyperparameters:
        """Inverse of :meth:`to_json`."""
        lengthscales = data["lengthscales"]
        assert isinstance(lengthscales, list)
        return cls(
            lengthscales=tuple(float(v) for v in lengthscales),
            outputscale=float(data["outputscale"]),  # type: ignore[arg-type]
            noise=float(data["noise"]),  # type: ignore[arg-type]
        )


_SKEW_FOR_LOG = 1.0
"""``output_transform: auto`` takes logs of positive values whose skewness exceeds this."""


@dataclass(frozen=True)
class OutputTransform:
    """Optionally take logs, winsorize the bad tail, then standardize; higher is better after.

    Attributes:
        sign: ``+1`` for a maximized objective, ``-1`` for a minimized one.
        fence: Values (after ``sign``) below this are raised to it (Tukey's lower fence);
            ``-inf`` when not winsorizing.
        center: Mean of the winsorized values.
        scale: Their standard deviation (1 when they are all equal).
        log: Whether values are log-transformed first (all were positive when fitted).
    """

    sign: float
    fence: float
    center: float
    scale: float
    log: bool = False

    @classmethod
    def fit(
        cls, y: FloatArray, sign: float, *, winsorize: bool = True, log: bool | None = False
    ) -> OutputTransform:
        """Fit to raw values ``y`` (shape ``(n,)``).

        Args:
            y: Raw values.
            sign: ``+1`` to maximize, ``-1`` to minimize.
            winsorize: Raise the bad tail to Tukey's lower fence (``Q1 - 1.5 IQR``).
            log: Take logs first; None decides: when every value is positive and their
                skewness exceeds 1, a long high tail (e.g. errors or impurities spanning
                decades).
        """
        use_log = should_log(y) if log is None else bool(log and bool(np.all(y > 0)))
        v = sign * (np.log(y) if use_log else y)
        fence = -math.inf
        if winsorize:
            q1, q3 = np.percentile(v, [25.0, 75.0])
            fence = float(q1 - 1.5 * (q3 - q1))
        w = np.maximum(v, fence)
        scale = float(np.std(w))
        return cls(sign, fence, float(np.mean(w)), scale if scale > 1e-12 else 1.0, use_log)

    def forward(self, y: FloatArray) -> FloatArray:
        """Raw values to standardized, higher-is-better values (same shape)."""
        v = self.sign * (np.log(y) if self.log else y)
        out: FloatArray = (np.maximum(v, self.fence) - self.center) / self.scale
        return out

    def forward_bound(self, bound: float) -> float:
        """A raw threshold in standardized units (no winsorizing; for reference points)."""
        value = math.log(bound) if self.log else bound
        return (self.sign * value - self.center) / self.scale

    def mean_back(self, mean: FloatArray) -> FloatArray:
        """Standardized posterior means back to the objective's units (medians after logs)."""
        out: FloatArray = self.sign * (mean * self.scale + self.center)
        return np.exp(out) if self.log else out

    def std_back(self, mean: FloatArray, std: FloatArray) -> FloatArray:
        """Standardized posterior standard deviations in the objective's units.

        After a log transform, the delta method: ``std * scale * exp(value)``.
        """
        out: FloatArray = std * self.scale
        return out * self.mean_back(mean) if self.log else out


def should_log(y: FloatArray) -> bool:
    """Whether ``y`` is all positive and skewed enough to model on a log scale."""
    if y.size < 3 or not bool(np.all(y > 0)):
        return False
    centred = y - y.mean()
    spread = float(np.mean(centred**2))
    if spread <= 0.0:
        return False
    skew = float(np.mean(centred**3)) / spread**1.5
    return bool(skew > _SKEW_FOR_LOG)


def matern52(r: FloatArray) -> FloatArray:
    """Matérn-5/2 correlation at scaled distances ``r`` (any shape)."""
    out: FloatArray = (1.0 + SQRT5 * r + (5.0 / 3.0) * r * r) * np.exp(-SQRT5 * r)
    return out


def scaled_sqdist(a: FloatArray, b: FloatArray) -> FloatArray:
    """Squared distances between rows of pre-scaled ``a`` (m, d) and ``b`` (n, d): (m, n)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    out: FloatArray = np.maximum(d2, 0.0)
    return out


def inverse_from_cholesky(chol: FloatArray) -> FloatArray:
    """``A^-1`` from the lower Cholesky factor of ``A`` (shape ``(n, n)``), via LAPACK potri."""
    inv, info = lapack.dpotri(chol, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed with info={info}")
    out: FloatArray = np.tril(inv) + np.tril(inv, -1).T
    return out


def robust_cholesky(matrix: FloatArray, points: FloatArray | None = None) -> FloatArray:
    """Lower Cholesky factor of a symmetric matrix, adding diagonal jitter if needed.

    Args:
        matrix: Shape ``(n, n)``, meant to be positive definite.
        points: The ``(n, d)`` inputs it was built from, to name duplicates on failure.

    Raises:
        PlannerError: when even the largest jitter fails; names duplicated points if any.
    """
    scale = float(np.mean(np.diag(matrix))) if matrix.size else 1.0
    for jitter in _JITTERS:
        try:
            shifted = matrix + jitter * scale * np.eye(matrix.shape[0])
            factor = np.asarray(np.linalg.cholesky(shifted), dtype=np.float64)
        except np.linalg.LinAlgError:
            continue
        if np.all(np.isfinite(factor)):
            return factor
    raise PlannerError(_cholesky_failure(points), duplicates=_duplicates(points))


def _duplicates(points: FloatArray | None) -> list[list[int]]:
    if points is None:
        return []
    groups: dict[bytes, list[int]] = {}
    for i, row in enumerate(np.asarray(points)):
        groups.setdefault(np.ascontiguousarray(row).tobytes(), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _cholesky_failure(points: FloatArray | None) -> str:
    dups = _duplicates(points)
    message = "the Gaussian-process covariance matrix is not positive definite even with jitter"
    if dups:
        named = "; ".join(", ".join(str(i) for i in g) for g in dups)
        return (
            f"{message}: observations at the same point (indices {named}); remove or "
            "average duplicated observations, or use planner random or sobol"
        )
    return f"{message}; check that observed values are finite, or use planner random or sobol"


@dataclass(frozen=True)
class _Prior:
    """Log-normal priors (BoTorch's current defaults), as penalties on log-parameters."""

    ls_loc: float
    ls_scale: float = math.sqrt(3.0)
    noise_loc: float = -4.0
    noise_scale: float = 1.0
    outputscale_scale: float = 1.0

    @classmethod
    def for_dim(cls, d: int) -> _Prior:
        # Hvarfner et al. (2024): the lengthscale mode grows with sqrt(d).
        return cls(ls_loc=math.sqrt(2.0) + 0.5 * math.log(d))

    def penalty(self, theta: FloatArray) -> tuple[float, FloatArray]:
        """Negative log prior density (up to a constant) and its gradient in ``theta``."""
        log_ls, log_s2, log_noise = theta[:-2], theta[-2], theta[-1]
        # The density of a log-normal in its own variable adds ``+ log x``.
        zl = (log_ls - self.ls_loc) / self.ls_scale
        zn = (log_noise - self.noise_loc) / self.noise_scale
        zs = log_s2 / self.outputscale_scale
        value = 0.5 * float(zl @ zl) + float(log_ls.sum()) + 0.5 * zn * zn + log_noise
        value += 0.5 * zs * zs
        grad = np.empty_like(theta)
        grad[:-2] = zl / self.ls_scale + 1.0
        grad[-2] = zs / self.outputscale_scale
        grad[-1] = zn / self.noise_scale + 1.0
        return value, grad


def _neg_log_posterior(
    theta: FloatArray, y: FloatArray, sqdiff: FloatArray, prior: _Prior
) -> tuple[float, FloatArray]:
    """Negative log marginal likelihood (constant mean profiled out) plus the prior.

    Args:
        theta: ``log`` hyperparameters, shape ``(d + 2,)``.
        y: Standardized outputs, shape ``(n,)``.
        sqdiff: ``(x_a - x_b)**2`` per dimension, flattened to shape ``(n * n, d)``.
        prior: Priors on the hyperparameters.

    Returns:
        The value and its gradient in ``theta``.
    """
    n = y.shape[0]
    inv_ls2 = np.exp(-2.0 * theta[:-2])
    s2, noise = math.exp(theta[-2]), math.exp(theta[-1])
    r = np.sqrt(sqdiff @ inv_ls2).reshape(n, n)  # one matrix-vector product, no (n, n, d)
    e = np.exp(-SQRT5 * r)
    kf = s2 * (1.0 + SQRT5 * r + (5.0 / 3.0) * r * r) * e
    try:
        chol = np.asarray(np.linalg.cholesky(kf + noise * np.eye(n)), dtype=np.float64)
        kinv = inverse_from_cholesky(chol)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    ones = kinv.sum(1)
    mean = float(ones @ y) / float(ones.sum())
    resid = y - mean
    alpha = kinv @ resid
    value = 0.5 * float(resid @ alpha) + float(np.log(np.diag(chol)).sum())
    w = kinv - np.outer(alpha, alpha)
    wg = w * (s2 * (5.0 / 3.0) * (1.0 + SQRT5 * r) * e)
    grad = np.empty_like(theta)
    # d K / d log l_j = g * (x_aj - x_bj)**2 / l_j**2; the trace term is a sum over (a, b).
    grad[:-2] = 0.5 * inv_ls2 * (wg.reshape(-1) @ sqdiff)
    grad[-2] = 0.5 * float((w * kf).sum())
    grad[-1] = 0.5 * noise * float(np.trace(w))
    p_value, p_grad = prior.penalty(theta)
    return value + 0.5 * n * math.log(2.0 * math.pi) + p_value, grad + p_grad


def default_hyperparameters(d: int) -> Hyperparameters:
    """The prior modes: lengthscale ``exp(mu - sigma^2)``, unit outputscale, small noise."""
    prior = _Prior.for_dim(d)
    ls = math.exp(prior.ls_loc - prior.ls_scale**2)
    return Hyperparameters((ls,) * d, 1.0, math.exp(prior.noise_loc - 1.0))


def fit_hyperparameters(
    x: FloatArray,
    y: FloatArray,
    *,
    starts: Sequence[Hyperparameters],
    noise_floor: float,
) -> Hyperparameters:
    """MAP hyperparameters by L-BFGS-B from each start; keeps the best.

    Args:
        x: Encoded inputs, shape ``(n, d)``.
        y: Standardized outputs, shape ``(n,)``.
        starts: Starting points (e.g. the previous fit and the prior mode).
        noise_floor: Smallest noise variance allowed (standardized units).
    """
    d = x.shape[1]
    prior = _Prior.for_dim(d)
    sqdiff = ((x[:, None, :] - x[None, :, :]) ** 2).reshape(-1, d)
    low_noise = math.log(noise_floor)
    bounds = [_LS_BOUNDS] * d + [_SCALE_BOUNDS, (low_noise, max(_NOISE_MAX, low_noise))]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    best: tuple[float, FloatArray] | None = None
    for start in starts:
        theta0 = np.clip(start.to_vector(), lo, hi)
        result = minimize(
            _neg_log_posterior,
            theta0,
            args=(y, sqdiff, prior),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 200},
        )
        if np.all(np.isfinite(result.x)) and (best is None or result.fun < best[0]):
            best = (float(result.fun), np.asarray(result.x, dtype=np.float64))
    if best is None:
        return starts[0]
    return Hyperparameters.from_vector(best[1])


class Posterior:
    """A GP conditioned on data, with fixed hyperparameters and constant mean.

    Args:
        x: Encoded inputs, shape ``(n, d)``.
        y: Standardized outputs, shape ``(n,)``.
        hyper: Kernel hyperparameters.
        mean: The constant prior mean; None to estimate it (generalized least squares).
    """

    def __init__(
        self, x: FloatArray, y: FloatArray, hyper: Hyperparameters, mean: float | None = None
    ) -> None:
        self.x = x
        self.y = y
        self.hyper = hyper
        self._inv_ls = 1.0 / np.array(hyper.lengthscales)
        self._xs = x * self._inv_ls
        n = x.shape[0]
        k = hyper.outputscale * matern52(np.sqrt(scaled_sqdist(self._xs, self._xs)))
        chol = robust_cholesky(k + hyper.noise * np.eye(n), x)
        self.kinv = inverse_from_cholesky(chol)
        if mean is None:
            ones = self.kinv.sum(1)
            mean = float(ones @ y) / float(ones.sum())
        self.mean = mean
        self.alpha: FloatArray = self.kinv @ (y - mean)

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Latent mean and variance at encoded points ``x`` (m, d). Each of shape ``(m,)``."""
        k = self.hyper.outputscale * matern52(np.sqrt(scaled_sqdist(x * self._inv_ls, self._xs)))
        mean = self.mean + k @ self.alpha
        var = self.hyper.outputscale - np.einsum("mn,mn->m", k @ self.kinv, k)
        return mean, np.maximum(var, 1e-12)

    def paired_covariance(self, a: FloatArray, b: FloatArray) -> FloatArray:
        """Posterior covariance of the latent function between rows ``a[i]`` and ``b[i]``.

        ``a`` and ``b`` have shape ``(m, d)``; returns ``(m,)``.
        """
        scaled_a, scaled_b = a * self._inv_ls, b * self._inv_ls
        prior = self.hyper.outputscale * matern52(
            np.sqrt(np.maximum(((scaled_a - scaled_b) ** 2).sum(1), 0.0))
        )
        ka = self.hyper.outputscale * matern52(np.sqrt(scaled_sqdist(scaled_a, self._xs)))
        kb = self.hyper.outputscale * matern52(np.sqrt(scaled_sqdist(scaled_b, self._xs)))
        out: FloatArray = prior - np.einsum("mn,mn->m", ka @ self.kinv, kb)
        return out

    def predict_with_grad(
        self, x: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Mean, variance and their gradients in ``x``.

        Returns:
            ``mean`` (m,), ``var`` (m,), ``d mean/dx`` (m, d), ``d var/dx`` (m, d).
        """
        s2 = self.hyper.outputscale
        diff = (x * self._inv_ls)[:, None, :] - self._xs[None, :, :]  # (m, n, d)
        r = np.sqrt(np.einsum("mnd,mnd->mn", diff, diff))
        e = np.exp(-SQRT5 * r)
        k = s2 * (1.0 + SQRT5 * r + (5.0 / 3.0) * r * r) * e
        g = s2 * (5.0 / 3.0) * (1.0 + SQRT5 * r) * e  # d k / d x = -g * diff / l
        w = k @ self.kinv
        mean = self.mean + k @ self.alpha
        var = s2 - np.einsum("mn,mn->m", w, k)
        coef = np.stack([g * self.alpha, -2.0 * g * w], axis=1)  # (m, 2, n)
        both = -np.matmul(coef, diff) * self._inv_ls  # (m, 2, d): d mean/dx, d var/dx
        return mean, np.maximum(var, 1e-12), both[:, 0, :], both[:, 1, :]

    def sample(self, x: FloatArray, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` joint draws of the latent function at ``x`` (m, d). Shape ``(n, m)``."""
        k_xn = self.hyper.outputscale * matern52(np.sqrt(scaled_sqdist(x * self._inv_ls, self._xs)))
        xs = x * self._inv_ls
        k_xx = self.hyper.outputscale * matern52(np.sqrt(scaled_sqdist(xs, xs)))
        mean = self.mean + k_xn @ self.alpha
        cov = k_xx - k_xn @ self.kinv @ k_xn.T
        chol = robust_cholesky(0.5 * (cov + cov.T) + 1e-9 * np.eye(x.shape[0]))
        out: FloatArray = mean[None, :] + rng.standard_normal((n, x.shape[0])) @ chol.T
        return out

    def condition_on(self, x_new: FloatArray, y_new: FloatArray) -> Posterior:
        """The same GP with extra data (fantasies): same hyperparameters and mean."""
        return Posterior(
            np.vstack([self.x, x_new]), np.concatenate([self.y, y_new]), self.hyper, self.mean
        )
