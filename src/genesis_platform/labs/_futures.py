"""What every station driver does with its operations' futures and ids."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, InvalidStateError

from genesis_platform.errors import InvalidInput
from genesis_platform.labs.protocols import Measurement, Operation

__all__ = ["digest", "failed", "id_clash", "settle"]


def failed(error: BaseException) -> Future[Measurement]:
    """A future that has already failed with ``error``."""
    future: Future[Measurement] = Future()
    future.set_exception(error)
    return future


def settle(
    future: Future[Measurement],
    result: Measurement | None = None,
    error: BaseException | None = None,
) -> None:
    """Set a future's outcome, unless its caller cancelled it meanwhile."""
    try:
        if error is not None:
            future.set_exception(error)
        elif result is not None:
            future.set_result(result)
    except InvalidStateError:
        pass


def id_clash(op: Operation) -> InvalidInput:
    """The error for an operation id in flight with other parameters."""
    return InvalidInput(
        "op.id",
        f"operation '{op.id}' is already queued or running with other parameters",
        "give every operation its own id",
    )


def digest(text: str) -> int:
    """A stable 64-bit integer from a string (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
