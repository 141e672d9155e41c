"""The migration on Redis 6.0, without COPY, run from the controller.

The container has no python3-redis, so the module can only have run on the controller, over
the port published on 127.0.0.1; and without COPY it must have used DUMP + RESTORE ABSTTL.
"""

from storyart_testinfra import (
    MigratedDataChecks,
    check_report_files,
    expectation,
    pttl_pairs,
    report_runs,
)

testinfra_hosts = ["ansible://storyart"]
HOST = "storyart-legacy"
# Redis 6 has no PEXPIRETIME, so expiries are compared as PTTL, read for both dbs in one
# script run. The copy is restored at the source's absolute expiry, so both PTTLs are equal,
# but two reads a moment apart may straddle a millisecond.
TTL_TOLERANCE_MS = 1


class TestMigratedData(MigratedDataChecks):
    """Values, db 1 untouched, db 0's own keys, index; TTLs within TTL_TOLERANCE_MS."""

    def check_expiry(self, state):
        migrated = state.expected.migrated
        for key, (source, target) in pttl_pairs(state.host, migrated).items():
            if migrated[key]["persistent"]:
                assert (source, target) == (-1, -1), key
            else:
                assert source > 0, key
                assert abs(target - source) <= TTL_TOLERANCE_MS, (key, source, target)


def test_redis_is_6_0_without_copy(host):
    assert "redis_version:6.0." in host.run("redis-cli INFO server").stdout
    reply = host.run("redis-cli COPY storyart:probe storyart:probe2").stdout
    assert "unknown command" in reply


def test_host_cannot_run_the_module(host):
    """No redis-py in the container: the module ran on the controller."""
    assert host.run("python3 -c 'import redis'").rc != 0


def test_reports_show_dump_restore_from_the_controller():
    runs = report_runs()
    assert [run.dry_run for run in runs] == [True, False, False], [r.folder.name for r in runs]
    for run in runs:
        check_report_files(run, [HOST])
    migration, rerun = runs[1].records[HOST], runs[2].records[HOST]
    expected = expectation(HOST)
    assert migration["status"] == "ok", migration["failure"]
    # The endpoint is named from where the module ran: the controller, through the port.
    assert migration["endpoint"] == "controller 127.0.0.1:16479 db 1 -> db 0"
    assert migration["migrate"]["endpoint"] == "127.0.0.1:16479"
    assert migration["migrate"]["server_version"].startswith("6.0.")
    assert migration["migrate"]["strategy"] == "dump-restore"
    assert migration["migrate"]["counts"]["migrated"] == len(expected.migrated)
    assert migration["migrate"]["counts"]["skipped"] == len(expected.skipped)
    assert migration["migrate"]["verified"] is True
    assert rerun["migrate"]["counts"]["migrated"] == 0
    assert rerun["migrate"]["strategy"] == "dump-restore"
