"""The end-of-run table, rendered directly from the role's template: no playbook.

The role renders roles/storyart_session_migration/templates/summary.txt.j2 after each batch
from the hosts' JSON reports. It is plain Jinja, so these tests render it the same way with
the records a run writes, and cover what a run rarely shows: every kind of row, the title of
a failed or dry run, and totals that count a shared endpoint once. The verification's table is
rendered from the module's own results on real redis-server processes.
"""

from __future__ import annotations

import json
import re

import jinja2
import pytest
from helpers import ROOT, call_module, seed_with_overlap, tcp_args

# A plain-text table, as Ansible renders it: no HTML, so nothing to escape.
TEMPLATE = jinja2.Environment(
    autoescape=False,  # noqa: S701
    loader=jinja2.FileSystemLoader(ROOT / "roles" / "storyart_session_migration" / "templates"),
    undefined=jinja2.StrictUndefined,
).get_template("summary.txt.j2")


def table(records, hosts, *, dry_run=False, kind="migrate"):
    return TEMPLATE.render(__records=records, __hosts=hosts, __dry_run=dry_run, __kind=kind)


def migrated(host, endpoint, keys, *, failure=None, handled_by=None):
    """A host's record as the role writes it, after a migration of ``keys`` keys."""
    step = dict(
        counts=dict(found=keys, migrated=keys, skipped=0, expired=0, failed=0),
        index_counts=dict(added=keys),
        verified=failure is None,
    )
    return dict(
        host=host,
        endpoint=endpoint,
        handled_by=handled_by or host,
        status="failed" if failure else "ok",
        failure=failure,
        migrate=step,
    )


def rows(text):
    """The table's rows by host (the total row as 'total,')."""
    return {line.split()[0]: line for line in text.splitlines()[2:]}


def test_every_host_done_one_row_each_and_a_total_counting_each_endpoint_once():
    records = {
        "app1": migrated("app1", "A", 5),
        "app2": migrated("app2", "B", 7),
        "app3": migrated("app3", "B", 7, handled_by="app2"),
    }

    text = table(records, ["app1", "app2", "app3"])

    lines = text.splitlines()
    assert lines[0] == "StoryArt session migration: done"
    assert lines[1].split()[:3] == ["host", "found", "migrated"]
    shown = rows(text)
    assert shown["app3"].endswith("shares app2's endpoint")
    # app3 shares app2's endpoint: the total counts B once, 5 + 7 keys.
    assert shown["total,"].split()[:5] == ["total,", "2", "endpoints", "12", "12"]
    assert all(shown[name].split()[-1] == "yes" for name in ("app1", "app2"))


def test_a_failed_host_puts_failed_in_the_title_and_its_reason_in_its_row():
    records = {
        "app1": migrated("app1", "A", 5),
        "app2": migrated("app2", "B", 0, failure="Cannot connect to Redis at 127.0.0.1:1"),
    }

    text = table(records, ["app1", "app2", "app3"])

    assert text.splitlines()[0] == (
        "StoryArt session migration: FAILED on 1 of 3 hosts, see the notes"
    )
    shown = rows(text)
    assert re.search(r"\sNO  FAILED: Cannot connect to Redis at 127.0.0.1:1$", shown["app2"])
    assert shown["app3"].endswith("not reached")


def test_a_dry_run_is_titled_as_the_plan():
    text = table({"app1": migrated("app1", "A", 3)}, ["app1"], dry_run=True)

    lines = text.splitlines()
    assert (
        lines[0]
        == "StoryArt session migration: DRY RUN (check mode): the plan, nothing was written"
    )
    assert rows(text)["app1"].split()[-1] == "plan"


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        ("cleanup", "StoryArt source clean-up"),
        ("verify", "StoryArt session verification"),
        ("preflight", "StoryArt preflight"),
    ],
)
def test_each_kind_of_run_has_its_own_title_even_when_its_step_never_ran(kind, title):
    record = dict(host="app1", endpoint="A", handled_by="app1", failure="refused")

    text = table({"app1": record}, ["app1"], kind=kind)

    assert text.splitlines()[0] == f"{title}: FAILED on 1 of 1 hosts, see the notes"
    assert rows(text)["app1"].endswith("FAILED: refused")


def test_the_kind_of_run_is_told_by_the_records_when_not_given():
    record = dict(host="app1", endpoint="A", handled_by="app1", failure=None)
    record["cleanup"] = dict(counts=dict(found=2, deleted=2), indexes=[dict(deleted=True)])

    text = TEMPLATE.render(__records={"app1": record}, __hosts=["app1"], __dry_run=False)

    assert text.splitlines()[0] == "StoryArt source clean-up: done"
    assert rows(text)["app1"].split()[-1] == "deleted"


def test_the_preflight_shows_sizes_in_binary_units():
    record = dict(host="app1", endpoint="A", handled_by="app1", failure=None)
    memory = dict(needed_bytes=74366, available_bytes=22735944909)
    record["preflight"] = dict(server_version="7.0.15", strategy="copy", memory=memory)
    small = dict(record, host="app2", endpoint="B", handled_by="app2")
    small["preflight"] = dict(record["preflight"], memory=dict(needed_bytes=0, available_bytes=900))

    text = table({"app1": record, "app2": small}, ["app1", "app2"], kind="preflight")

    lines = text.splitlines()
    assert lines[0] == "StoryArt preflight: done"
    cells = [re.split(r"\s{2,}", line) for line in lines[1:]]
    assert cells[0] == ["host", "redis", "strategy", "copy needs", "free", "note"]
    assert cells[1] == ["app1", "7.0.15", "copy", "72.6 KiB", "21.2 GiB"]
    assert cells[2] == ["app2", "7.0.15", "copy", "0 B", "900 B"]
    # A preflight has no total row: nothing in it adds up across endpoints.
    assert len(lines) == 4


def numbers(records, hosts, *, kind="migrate"):
    """What the template gives the run's stats: the total row by column, each host's status."""
    return json.loads(
        TEMPLATE.render(
            __records=records, __hosts=hosts, __dry_run=False, __kind=kind, __stats=True
        )
    )


def test_the_stats_carry_the_total_row_and_each_hosts_status():
    records = {
        "app1": migrated("app1", "A", 5),
        "app2": migrated("app2", "B", 7),
        "app3": migrated("app3", "B", 7, handled_by="app2"),
        "app4": migrated("app4", "C", 0, failure="Cannot connect to Redis at 127.0.0.1:1"),
    }
    hosts = ["app1", "app2", "app3", "app4", "app5"]

    stats = numbers(records, hosts)

    # The same numbers as the table's total row: endpoint B once.
    total = rows(table(records, hosts))["total,"].split()
    assert stats["totals"] == {
        "endpoints": 3,
        "found": 12,
        "migrated": 12,
        "skipped": 0,
        "expired": 0,
        "failed": 0,
        "index_added": 12,
    }
    assert total[:5] == ["total,", "3", "endpoints", "12", "12"]
    assert stats["hosts"] == {
        "app1": "ok",
        "app2": "ok",
        "app3": "ok",
        "app4": "failed",
        "app5": "not_reached",
    }


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("verify", ["endpoints", "found", "in_target", "missing", "expired", "index_missing"]),
        (
            "cleanup",
            ["endpoints", "found", "deleted", "kept_differs", "kept_no_copy", "expired", "failed"],
        ),
        ("preflight", ["endpoints"]),
    ],
)
def test_the_stats_name_each_total_as_the_tables_column(kind, names):
    record = dict(host="app1", endpoint="A", handled_by="app1", failure=None)

    assert sorted(numbers({"app1": record}, ["app1"], kind=kind)["totals"]) == sorted(names)


def verified_record(host, server):
    """A host's record as the role writes it, after the module's verification of ``server``:
    a verification that finds keys missing fails the host, with its message."""
    result = call_module(tcp_args(server, mode="verify"))
    step = {name: value for name, value in result.items() if name != "invocation"}
    step["failed"] = result["outcome"] != "ok"
    failure = result["msg"] if step["failed"] else None
    return dict(
        host=host, endpoint=result["endpoint"], handled_by=host, failure=failure, verify=step
    )


def test_the_verification_table_shows_what_is_present_and_what_is_missing(redis_factory):
    """The table's "in target" and "missing" columns, and the stats named after them, are the
    module's counts.present and counts.missing, read from its own results."""
    lacking, complete = redis_factory(), redis_factory()
    seed_with_overlap(lacking, 12, 5)
    seed_with_overlap(complete, 4, 4)
    records = {
        "app1": verified_record("app1", lacking),
        "app2": verified_record("app2", complete),
    }
    assert records["app1"]["verify"]["counts"]["missing"] == 7  # as the module returned it

    text = table(records, ["app1", "app2"], kind="verify")

    lines = text.splitlines()
    assert lines[0] == "StoryArt session verification: FAILED on 1 of 2 hosts, see the notes"
    header = re.split(r"\s{2,}", lines[1])
    assert header[:6] == ["host", "found", "in target", "missing", "expired", "index missing"]
    shown = rows(text)
    assert shown["app1"].split()[:8] == ["app1", "12", "5", "7", "0", "7", "NO", "FAILED:"]
    assert "NOT VERIFIED: 7 keys and 7 index entries are not in db 0" in shown["app1"]
    assert shown["app2"].split() == ["app2", "4", "4", "0", "0", "0", "yes"]
    assert shown["total,"].split() == ["total,", "2", "endpoints", "16", "9", "7", "0", "7"]
    stats = numbers(records, ["app1", "app2"], kind="verify")
    assert stats["totals"] == dict(
        endpoints=2, found=16, in_target=9, missing=7, expired=0, index_missing=7
    )
    # The table reads the new names only: without the deprecated ones, as from 2.0.0, it is
    # the same.
    for record in records.values():
        for name in ("migrated", "skipped"):
            del record["verify"]["counts"][name]
    assert table(records, ["app1", "app2"], kind="verify") == text
