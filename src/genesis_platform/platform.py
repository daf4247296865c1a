"""The facade: one object that opens the catalog and store and composes the services."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from genesis_platform.campaigns.service import CampaignService
from genesis_platform.catalog.database import Database
from genesis_platform.compute.service import SiteService
from genesis_platform.compute.tasks import TaskService
from genesis_platform.config import Settings
from genesis_platform.data.service import DatasetService
from genesis_platform.errors import NotFound
from genesis_platform.governance import Principal, ServiceContext
from genesis_platform.governance._read_audit import ReadAuditor
from genesis_platform.governance.agreements import AgreementService
from genesis_platform.governance.allocations import AllocationService
from genesis_platform.governance.assets import AssetService
from genesis_platform.governance.cedar import CedarPolicy, load_policies
from genesis_platform.governance.identity import OrgService, ProjectService, ensure_operator
from genesis_platform.governance.ledger import LedgerService
from genesis_platform.governance.registries import ChallengeService, Finder, PartnerService
from genesis_platform.governance.service import AuditService
from genesis_platform.governance.state import GovernanceState
from genesis_platform.governance.tokens import TokenService, authenticate
from genesis_platform.labs.service import StationService
from genesis_platform.modelhub.service import ModelService
from genesis_platform.provenance.service import LineageService
from genesis_platform.storage.blobs import BlobStore

__all__ = ["Platform"]


class Platform:
    """An embedded Genesis platform: SQLite (or PostgreSQL) catalog, local (or S3) objects.

    Use :meth:`open`; close it (or use it as a context manager) when done.

    Attributes:
        datasets: Versioned datasets.
        models: Versioned models.
        campaigns: Closed-loop campaigns.
        stations: Lab stations.
        audit: The audit log (list, verify).
        orgs: Organizations and their members (roles, vetting).
        projects: Projects, with members from several organizations.
        tokens: API tokens.
        assets: Governance attributes of assets (access, classification, review).
        agreements: Agreements between organizations (data use, model sharing, ...).
        ledger: The IP ledger: who owns each campaign output, and its commercialization.
        challenges: National science and technology challenges and their linked work.
        partners: Partner organizations, their MOUs and what they contribute.
        sites: Compute sites.
        tasks: Tasks on compute sites, and their records.
        allocations: What each project may use of each site and station, and used.
        lineage: Provenance queries.
        settings: Where everything lives.
        principal: Who acts through this facade.
    """

    def __init__(
        self, settings: Settings, principal: Principal | None = None, token: str | None = None
    ) -> None:
        self.settings = settings
        self._db = Database(settings.catalog_url)
        if principal is None and token:
            principal = authenticate(self._db, token)
        self.principal = principal or Principal(settings.user, settings.org)
        self._ctx = ServiceContext(
            db=self._db,
            blobs=BlobStore(settings.objects_url),
            principal=self.principal,
            home=settings.home,
        )
        if settings.governance:
            self._govern(settings)
        self.datasets = DatasetService(self._ctx)
        self.models = ModelService(self._ctx)
        self.sites = SiteService(self._ctx)
        self.allocations = AllocationService(self._ctx, self._resource_exists)
        self.tasks = TaskService(self._ctx, self.sites, self.datasets, self.allocations)
        self.stations = StationService(self._ctx, self.allocations)
        self.campaigns = CampaignService(
            self._ctx, self.datasets, self.models, self.tasks, self.stations
        )
        self.lineage = LineageService(self._ctx)
        self.audit = AuditService(self._ctx)
        self.orgs = OrgService(self._ctx)
        self.projects = ProjectService(self._ctx)
        self.tokens = TokenService(self._ctx)
        self.assets = AssetService(self._ctx)
        self.agreements = AgreementService(self._ctx)
        self.ledger = LedgerService(self._ctx)
        finders: dict[str, Finder] = {
            "dataset": self.datasets.get,
            "model": self.models.get,
            "campaign": self.campaigns.get,
            "site": self.sites.get,
            "station": self.stations.get,
        }
        self.challenges = ChallengeService(self._ctx, finders)
        self.partners = PartnerService(self._ctx, finders)

    def _resource_exists(self, kind: str, name: str) -> bool:
        """Whether site or station ``name`` exists (built in or registered)."""
        try:
            if kind == "site":
                self.sites.get(name)
            else:
                self.stations.get(name)
        except NotFound:
            return False
        return True

    def _govern(self, settings: Settings) -> None:
        """Decide by Cedar over the governance state, and audit allowed reads."""
        ensure_operator(self._db, settings.org, settings.user)
        state = GovernanceState(self._db)
        self._ctx.governance = state
        self._ctx.policy = CedarPolicy(state, load_policies(settings.home), settings.org)
        self._ctx.read_audit = ReadAuditor(self._db, self._ctx.audit, self.principal)

    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        *,
        principal: Principal | None = None,
        token: str | None = None,
    ) -> Platform:
        """Open the platform in ``home`` (default ``$GENESIS_HOME`` or ``~/.genesis``).

        The home, catalog and object store are created and migrated on first use. Calls act
        as ``principal``, or as the member an API ``token`` stands for (with its scopes), or
        as the configured local user, an owner of the operator organization.

        Raises:
            AccessDenied: the token is unknown, expired or revoked.
        """
        return cls(Settings.load(home), principal, token)

    def close(self) -> None:
        """Stop following tasks, shut the sites' executors down, release the catalog.

        Tasks still running on sites that can be re-attached (Slurm, ...) keep running;
        :meth:`TaskService.recover` in a later process collects them.
        """
        self.stations.close()
        self.tasks.close()
        self.sites.close()
        if self._ctx.read_audit is not None:
            self._ctx.read_audit.close()
        self._db.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Platform(home={str(self.settings.home)!r}, principal={str(self.principal)!r})"
