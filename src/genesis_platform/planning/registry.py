"""Build planners by name and rebuild surrogates from JSON.

A planner kind is a short name (``random``, ``sobol``, ``gp``, or any name registered in
the ``genesis_platform.planners`` entry-point group) or ``package.module:Class``. Every
planner is constructed as ``Class(space, objectives, seed=seed, **options)``. Planner
modules are imported only when asked for, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.protocols import Planner, Surrogate
from genesis_platform.planning.space import Space

__all__ = ["builtin_planners", "load_surrogate", "make_planner"]

ENTRY_POINT_GROUP = "genesis_platform.planners"

_BUILTIN_PLANNERS = {
    "ax": "genesis_platform.planning.adapters.ax:AxPlanner",
    "gp": "genesis_platform.planning.gp:GaussianProcessPlanner",
    "optuna": "genesis_platform.planning.adapters.optuna:OptunaPlanner",
    "random": "genesis_platform.planning.random:RandomPlanner",
    "sobol": "genesis_platform.planning.sobol:SobolPlanner",
}

_BUILTIN_SURROGATES = {
    "gp": "genesis_platform.planning.gp:GaussianProcessSurrogate",
}

_UNKNOWN_FIX = "use one of ax, gp, optuna, random, sobol, or package.module:Class"
_PLANNER_METHODS = tuple(
    name for name, value in vars(Planner).items() if callable(value) and not name.startswith("_")
)
_CLASS_FIX = (
    "name a class built as Class(space, objectives, *, seed, **options) with the methods "
    + ", ".join(_PLANNER_METHODS)
)


def builtin_planners() -> list[str]:
    """Short names of the built-in planners, sorted."""
    return sorted(_BUILTIN_PLANNERS)


def make_planner(
    kind: str,
    space: Space,
    objectives: Mapping[str, str],
    *,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> Planner:
    """Build a planner.

    Args:
        kind: ``gp``, ``random``, ``sobol``, an entry-point name, or ``package.module:Class``.
        space: The search space.
        objectives: Objective names with ``"max"`` or ``"min"``.
        seed: Seed of the planner's randomness.
        options: Keyword options of the planner's constructor (e.g. ``{"n_initial": 8}``).

    Raises:
        InvalidInput: ``planner`` for an unknown kind, a reference to something other than
            a class, a class without the Planner methods or one whose constructor does not
            take ``(space, objectives, *, seed, **options)``;
            ``planner.options.<name>`` for an unexpected or invalid option; the planner's
            own field (``objectives``, ``seed``, ...) for other invalid arguments.
    """
    cls = _resolve_planner(kind)
    _check_planner_class(kind, cls)
    opts = dict(options or {})
    _check_options(kind, cls, opts)
    _check_arguments(kind, cls, space, objectives, seed, opts)
    try:
        planner = cls(space, objectives, seed=seed, **opts)
    except InvalidInput as exc:
        if exc.field in opts:
            raise InvalidInput(f"planner.options.{exc.field}", exc.problem, exc.fix) from exc
        raise
    if not isinstance(planner, Planner):
        raise InvalidInput(
            "planner", f"{kind!r} does not implement the Planner protocol", _UNKNOWN_FIX
        )
    return planner


def load_surrogate(data: Mapping[str, Any]) -> Surrogate:
    """Rebuild a surrogate from its ``to_json()`` output, dispatching on ``data["kind"]``.

    ``kind`` is a built-in name (``gp``) or ``package.module:Class`` whose class has a
    ``from_json`` classmethod.

    Raises:
        InvalidInput: ``surrogate.kind`` when the kind is missing or unknown.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("surrogate", "must be a mapping", "pass the output of to_json()")
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise InvalidInput("surrogate.kind", "missing", "pass the output of to_json()")
    target = _BUILTIN_SURROGATES.get(kind, kind if ":" in kind else None)
    if target is None:
        raise InvalidInput(
            "surrogate.kind", f"unknown surrogate {kind!r}", "use gp or package.module:Class"
        )
    cls = _import_object(target, "surrogate.kind")
    from_json = getattr(cls, "from_json", None)
    if not callable(from_json):
        raise InvalidInput("surrogate.kind", f"{kind!r} has no from_json classmethod")
    surrogate = from_json(data)
    if not isinstance(surrogate, Surrogate):
        raise InvalidInput("surrogate.kind", f"{kind!r} did not build a Surrogate")
    return surrogate


def _resolve_planner(kind: str) -> Any:
    if not isinstance(kind, str) or not kind:
        raise InvalidInput("planner", f"unknown planner {kind!r}", _UNKNOWN_FIX)
    if kind in _BUILTIN_PLANNERS:
        return _import_object(_BUILTIN_PLANNERS[kind], "planner")
    if ":" in kind:
        return _import_object(kind, "planner")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == kind:
            try:
                return entry.load()
            except Exception as exc:
                raise InvalidInput(
                    "planner", f"planner {kind!r} failed to load: {exc}", _UNKNOWN_FIX
                ) from exc
    raise InvalidInput("planner", f"unknown planner '{kind}'", _UNKNOWN_FIX)


def _import_object(target: str, field: str) -> Any:
    """Import ``package.module:Name`` (dotted names after the colon allowed)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise InvalidInput(field, f"{target!r} is not package.module:Class", _UNKNOWN_FIX)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            field, f"cannot import module {module_name!r}: {exc}", "check that it is installed"
        ) from exc
    except Exception as exc:  # the module's own code failed while importing
        raise InvalidInput(
            field,
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}",
            "fix the module or name another one",
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidInput(field, f"module {module_name!r} has no {attr!r}", _UNKNOWN_FIX)
        obj = getattr(obj, part)
    return obj


def _check_planner_class(kind: str, cls: Any) -> None:
    """Reject references to non-classes and to classes without the Planner methods.

    This runs before anything is called, so ``os:system`` is refused, never executed.
    """
    if not inspect.isclass(cls):
        raise InvalidInput(
            "planner", f"{kind!r} is a {type(cls).__name__}, not a class", _CLASS_FIX
        )
    missing = [name for name in _PLANNER_METHODS if not callable(getattr(cls, name, None))]
    if missing:
        raise InvalidInput(
            "planner",
            f"{kind!r} is not a planner: it has no {', '.join(missing)}",
            _CLASS_FIX,
        )


def _check_arguments(
    kind: str,
    cls: Any,
    space: Space,
    objectives: Mapping[str, str],
    seed: int,
    options: Mapping[str, Any],
) -> None:
    """Reject a constructor that cannot take ``(space, objectives, seed=, **options)``."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return  # no introspectable signature: let the constructor decide
    try:
        signature.bind(space, objectives, seed=seed, **options)
    except TypeError as exc:
        raise InvalidInput(
            "planner", f"{kind!r} cannot be built as a planner: {exc}", _CLASS_FIX
        ) from exc


def _check_options(kind: str, cls: Any, options: Mapping[str, Any]) -> None:
    """Reject options the constructor does not accept, naming the first one."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return  # no introspectable signature: let the constructor decide
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        name
        for name, p in list(params.items())[2:]
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and name != "seed"
    ]
    for name in options:
        if name not in accepted:
            known = ", ".join(accepted) if accepted else "none"
            raise InvalidInput(
                f"planner.options.{name}",
                f"unexpected option for planner {kind!r}",
                f"options of {kind}: {known}",
            )
