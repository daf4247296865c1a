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
from genesis_platform.governance import Principal, ServiceContext
from genesis_platform.governance.service import AuditService
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
        sites: Compute sites.
        tasks: Tasks on compute sites, and their records.
        lineage: Provenance queries.
        settings: Where everything lives.
        principal: Who acts through this facade.
    """

    def __init__(self, settings: Settings, principal: Principal | None = None) -> None:
        self.settings = settings
        self.principal = principal or Principal.local(settings.user)
        self._db = Database(settings.catalog_url)
        self._ctx = ServiceContext(
            db=self._db,
            blobs=BlobStore(settings.objects_url),
            principal=self.principal,
            home=settings.home,
        )
        self.datasets = DatasetService(self._ctx)
        self.models = ModelService(self._ctx)
        self.sites = SiteService(self._ctx)
        self.tasks = TaskService(self._ctx, self.sites, self.datasets)
        self.stations = StationService(self._ctx)
        self.campaigns = CampaignService(
            self._ctx, self.datasets, self.models, self.tasks, self.stations
        )
        self.lineage = LineageService(self._ctx)
        self.audit = AuditService(self._ctx)

    @classmethod
    def open(
        cls, home: str | Path | None = None, *, principal: Principal | None = None
    ) -> Platform:
        """Open the platform in ``home`` (default ``$GENESIS_HOME`` or ``~/.genesis``).

        The home, catalog and object store are created and migrated on first use.
        """
        return cls(Settings.load(home), principal)

    def close(self) -> None:
        """Stop following tasks, shut the sites' executors down, release the catalog.

        Tasks still running on sites that can be re-attached (Slurm, ...) keep running;
        :meth:`TaskService.recover` in a later process collects them.
        """
        self.stations.close()
        self.tasks.close()
        self.sites.close()
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
