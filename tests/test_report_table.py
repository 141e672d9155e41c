"""The end-of-run table and the per-host record, called directly: no Redis, no playbook.

The playbook tests show them in real runs; these cover what a run rarely shows: every kind of
row, the title of a failed or dry run, totals that count a shared endpoint once, and the
record a host's results become.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat

import pytest
from helpers import ROOT


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


callback = load("callback_plugins/storyart_report.py", "storyart_report_callback")
record_filter = load(
    "roles/storyart_session_migration/filter_plugins/storyart_report.py", "storyart_report_filter"
)


def migrated(host, endpoint, migrated_keys, *, failure=None, handled_by=None):
    """A host's record as the role writes it, after a migration of ``migrated_keys``."""
    result = dict(
        counts=dict(found=migrated_keys, migrated=migrated_keys, skipped=0, expired=0, failed=0),
        index_counts=dict(added=migrated_keys),
        verified=failure is None,
        msg="done",
    )
    if failure:
        result.update(failed=True, msg=failure)
    return record_filter.report_record(
        {"migrate": result},
        last_result=None,
        host=host,
        endpoint=endpoint,
        handled_by=handled_by or host,
        dry_run=False,
    )


def rows(lines):
    """The table's rows by host: the cells split on runs of two or more spaces."""
    return {line.split()[0]: line for line in lines[2:]}


def test_a_run_where_every_host_is_done_has_one_row_each_and_a_total_per_endpoint():
    records = {
        "app1": migrated("app1", "A", 5),
        "app2": migrated("app2", "B", 7),
        "app3": migrated("app3", "B", 7, handled_by="app2"),
    }
    hosts = [(name, "ok") for name in ("app1", "app2", "app3")]

    lines = callback.summary_table(records, hosts, dry_run=False)

    assert lines[0] == "StoryArt session migration: done"
    assert lines[1].split()[:3] == ["host", "found", "migrated"]
    table = rows(lines)
    assert table["app3"].endswith("shares app2's endpoint")
    # app3 shares app2's endpoint: the total counts B once, 5 + 7 keys.
    assert table["total,"].split()[:5] == ["total,", "2", "endpoints", "12", "12"]
    assert all(table[name].split()[-1] == "yes" for name in ("app1", "app2"))


def test_a_failed_host_puts_failed_in_the_title_and_its_reason_in_its_row():
    records = {
        "app1": migrated("app1", "A", 5),
        "app2": migrated("app2", "B", 0, failure="Cannot connect to Redis at 127.0.0.1:1"),
    }
    hosts = [("app1", "ok"), ("app2", "ok"), ("app3", "not reached: the rollout stopped")]

    lines = callback.summary_table(records, hosts, dry_run=False)

    assert lines[0] == "StoryArt session migration: FAILED on 1 of 3 hosts, see the notes"
    table = rows(lines)
    assert table["app2"].endswith("FAILED: Cannot connect to Redis at 127.0.0.1:1")
    assert table["app3"].endswith("not reached: the rollout stopped")
    assert re.search(r"\sNO  FAILED: ", table["app2"])  # the verified column, then the note


def test_a_dry_run_is_titled_as_the_plan():
    lines = callback.summary_table({"app1": migrated("app1", "A", 3)}, [("app1", "ok")], True)

    assert (
        lines[0]
        == "StoryArt session migration: DRY RUN (check mode): the plan, nothing was written"
    )
    assert rows(lines)["app1"].split()[-1] == "plan"


def test_the_record_of_a_failed_step_says_failed_and_why():
    record = record_filter.report_record(
        {"migrate": {"failed": True, "msg": "why", "invocation": {"module_args": {}}}},
        last_result=None,
        host="app1",
        endpoint="A",
        handled_by="app1",
        dry_run=True,
    )

    assert (record["status"], record["failure"], record["dry_run"]) == ("failed", "why", True)
    assert "invocation" not in record["migrate"]


def test_reports_are_written_0600_in_folders_made_0700_whatever_the_umask(tmp_path):
    folder = tmp_path / "reports" / "run"
    old = os.umask(0)
    try:
        callback.write_private(str(folder), "app1.json", "{}\n")
    finally:
        os.umask(old)

    for path in (tmp_path / "reports", folder):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    written = folder / "app1.json"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text() == "{}\n"
    assert sorted(p.name for p in folder.iterdir()) == ["app1.json"]  # no scratch file left


@pytest.mark.parametrize("kind", ["cleanup", "verify", "preflight"])
def test_each_kind_of_run_has_its_own_title(kind):
    record = {"host": "app1", "endpoint": "A", "handled_by": "app1", kind: {"msg": "x"}}

    lines = callback.summary_table({"app1": record}, [("app1", "ok")], dry_run=False)

    title = callback.TABLES[kind][0]
    assert lines[0] == f"{title}: done"
