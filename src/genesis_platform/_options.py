"""Options of pluggable things (site kinds, station drivers), validated with pydantic.

A site or station is ``{kind, options}``: the kind picks a pydantic model of the options it
takes. :func:`validate_options` turns pydantic's errors into
:class:`~genesis_platform.errors.InvalidInput` naming ``options.<key>`` and the fix, and
:func:`import_extra` names the extra to install when a kind's package is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from genesis_platform.errors import InvalidInput

__all__ = ["import_extra", "validate_options"]

M = TypeVar("M", bound=BaseModel)


def validate_options(
    model: type[M], options: Mapping[str, Any], what: str, fixes: Mapping[str, str] | None = None
) -> M:
    """``options`` validated by ``model``; strings (``"2"``, ``"true"``) are converted.

    Args:
        model: The options' pydantic model.
        options: The options as given.
        what: What has these options, for messages (``"a ray site"``).
        fixes: Option -> how to fix a bad value (default: leave it out for its default).

    Raises:
        InvalidInput: (field ``options.<key>``) an unknown option or a bad value.
    """
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "options"
        if error["type"] == "extra_forbidden":
            raise InvalidInput(
                f"options.{key}",
                f"{what} has no option {key!r}",
                f"its options are {sorted(model.model_fields)}",
            ) from None
        raise InvalidInput(
            f"options.{key}",
            f"{error['msg']} (got {error.get('input')!r})",
            _hint(model, key, fixes or {}),
        ) from None


def _hint(model: type[BaseModel], key: str, fixes: Mapping[str, str]) -> str:
    info = model.model_fields.get(key)
    if key in fixes or info is None:
        return fixes.get(key, "")
    if info.is_required():
        return "it is required"
    return f"leave it out for the default, {info.default!r}"


def import_extra(module: str, extra: str, field: str) -> Any:
    """Import ``module``, which needs the ``[extra]`` extra of the package.

    Raises:
        InvalidInput: (on ``field``) the extra is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InvalidInput(
            field,
            f"this needs the [{extra}] extra ({exc})",
            f"pip install 'genesis-platform[{extra}]'",
        ) from exc
