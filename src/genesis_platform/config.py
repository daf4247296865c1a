"""Settings: where the home, the catalog and the object store are.

Settings come, in increasing precedence, from defaults, ``$GENESIS_HOME/genesis.toml``
and the environment (``GENESIS_HOME``, ``GENESIS_CATALOG_URL``, ``GENESIS_OBJECTS_URL``,
``GENESIS_USER``, ``GENESIS_ORG``, ``GENESIS_GOVERNANCE``). The home directory is created on
first use.

``genesis.toml``::

    catalog_url = "postgresql+psycopg://genesis@localhost/genesis"   # default: SQLite in the home
    objects_url = "/data/genesis-objects"                           # default: <home>/objects
    user = "ada"                                                    # default: the OS user
    org = "argonne"                                                 # default: local
    governance = "on"                                               # or "off": allow all
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genesis_platform.errors import ConfigError

__all__ = ["Settings", "default_home"]

_KEYS = ("catalog_url", "objects_url", "user", "org", "governance")


def default_home() -> Path:
    """``$GENESIS_HOME``, else ``~/.genesis``."""
    return Path(os.environ.get("GENESIS_HOME") or Path.home() / ".genesis").expanduser()


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one platform.

    Attributes:
        home: The home directory (created on load).
        catalog_url: SQLAlchemy URL of the catalog database.
        objects_url: fsspec URL or path of the blob store.
        user: Name of the local principal.
        org: The organization that runs this platform (the operator); the local principal
            is one of its owners.
        governance: Whether policies decide and reads are audited (``on``, the default), or
            every action is allowed (``off``: a single-user platform, and benchmarks).
    """

    home: Path
    catalog_url: str
    objects_url: str
    user: str
    org: str = "local"
    governance: bool = True

    @classmethod
    def load(cls, home: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings file and environment; create the home if needed.

        Args:
            home: Home directory; default ``$GENESIS_HOME`` or ``~/.genesis``.
            env: Environment to read (default ``os.environ``).

        Raises:
            ConfigError: the home cannot be created or ``genesis.toml`` is malformed.
        """
        env = os.environ if env is None else env
        root = Path(home or env.get("GENESIS_HOME") or Path.home() / ".genesis").expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the Genesis home {root}: {exc}; set GENESIS_HOME to a "
                "writable directory"
            ) from exc
        values = _read_file(root / "genesis.toml")
        for key in _KEYS:
            if env_value := env.get(f"GENESIS_{key.upper()}"):
                values[key] = env_value
        return cls(
            home=root,
            catalog_url=values.get("catalog_url") or f"sqlite:///{root / 'catalog.sqlite'}",
            objects_url=values.get("objects_url") or str(root / "objects"),
            user=values.get("user") or _os_user(),
            org=values.get("org") or "local",
            governance=_on_off(values.get("governance", "on")),
        )


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise ConfigError(f"setting 'governance' must be 'on' or 'off', not {value!r}")
    return value == "on"


def _read_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix or remove the file") from exc
    unknown = set(data) - set(_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {sorted(unknown)[0]!r}; known settings: {', '.join(_KEYS)}"
        )
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(f"{path}: setting {bad[0]!r} must be a string")
    return dict(data)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
