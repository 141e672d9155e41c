"""The playbooks as a workflow runs them: through ansible-runner, what AWX and Automation
Platform run a job with. A workflow gates its next step on the job's stats, and keeps only
what is in the job's artifacts; both are read back here from the artifacts directory, as
AWX reads them (the playbook_on_stats event's artifact_data)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import ansible_runner
import pytest
import yaml
from helpers import BIN, MIGRATE, ROOT, ansible_env, free_port, seed_sessions

pytestmark = pytest.mark.ansible

STATS_KEY = "storyart_session_migration"


def run_job(tmp_path, monkeypatch, *, extravars=None, env=None):
    """migrate_sessions.yml as a job: the project is this repository, the inventory is what the
    job's inventory/ folder holds. Returns (the runner, the job's artifacts directory)."""
    # The runner starts ansible-playbook with this process's environment, plus envvars: none
    # of the caller's ANSIBLE_* settings, this Python's Ansible first on PATH.
    for key in [key for key in os.environ if key.startswith("ANSIBLE_")]:
        monkeypatch.delenv(key)
    job = tmp_path / "job"
    runner = ansible_runner.run(
        private_data_dir=str(job),
        project_dir=str(ROOT),
        playbook=str(MIGRATE.relative_to(ROOT)),
        extravars=extravars or {},
        envvars={**ansible_env(tmp_path), **(env or {})},
        ident="migrate",
        quiet=True,
    )
    return runner, job / "artifacts" / "migrate"


def published_stats(artifacts):
    """The stats the playbook published, from the playbook_on_stats event in the artifacts."""
    events = [json.loads(path.read_text()) for path in (artifacts / "job_events").glob("*.json")]
    (stats,) = [event for event in events if event.get("event") == "playbook_on_stats"]
    return stats["event_data"]["artifact_data"]


def stdout_of(artifacts):
    return (artifacts / "stdout").read_text()


def test_a_job_publishes_its_totals_and_keeps_its_report_in_its_artifacts(
    tmp_path, redis_server, monkeypatch
):
    sessions = seed_sessions(redis_server.client(1), 5)
    # The local inventory as a job gets it: copied into the job's folder named "inventory",
    # with its group_vars, as AWX syncs an inventory from the project.
    shutil.copytree(ROOT / "inventories" / "local", tmp_path / "job" / "inventory")

    runner, artifacts = run_job(
        tmp_path,
        monkeypatch,
        env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_server.port)},
    )

    assert runner.status == "successful", stdout_of(artifacts)
    assert sorted(redis_server.client(0).keys("storyart:session:*")) == sorted(sessions)
    stats = published_stats(artifacts)[STATS_KEY]
    folder = Path(stats.pop("report_folder"))
    assert stats == {
        "kind": "migrate",
        "dry_run": False,
        # From the inventory's variable: the job's inventory folder is named "inventory".
        "environment": "local",
        "status": "ok",
        "totals": {
            "endpoints": 1,
            "found": 5,
            "migrated": 5,
            "skipped": 0,
            "expired": 0,
            "failed": 0,
            "index_added": 5,
        },
        "hosts": {"localhost": "ok"},
    }
    # The report is with the job's artifacts, named by the environment and the kind of run.
    assert folder.parent == artifacts / "storyart-reports"
    assert re.fullmatch(r"local-migrate-\d{8}T\d{6}Z", folder.name), folder
    record = json.loads((folder / "report.json").read_text())["localhost"]
    assert record["status"] == "ok"
    assert record["migrate"]["counts"]["migrated"] == 5
    assert (folder / "summary.txt").read_text().startswith("StoryArt session migration: done")
    # Nothing in the runner's working directory, this repository.
    assert not (ROOT / "storyart-reports" / folder.name).exists()


def test_serial_batches_add_up_in_the_stats_and_a_failed_host_fails_the_status(
    tmp_path, redis_server, monkeypatch
):
    seed_sessions(redis_server.client(1), 4)
    inventory = tmp_path / "job" / "inventory"
    inventory.mkdir(parents=True)
    hosts = {
        "app1": {"storyart_session_migration_login_port": redis_server.port},
        # Nothing listens there: its migration fails, after app1's batch.
        "app2": {"storyart_session_migration_login_port": free_port()},
    }
    for settings in hosts.values():
        settings.update(ansible_connection="local", ansible_python_interpreter=str(BIN / "python"))
    group = {"hosts": hosts, "vars": {"storyart_session_migration_environment": "staging"}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"storyart": group}))

    runner, artifacts = run_job(
        tmp_path,
        monkeypatch,
        extravars={
            "storyart_rollout_serial": 1,
            "storyart_session_migration_report_dir": str(tmp_path / "reports"),
        },
    )

    assert runner.status == "failed", stdout_of(artifacts)
    stats = published_stats(artifacts)[STATS_KEY]
    # Each batch published the run so far; the last holds both.
    assert stats["status"] == "failed"
    assert stats["hosts"] == {"app1": "ok", "app2": "failed"}
    assert stats["totals"]["endpoints"] == 1
    assert stats["totals"]["migrated"] == 4
    # An explicit report_dir wins over the artifacts directory.
    folder = Path(stats["report_folder"])
    assert folder.parent == tmp_path / "reports"
    assert re.fullmatch(r"staging-migrate-\d{8}T\d{6}Z", folder.name), folder
    records = json.loads((folder / "report.json").read_text())
    assert records["app2"]["status"] == "failed"
    assert records["app2"]["failure"] in stdout_of(artifacts)
