"""The clean-up after a migration: only source keys whose copy has the same content went.

The side effect recorded, per host, Redis just before the clean-up ("before-cleanup":
after the migration and after one session's copy in db 0 was changed on the first host), and
which session it changed ("altered"). The module deletes a source key only when its copy has
the same type and content, so the expected deletions are read from the snapshots' values.
"""

import json

import pytest
from storyart_testinfra import (
    INDEX,
    ephemeral_dir,
    host_name,
    recorded,
    report_runs,
    sessions,
    snapshot,
)

testinfra_hosts = ["ansible://storyart"]
HOSTS = ["storyart-cleanup-1", "storyart-cleanup-2"]
ALTERED_HOST = HOSTS[0]


def altered_key():
    path = ephemeral_dir() / "snapshots" / ALTERED_HOST / "altered.json"
    return json.loads(path.read_text())["key"]


def identical_copies(before):
    """Source sessions whose db 0 copy had the same type and value just before the clean-up
    (the snapshot reads each type's value with its own commands, set members sorted)."""
    db0, db1 = before["db0"]["entries"], before["db1"]["entries"]
    return {
        key
        for key, entry in sessions(db1).items()
        if key in db0 and (db0[key]["type"], db0[key]["value"]) == (entry["type"], entry["value"])
    }


def differing_copies(before):
    db0, db1 = before["db0"]["entries"], before["db1"]["entries"]
    return {key for key in sessions(db1) if key in db0} - identical_copies(before)


@pytest.fixture(scope="module")
def cleaned(host):
    name = host_name(host)
    return (
        name,
        recorded(name, "before-cleanup"),
        snapshot(host, 0)["entries"],
        snapshot(host, 1)["entries"],
    )


def cleanup_record(name):
    runs = [run for run in report_runs() if "cleanup" in next(iter(run.records.values()))]
    assert len(runs) == 1, [run.folder.name for run in runs]
    return runs[0].records[name]


def test_only_identical_copies_were_deleted_from_db1(cleaned):
    _, before, _, db1 = cleaned
    deleted = identical_copies(before)
    # Every string session the migration copied and nobody changed since is identical.
    assert deleted
    assert set(db1) == set(before["db1"]["entries"]) - deleted - {INDEX}
    for key in db1:
        assert db1[key] == before["db1"]["entries"][key], f"{key} was kept but changed"


def test_sessions_whose_copy_differs_are_kept(cleaned):
    name, before, _, db1 = cleaned
    kept = differing_copies(before)
    # db 0's own newer sessions, and on the first host the session changed after the copy.
    assert kept
    assert kept <= set(db1)
    if name == ALTERED_HOST:
        assert altered_key() in kept
        assert altered_key() in db1


def test_keys_outside_the_pattern_stay(cleaned):
    _, before, _, db1 = cleaned
    outside = set(before["db1"]["entries"]) - set(sessions(before["db1"]["entries"])) - {INDEX}
    assert outside
    assert outside <= set(db1)


def test_fully_merged_index_was_deleted_from_db1(cleaned):
    _, before, db0, db1 = cleaned
    source = before["db1"]["entries"][INDEX]["value"][::2]
    assert set(source) <= set(db0[INDEX]["value"][::2])
    assert INDEX not in db1


def test_db0_was_not_touched_by_the_cleanup(cleaned):
    _, before, db0, _ = cleaned
    assert db0 == before["db0"]["entries"]


def test_cleanup_report_counts_and_names_the_kept_sessions(cleaned):
    name, before, _, _ = cleaned
    record = cleanup_record(name)
    assert record["status"] == "ok", record["failure"]
    assert record["dry_run"] is False
    cleanup = record["cleanup"]
    assert cleanup["counts"]["found"] == len(sessions(before["db1"]["entries"]))
    assert cleanup["counts"]["deleted"] == len(identical_copies(before))
    assert cleanup["counts"]["kept_different"] == len(differing_copies(before))
    assert cleanup["counts"]["kept_missing"] == 0
    assert cleanup["counts"]["failed"] == 0
    if name == ALTERED_HOST:
        assert altered_key() in cleanup["samples"]["kept_different"]


def test_cleanup_summary_lists_every_host():
    runs = [run for run in report_runs() if "cleanup" in next(iter(run.records.values()))]
    assert "StoryArt source clean-up" in runs[0].summary
    for name in HOSTS:
        assert name in runs[0].summary
