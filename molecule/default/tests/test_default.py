"""The migration on three Redis 7 hosts, each with its own dataset, checked on every host.

Prepare recorded each host's "before" snapshot (db 1 entirely, db 0's pre-existing keys,
both indexes); the data tests compare each host's Redis now with it. The report tests read
what the dry run (check), the migration (converge) and the rerun (idempotence) wrote on the
controller.
"""

from storyart_testinfra import (
    MigratedDataChecks,
    check_migrated_and_verified,
    check_report_files,
    expectation,
    recorded,
    report_runs,
    sessions,
)

testinfra_hosts = ["ansible://storyart"]
HOSTS = ["storyart-default-1", "storyart-default-2", "storyart-default-3"]


class TestMigratedData(MigratedDataChecks):
    """On every host: values, TTLs (PEXPIRETIME), db 1 untouched, db 0's own keys, index."""


def test_each_host_got_a_different_dataset_of_every_type():
    datasets = [frozenset(sessions(recorded(name)["db1"]["entries"])) for name in HOSTS]
    assert len(set(datasets)) == len(HOSTS)
    kinds = {
        entry["type"]
        for name in HOSTS
        for entry in sessions(recorded(name)["db1"]["entries"]).values()
    }
    assert kinds == {"string", "hash", "list", "set", "zset", "stream"}


def records_of(run):
    """The run's record of every host, in host order; every host must have one."""
    assert sorted(run.records) == sorted(HOSTS), run.folder
    return [(name, run.records[name]) for name in HOSTS]


def test_each_run_left_a_record_of_every_host_and_a_summary():
    runs = report_runs()
    # check (the dry run), converge, idempotence: in that order.
    assert [run.dry_run for run in runs] == [True, False, False], [r.folder.name for r in runs]
    for run in runs:
        check_report_files(run, HOSTS)


def test_dry_run_report_is_the_plan_of_the_migration():
    dry_run = report_runs()[0]
    assert "DRY RUN" in dry_run.summary
    for name, record in records_of(dry_run):
        expected = expectation(name)
        assert record["dry_run"] is True
        assert record["status"] == "ok", record["failure"]
        assert record["migrate"]["counts"]["migrated"] == len(expected.migrated)
        assert record["migrate"]["counts"]["skipped"] == len(expected.skipped)
        assert record["migrate"]["index_counts"]["added"] == expected.index_added


def test_migration_report_counts_what_moved_and_verified_it():
    migration = report_runs()[1]
    for name, record in records_of(migration):
        expected = expectation(name)
        assert record["dry_run"] is False
        assert record["status"] == "ok", record["failure"]
        assert record["handled_by"] == name
        migrate = record["migrate"]
        assert migrate["strategy"] == "copy"
        check_migrated_and_verified(migrate, expected)


def test_rerun_report_shows_nothing_left_to_do():
    rerun = report_runs()[2]
    for name, record in records_of(rerun):
        expected = expectation(name)
        assert record["status"] == "ok", record["failure"]
        assert record["migrate"]["changed"] is False
        assert record["migrate"]["counts"]["migrated"] == 0
        assert record["migrate"]["counts"]["skipped"] == len(expected.source_sessions)
        assert record["migrate"]["index_counts"]["added"] == 0
