"""Tests of optional integrations: skip without the extra, except in CI, where they fail."""

from __future__ import annotations

import importlib
import os
from typing import NoReturn

import pytest


def skip_or_fail(message: str) -> NoReturn:
    """Skip the test, or fail it under ``CI=true``, where every integration must run.

    Args:
        message: What is missing and how to get it.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_extra(extra: str, *modules: str) -> None:
    """Skip the test (fail it under ``CI=true``) unless every one of ``modules`` imports.

    Args:
        extra: The package extra that installs them (named in the message).
        modules: Top-level modules to import.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            skip_or_fail(f"{module} is not installed ({exc}); pip install -e '.[{extra}]'")
