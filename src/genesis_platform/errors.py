"""Errors raised by Genesis: one root, one family per concern.

Every error Genesis raises on purpose is a :class:`GenesisError`. Each concern has one
family, and a family may be refined where callers need to tell cases apart::

    GenesisError
    ├── InvalidInput (ValueError)        bad user input: a field, a value, and the fix
    │   ├── CampaignSpecError            a campaign file or spec that does not validate
    │   ├── SafetyViolation              an operation breaks a station's safety rules; not sent
    │   └── AllocationExceeded           a project's allocation cannot cover a submission
    ├── NotFound (LookupError)           a named thing (dataset, version, campaign, ...) is absent
    ├── AccessDenied (PermissionError)   governance refused the action
    ├── ConfigError                      settings file or environment is unusable
    ├── CatalogError                     the catalog database failed or is inconsistent
    ├── StorageError                     the blob store failed
    │   └── CorruptBlob                  a blob's bytes do not match its sha256
    ├── PlannerError                     a planner cannot propose (e.g. singular model)
    ├── ExecutorError                    a compute backend failed
    │   ├── TaskFailed                   the task itself raised or exited non-zero
    │   └── TransientFailure             the backend lost the task; a retry may succeed
    ├── StationError                     a lab station failed or refused an operation
    │   └── OperationFailed              the operation ran and failed
    └── CampaignError                    the closed loop cannot go on

Error families map to CLI exit codes in :mod:`genesis_platform.cli` and (later) to HTTP
status codes in the server, each in exactly one place.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDenied",
    "AllocationExceeded",
    "CampaignError",
    "CampaignSpecError",
    "CatalogError",
    "ConfigError",
    "CorruptBlob",
    "ExecutorError",
    "GenesisError",
    "InvalidInput",
    "NotFound",
    "OperationFailed",
    "PlannerError",
    "SafetyViolation",
    "StationError",
    "StorageError",
    "TaskFailed",
    "TransientFailure",
]


class GenesisError(Exception):
    """Root of every error Genesis raises on purpose.

    Args:
        message: What went wrong and what to do next.
        **details: Structured attributes (field names, ids, ...) kept on ``details``.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message


class InvalidInput(GenesisError, ValueError):
    """User input that does not validate.

    Args:
        field: Dotted path of the offending field (``space.temperature_c.low``).
        problem: What is wrong with it.
        fix: What to write instead.
    """

    def __init__(self, field: str, problem: str, fix: str = "", **details: Any) -> None:
        message = f"{field}: {problem}" + (f" ({fix})" if fix else "")
        super().__init__(message, field=field, **details)
        self.field = field
        self.problem = problem
        self.fix = fix


class CampaignSpecError(InvalidInput):
    """A campaign file or campaign arguments that do not validate."""


class AllocationExceeded(InvalidInput):
    """A project's allocation on a site or station cannot cover a submission; nothing ran.

    Raised before the task is stored or the operation queued. The message says what is left
    and until when, what the submission asks for, and whom to ask for more.

    Args:
        message: The whole message.
        project: The project whose allocation it is.
        kind: ``site`` or ``station``.
        resource: The site's or station's name.
        unit: ``node-hours``, ``core-hours`` or ``instrument-hours``.
        remaining: What is left of the allocation, in ``unit`` (0 when it is not active).
        needs: What the submission asks for at most, in ``unit`` (None when not known).
        field: The input that decided (``allocation``; ``resources.walltime_s`` for a task
            whose use cannot be bounded).
    """

    def __init__(
        self,
        message: str,
        *,
        project: str,
        kind: str,
        resource: str,
        unit: str,
        remaining: float,
        needs: float | None = None,
        field: str = "allocation",
    ) -> None:
        GenesisError.__init__(
            self,
            message,
            field=field,
            project=project,
            kind=kind,
            resource=resource,
            unit=unit,
            remaining=remaining,
            needs=needs,
        )
        self.field = field
        self.problem = message
        self.fix = "ask an operator for more with `genesis allocation grant`"
        self.project = project
        self.kind = kind
        self.resource = resource
        self.unit = unit
        self.remaining = remaining
        self.needs = needs


class NotFound(GenesisError, LookupError):
    """A named object does not exist.

    Args:
        kind: What was looked for (``dataset``, ``dataset version``, ``campaign``, ...).
        name: The name or id that was asked for.
        hint: What the caller can do (e.g. the command that lists what exists).
    """

    def __init__(self, kind: str, name: object, hint: str = "") -> None:
        message = f"{kind} {name!s} does not exist" + (f"; {hint}" if hint else "")
        super().__init__(message, kind=kind, name=str(name))
        self.kind = kind
        self.name = str(name)


class AccessDenied(GenesisError, PermissionError):
    """Governance refused an action on a resource."""


class ConfigError(GenesisError):
    """The settings file or environment cannot be used."""


class CatalogError(GenesisError):
    """The catalog database failed or holds inconsistent records."""


class StorageError(GenesisError):
    """The blob store failed."""


class CorruptBlob(StorageError):
    """A stored blob's bytes no longer match its sha256 digest.

    Args:
        digest: The expected sha256 (the blob's name).
        actual: The digest of the bytes found.
        path: Where the blob lives.
    """

    def __init__(self, digest: str, actual: str, path: str) -> None:
        super().__init__(
            f"blob {digest} is corrupted: its bytes hash to {actual} ({path}); restore it "
            "from a backup or re-add the file it came from",
            digest=digest,
            actual=actual,
            path=path,
        )
        self.digest = digest


class PlannerError(GenesisError):
    """A planner cannot make a proposal."""


class ExecutorError(GenesisError):
    """A compute backend failed to run a task."""


class TaskFailed(ExecutorError):
    """A task ran and failed: the callable raised or the command exited non-zero.

    Args:
        message: The task's error (exception type and message, or exit status).
        traceback: The remote traceback or the tail of the task's log, if known.
    """

    def __init__(self, message: str, traceback: str = "", **details: Any) -> None:
        super().__init__(message, traceback=traceback, **details)
        self.traceback = traceback


class TransientFailure(ExecutorError):
    """The backend lost a task in a way a retry may fix.

    For example a node failure, a preemption, or a worker process killed from outside. Sites
    retry these (never :class:`TaskFailed`) per their retry policy.
    """


class StationError(GenesisError):
    """A lab station failed, is unavailable, or refused an operation."""


class OperationFailed(StationError):
    """A station operation ran and failed (instrument fault, bad sample, ...)."""


class SafetyViolation(InvalidInput):
    """An operation breaks a station's safety limits or interlocks; it was not sent."""


class CampaignError(GenesisError):
    """The closed loop cannot go on (nothing to run, budget misconfigured, ...)."""
