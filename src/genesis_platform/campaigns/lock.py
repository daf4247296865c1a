"""One process at a time runs a given campaign: an advisory file lock.

The lock files live beside a SQLite catalog (so every home that shares the catalog file
shares them) or in the home for other catalogs. A catalog shared between hosts (PostgreSQL)
needs a lock in the catalog itself; that comes with the server.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from genesis_platform.errors import CampaignError

__all__ = ["CampaignLock"]


class CampaignLock:
    """Held while a process runs a campaign; released by the OS if the process dies.

    Args:
        folder: Where lock files live.
        campaign_id: Which campaign.
    """

    def __init__(self, folder: Path, campaign_id: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / f"campaign-{campaign_id}.lock"
        self._id = campaign_id
        self._fd: int | None = None

    @staticmethod
    def held(folder: Path, campaign_id: int) -> bool:
        """Whether some process (this one included) holds the campaign's lock now."""
        path = folder / f"campaign-{campaign_id}.lock"
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def __enter__(self) -> CampaignLock:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _lock_within(fd, seconds=2.0):  # a status probe holds it for microseconds
            os.close(fd)
            raise CampaignError(
                f"campaign {self._id} is being run by another process; wait for it or stop it "
                "before resuming",
                campaign=self._id,
            )
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _lock_within(fd: int, seconds: float) -> bool:
    """Try to take the exclusive lock for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
