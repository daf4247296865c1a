from pathlib import Path

import pytest

from genesis_platform.config import Settings
from genesis_platform.errors import ConfigError


def test_defaults_live_in_the_home_which_is_created(tmp_path: Path) -> None:
    home = tmp_path / "h"
    settings = Settings.load(env={"GENESIS_HOME": str(home)})
    assert home.is_dir()
    assert settings.catalog_url == f"sqlite:///{home / 'catalog.sqlite'}"
    assert settings.objects_url == str(home / "objects")


def test_environment_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "genesis.toml").write_text('objects_url = "/from/file"\nuser = "ada"\n')
    env = {"GENESIS_HOME": str(tmp_path), "GENESIS_OBJECTS_URL": "memory://env"}
    settings = Settings.load(env=env)
    assert settings.objects_url == "memory://env"
    assert settings.user == "ada"


def test_unknown_setting_is_named(tmp_path: Path) -> None:
    (tmp_path / "genesis.toml").write_text('catalog = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'catalog'"):
        Settings.load(tmp_path, env={})


def test_malformed_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "genesis.toml").write_text("user = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(tmp_path, env={})


def test_governance_is_on_unless_switched_off(tmp_path: Path) -> None:
    assert Settings.load(tmp_path, env={}).governance is True
    assert Settings.load(tmp_path, env={"GENESIS_GOVERNANCE": "off"}).governance is False
    with pytest.raises(ConfigError, match="'governance' must be 'on' or 'off', not 'maybe'"):
        Settings.load(tmp_path, env={"GENESIS_GOVERNANCE": "maybe"})


def test_the_operator_org_is_configurable(tmp_path: Path) -> None:
    from genesis_platform import Platform

    (tmp_path / "genesis.toml").write_text('user = "ada"\norg = "argonne"\n')
    with Platform.open(tmp_path) as p:
        assert str(p.principal) == "ada@argonne"
        assert [(m.user, m.role) for m in p.orgs.get("argonne").members] == [("ada", "owner")]
