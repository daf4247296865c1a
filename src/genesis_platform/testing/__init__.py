"""Helpers for tests and examples, shipped so downstream code can use them too.

:mod:`genesis_platform.testing.functions` holds task functions to run by reference
(``"genesis_platform.testing.functions:branin"``) on any executor.
"""

from genesis_platform.testing.functions import (
    JOURNAL_ENV,
    SLEEP_ENV,
    always_fails,
    branin,
    electrolyte_simulation,
    exits_abruptly,
    journaled,
    quadratic,
    reaction_yield_simulation,
    sleep_then_return,
)

__all__ = [
    "JOURNAL_ENV",
    "SLEEP_ENV",
    "always_fails",
    "branin",
    "electrolyte_simulation",
    "exits_abruptly",
    "journaled",
    "quadratic",
    "reaction_yield_simulation",
    "sleep_then_return",
]
