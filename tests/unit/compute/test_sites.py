"""Sites: validated {kind, options} configs, the site service and its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesis_platform import Platform
from genesis_platform.catalog.tables import AuditRecord
from genesis_platform.compute.sites import KINDS, SiteConfig, plugin_kinds
from genesis_platform.errors import InvalidInput, NotFound


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("local", {"max_workers": 3}),
        ("ray", {"address": "ray://head.example.org:10001", "max_workers": 8}),
        ("ray", {"address": "auto"}),
        ("slurm", {"poll_interval_s": 0.5, "queue": "debug", "max_jobs": 10, "retries": 0}),
        ("pbs", {"account": "abc123", "work_dir": "/scratch/genesis"}),
        ("lsf", {}),
        ("flux", {"retry_backoff_s": 0}),
    ],
)
def test_configs_round_trip(kind: str, options: dict[str, object]) -> None:
    config = SiteConfig.create("site-1", kind, options)
    assert config.options == options
    assert SiteConfig.from_dict(config.to_dict()) == config


def test_cli_strings_are_converted() -> None:
    config = SiteConfig.create("hpc", "slurm", {"poll_interval_s": "0.25", "max_jobs": "7"})
    assert config.options == {"poll_interval_s": 0.25, "max_jobs": 7}


@pytest.mark.parametrize(
    ("name", "kind", "options", "field", "words"),
    [
        ("hpc", "kubernetes", {}, "kind", "unknown site kind"),
        ("Bad Name", "local", {}, "name", "not a site name"),
        ("hpc", "local", {"address": "auto"}, "options.address", "no option 'address'"),
        ("hpc", "slurm", {"max_workers": 2}, "options.max_workers", "no option"),
        ("hpc", "slurm", {"poll_interval_s": 0}, "options.poll_interval_s", "greater than 0"),
        ("hpc", "slurm", {"max_jobs": "many"}, "options.max_jobs", "valid integer"),
        ("hpc", "ray", {"address": "http://x"}, "options.address", "ray://HOST:PORT"),
        ("hpc", "local", {"max_workers": 0}, "options.max_workers", "greater than or equal"),
        ("hpc", "local", {"retries": -1}, "options.retries", "greater than or equal"),
    ],
)
def test_bad_configs_name_the_field(
    name: str, kind: str, options: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        SiteConfig.create(name, kind, options)
    assert info.value.field == field
    assert words in str(info.value)


def test_every_kind_has_options() -> None:
    for kind in KINDS:
        assert SiteConfig.create("x", kind).settings().retries == 2


def test_local_always_exists(platform: Platform) -> None:
    [local] = platform.sites.list()
    assert (local.name, local.kind, local.builtin, local.status) == (
        "local",
        "local",
        True,
        "unknown",
    )
    assert platform.sites.get("local").builtin
    with pytest.raises(InvalidInput):
        platform.sites.remove("local")
    with pytest.raises(InvalidInput):
        platform.sites.add("local", "ray")


def test_add_show_list_remove(platform: Platform) -> None:
    platform.sites.add("hpc", "slurm", {"poll_interval_s": "0.5"})
    platform.sites.add("cluster", "ray", {"address": "auto"})
    assert [s.name for s in platform.sites.list()] == ["local", "cluster", "hpc"]
    hpc = platform.sites.get("hpc")
    assert (hpc.kind, dict(hpc.options), hpc.status) == (
        "slurm",
        {"poll_interval_s": 0.5},
        "unknown",
    )
    with pytest.raises(InvalidInput, match="exists"):
        platform.sites.add("hpc", "pbs")
    assert platform.sites.get("hpc").kind == "slurm"  # the failed add changed nothing
    platform.sites.remove("hpc")
    with pytest.raises(NotFound):
        platform.sites.get("hpc")
    with pytest.raises(NotFound):
        platform.sites.remove("hpc")


def test_site_changes_are_audited(platform: Platform) -> None:
    platform.sites.add("hpc", "slurm")
    platform.sites.remove("hpc")
    with platform._db.session(write=False) as s:
        actions = [(r.action, r.resource_id) for r in s.query(AuditRecord).all()]
    assert ("administer", "hpc") in actions and actions.count(("administer", "hpc")) == 2


def test_check_records_status_time_and_capacity(platform: Platform) -> None:
    info = platform.sites.check("local")
    assert info.status == "up"
    assert info.status_at is not None
    assert info.capacity is not None and info.capacity >= 1
    assert "check task ran on" in info.status_reason
    assert platform.sites.get("local").status == "up"  # stored


def test_a_site_that_does_not_answer_in_time_is_down(platform: Platform) -> None:
    platform.sites.add("slow", "local", {"check_timeout_s": 0.001})
    info = platform.sites.check("slow")
    assert info.status == "down"
    assert "no answer within the check timeout of 0.001 s" in info.status_reason
    assert platform.sites.get("slow").status == "down"


def test_a_site_whose_check_task_fails_is_down(platform: Platform) -> None:
    platform.sites.add("broken", "local", {"max_workers": 1})
    platform.sites.executor("broken").shutdown()  # a shut-down executor refuses the check task
    info = platform.sites.check("broken")
    assert info.status == "down"
    assert "ExecutorError" in info.status_reason


PLUGIN = """
from genesis_platform.compute.local import LocalExecutor
from genesis_platform.errors import InvalidInput


def make(name, options, home):
    if set(options) - {"workers"}:
        raise InvalidInput(f"options.{sorted(set(options) - {'workers'})[0]}", "unknown option")
    return LocalExecutor(max_workers=int(options.get("workers", 1)))


def not_an_executor(name, options, home):
    return object()
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package (a dist-info on sys.path) that adds two site kinds."""
    (tmp_path / "genesis_test_sites.py").write_text(PLUGIN)
    info = tmp_path / "genesis_test_sites-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: genesis-test-sites\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[genesis_platform.executors]\n"
        "pool = genesis_test_sites:make\n"
        "broken = genesis_test_sites:not_an_executor\n"
        "local = genesis_test_sites:make\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_plugin_adds_a_site_kind(platform: Platform, plugin: None) -> None:
    assert set(plugin_kinds()) == {"pool", "broken"}  # "local" cannot be replaced
    platform.sites.add("mine", "pool", {"workers": "2", "retries": "0"})
    assert platform.sites.get("mine").options == {"workers": "2", "retries": 0}
    assert platform.tasks.submit("mine", command=["true"]).result(timeout=60) == 0
    assert platform.sites.executor("mine").capacity() == 2


def test_a_plugins_errors_name_the_field(platform: Platform, plugin: None) -> None:
    with pytest.raises(InvalidInput) as info:
        SiteConfig.create("x", "nope")
    assert info.value.field == "kind" and "pool" in str(info.value)
    platform.sites.add("bad-option", "pool", {"colour": "red"})
    with pytest.raises(InvalidInput) as info:
        platform.sites.executor("bad-option")
    assert info.value.field == "options.colour"
    platform.sites.add("broken", "broken")
    with pytest.raises(InvalidInput, match="not an Executor"):
        platform.sites.executor("broken")
