"""Governance: who may do what. Today: the local principal, an allow-all policy, an audit log.

The seams are final: every facade call carries a :class:`Principal` and passes through
:func:`authorize`; every mutation goes through :meth:`ServiceContext.mutation`, which appends
an audit record in the same transaction. Organizations, agreements and Cedar policies plug in
behind these without touching the services.
"""

from genesis_platform.governance.audit import AuditLog
from genesis_platform.governance.authorize import Action, AllowAll, Policy, Resource, authorize
from genesis_platform.governance.context import ServiceContext
from genesis_platform.governance.principal import Principal

__all__ = [
    "Action",
    "AllowAll",
    "AuditLog",
    "Policy",
    "Principal",
    "Resource",
    "ServiceContext",
    "authorize",
]
