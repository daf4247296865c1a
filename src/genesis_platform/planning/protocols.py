"""The planner protocol: ask for experiments, tell what they measured.

Planners are pure computation (no I/O, no catalog): the campaign engine stores every
proposal before dispatching it and every observation before telling the planner, so a
planner can always be rebuilt from the catalog with :meth:`Planner.load_state_dict` followed
by :meth:`Planner.tell` of every stored observation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["Direction", "Observation", "ParamValue", "Params", "Planner", "Surrogate"]

ParamValue = float | int | str
"""One parameter value: a float (``Real``), an int (``Int``) or a choice label."""

Params = Mapping[str, ParamValue]
"""One point of a search space: parameter name to value."""

Direction = Literal["max", "min"]
"""How an objective is optimized."""


@dataclass(frozen=True)
class Observation:
    """What one trial measured.

    Attributes:
        params: The point that was run.
        values: Measured values by name (every objective when the trial succeeded).
        failed: True when the trial failed; ``values`` is then usually empty. Planners
            should avoid proposing the same point again but must not treat it as data.
    """

    params: Params
    values: Mapping[str, float] = field(default_factory=dict)
    failed: bool = False


@runtime_checkable
class Surrogate(Protocol):
    """A fitted model of the objective(s) that a planner can hand to the model hub."""

    def predict(self, points: Sequence[Params]) -> tuple[Sequence[float], Sequence[float]]:
        """Posterior mean and standard deviation of the first objective at ``points``.

        Returns:
            ``(mean, std)``, each of length ``len(points)``, in the objective's own units.
        """
        ...

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable description from which :func:`load_surrogate` rebuilds it."""
        ...


@runtime_checkable
class Planner(Protocol):
    """Proposes points of a search space and learns from what they measured.

    Built-ins are constructed as ``Cls(space, objectives, seed=..., **options)``.
    """

    def ask(self, n: int, pending: Sequence[Params] = ()) -> list[Params]:
        """Propose ``n`` distinct points, accounting for ``pending`` (still running) ones."""
        ...

    def tell(self, observations: Sequence[Observation]) -> None:
        """Learn from finished trials (successful or failed), in the order they finished."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """A small JSON-serializable state (seed, proposals made, ...) to persist and resume.

        Observations are not part of it: they are in the catalog and are told again.
        """
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, before the observations are told."""
        ...

    def surrogate(self) -> Surrogate | None:
        """The current fitted model, or None for planners that keep none (random, sobol)."""
        ...
