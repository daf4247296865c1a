"""The random-access Sobol' sequence behind the sobol planner and gp's initial design."""

from __future__ import annotations

import numpy as np

from genesis_platform.planning.sobol import SobolSequence


def test_take_is_random_access_in_any_order() -> None:
    seq = SobolSequence(3, seed=7)
    first = seq.take(0, 8)
    later = seq.take(5, 3)
    again = seq.take(0, 8)  # back to the start after drawing: SciPy cannot fast-forward 0
    assert np.array_equal(first, again)
    assert np.array_equal(first[5:], later)


def test_streams_and_seeds_give_different_scramblings() -> None:
    base = SobolSequence(2, seed=1).take(0, 4)
    assert not np.array_equal(base, SobolSequence(2, seed=1, stream=1).take(0, 4))
    assert not np.array_equal(base, SobolSequence(2, seed=2).take(0, 4))
    assert np.all((base >= 0.0) & (base < 1.0))
