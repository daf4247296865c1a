"""genesis site and genesis task, in-process: JSON listings, status, bad input as exit 2."""

from __future__ import annotations

import sys

import pytest

from genesis_platform import Platform
from tests.integration.cli import run, run_json


def test_site_add_list_show_check_remove(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "site", "add", "hpc", "--kind", "slurm", "-o", "poll_interval_s=0.5")
    assert code == 0 and "added site hpc (slurm)" in out
    sites = run_json(capsys, "site", "list")
    assert [(s["name"], s["kind"], s["status"]) for s in sites] == [
        ("local", "local", "unknown"),
        ("hpc", "slurm", "unknown"),
    ]
    assert sites[1]["options"] == {"poll_interval_s": 0.5}
    code, out, _ = run(capsys, "site", "show", "hpc")
    assert code == 0 and "poll_interval_s = 0.5" in out and "max_jobs = 100 (default)" in out
    checked = run_json(capsys, "site", "check", "local")
    assert checked["status"] == "up" and checked["capacity"] >= 1 and checked["status_at"]
    code, out, _ = run(capsys, "site", "remove", "hpc")
    assert code == 0
    assert [s["name"] for s in run_json(capsys, "site", "list")] == ["local"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["site", "add", "x", "--kind", "kubernetes"], "kind: unknown site kind"),
        (["site", "add", "x", "--kind", "slurm", "-o", "bogus=1"], "options.bogus"),
        (["site", "add", "x", "--kind", "slurm", "-o", "max_jobs"], "--option"),
        (["site", "add", "x", "--kind", "ray", "-o", "address=http://h"], "options.address"),
        (["site", "show", "nowhere"], "genesis site list"),
        (["site", "remove", "local"], "built-in"),
        (["task", "show", "99"], "genesis task list"),
        (["task", "list", "--state", "sleeping"], "state"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert words in err


def test_task_list_show_logs_usage(capsys: pytest.CaptureFixture[str], platform: Platform) -> None:
    code = "print('hello from a task')"
    platform.tasks.submit(command=[sys.executable, "-c", code], project="p1").result(timeout=60)
    [task] = run_json(capsys, "task", "list")
    assert (task["state"], task["site"], task["project"]) == ("completed", "local", "p1")
    shown = run_json(capsys, "task", "show", str(task["id"]))
    assert shown["spec"]["command"][-1] == code and shown["exit_status"] == 0
    code_, out, _ = run(capsys, "task", "logs", str(task["id"]))
    assert code_ == 0 and "hello from a task" in out
    [usage] = run_json(capsys, "task", "usage", "--project", "p1")
    assert usage["tasks"] == 1 and usage["site"] == "local" and usage["core_seconds"] > 0
    code_, out, _ = run(capsys, "task", "cancel", str(task["id"]))
    assert code_ == 0 and "had ended" in out
