"""The migration through Sentinel, after a failover between the dry run and the real run.

Prepare seeded redis-1, the primary then, through the StoryArt host, and recorded its "before"
snapshot there (as the StoryArt host's). The side effect had Sentinel promote redis-2 and make
redis-1 its replica. The data tests run on the node Sentinel names as the primary now and on
the old primary, against that snapshot. The report tests read what the dry run (check), the
migration (converge) and the rerun (idempotence) wrote on the controller.
"""

import os

import pytest
import testinfra
from storyart_testinfra import (
    Expectation,
    HostState,
    MigratedDataChecks,
    check_migrated_and_verified,
    check_report_files,
    expectation,
    redis_cli,
    report_runs,
    snapshot,
)

testinfra_hosts = ["ansible://storyart"]
APP = "storyart-ha-app"
FIRST_PRIMARY, NEW_PRIMARY = "storyart-ha-redis-1", "storyart-ha-redis-2"
SENTINELS = ["storyart-ha-sentinel-1", "storyart-ha-sentinel-2", "storyart-ha-sentinel-3"]
SERVICE = "storyart"
SENTINEL_HOSTS = ",".join(f"{sentinel}:26379" for sentinel in SENTINELS)
PORT = "6379"


def node(name):
    """Another container of the scenario, through the same inventory."""
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


def primary_by_sentinel(sentinel: str) -> list:
    """[host, port] of the primary, as this Sentinel names it now."""
    return redis_cli(node(sentinel), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE).split()


def replication(name: str) -> dict:
    """INFO replication of a node, as {field: value}."""
    info = redis_cli(node(name), "INFO", "replication")
    return dict(line.split(":", 1) for line in info.splitlines() if ":" in line)


def comparable(entries: dict) -> dict:
    """Entries without the DUMP digest of sets: a node that built a set from replication, or
    reloaded it in a full resync, may dump its members in another order (the snapshot still has
    them, sorted)."""
    return {
        key: {k: v for k, v in entry.items() if not (entry["type"] == "set" and k == "dump_sha1")}
        for key, entry in entries.items()
    }


@pytest.fixture(scope="module")
def primary_now():
    """The node every Sentinel names as the primary now; they must agree."""
    named = {sentinel: primary_by_sentinel(sentinel) for sentinel in SENTINELS}
    assert len({tuple(address) for address in named.values()}) == 1, named
    host, port = named[SENTINELS[0]]
    assert port == PORT
    return host


@pytest.fixture(scope="module", params=["primary now", "old primary"])
def migration(request, primary_now):
    """One node's data now, next to what prepare recorded on the primary of then: the primary
    Sentinel names, or the old primary once it has acknowledged every write of the new one.

    Without the DUMP digests of sets, which differ between nodes (comparable()).
    """
    if request.param == "old primary":
        acknowledged = redis_cli(node(primary_now), "WAIT", "1", "10000")
        assert acknowledged == "1", "the old primary did not acknowledge the new one's writes"
    host = node(primary_now if request.param == "primary now" else FIRST_PRIMARY)
    before = expectation(APP)
    return HostState(
        host=host,
        expected=Expectation(
            before_db0={"entries": comparable(before.before_db0["entries"])},
            before_db1={"entries": comparable(before.before_db1["entries"])},
        ),
        db0=comparable(snapshot(host, 0)["entries"]),
        db1=comparable(snapshot(host, 1)["entries"]),
    )


class TestMigratedData(MigratedDataChecks):
    """On the primary now and on the old primary: values, TTLs (PEXPIRETIME), db 1 untouched,
    db 0's own keys, index."""


# The failover ------------------------------------------------------------------------------


def test_every_sentinel_names_the_new_primary(primary_now):
    assert primary_now == NEW_PRIMARY


def test_the_old_primary_replicates_from_the_new_one():
    new, old = replication(NEW_PRIMARY), replication(FIRST_PRIMARY)
    assert new["role"] == "master"
    assert new["connected_slaves"] == "1"
    assert old["role"] == "slave"
    assert old["master_host"] == NEW_PRIMARY
    assert old["master_link_status"] == "up"


# Reports, on the controller ------------------------------------------------------------------


def record_of(run) -> dict:
    check_report_files(run, [APP])
    return run.records[APP]


def test_each_run_left_a_report():
    runs = report_runs()
    # check (the dry run), converge, idempotence: in that order.
    assert [run.dry_run for run in runs] == [True, False, False], [r.folder.name for r in runs]


def test_the_dry_run_planned_the_migration_on_the_first_primary():
    record = record_of(report_runs()[0])
    expected = expectation(APP)
    assert record["dry_run"] is True
    assert record["status"] == "ok", record["failure"]
    migrate = record["migrate"]
    assert migrate["endpoint"] == f"{FIRST_PRIMARY}:{PORT}"
    assert migrate["replication"]["primary"] == f"{FIRST_PRIMARY}:{PORT}"
    assert migrate["replication"]["sentinel_service"] == SERVICE
    assert migrate["counts"]["migrated"] == len(expected.migrated)
    assert migrate["counts"]["skipped"] == len(expected.skipped)
    assert migrate["index_counts"]["added"] == expected.index_added


def test_the_migration_found_the_new_primary_and_verified_it():
    record = record_of(report_runs()[1])
    expected = expectation(APP)
    assert record["dry_run"] is False
    assert record["status"] == "ok", record["failure"]
    # The role's name for the endpoint is the Sentinel service, whichever node is primary.
    assert record["endpoint"] == f"sentinel {SERVICE} ({SENTINEL_HOSTS}) db 1 -> db 0"
    assert record["handled_by"] == APP
    migrate = record["migrate"]
    assert migrate["endpoint"] == f"{NEW_PRIMARY}:{PORT}"
    check_migrated_and_verified(migrate, expected)
    # Found through Sentinel; what it wrote acknowledged by the old primary, now the
    # replica; the node and the Sentinels still named the same primary at the end.
    replication = migrate["replication"]
    assert replication["primary"] == f"{NEW_PRIMARY}:{PORT}"
    assert replication["sentinel_service"] == SERVICE
    assert replication["replicas"] == [f"{FIRST_PRIMARY}:{PORT}"]
    assert replication["min_replicas"] == 1
    assert replication["acknowledged_waits"] > 0
    assert replication["confirmed"] is True
    assert migrate["unacknowledged"] == 0


def test_the_rerun_found_nothing_left_to_do():
    record = record_of(report_runs()[2])
    expected = expectation(APP)
    assert record["status"] == "ok", record["failure"]
    migrate = record["migrate"]
    assert migrate["endpoint"] == f"{NEW_PRIMARY}:{PORT}"
    assert migrate["replication"]["primary"] == f"{NEW_PRIMARY}:{PORT}"
    assert migrate["changed"] is False
    assert migrate["counts"]["migrated"] == 0
    assert migrate["counts"]["skipped"] == len(expected.source_sessions)
    assert migrate["index_counts"]["added"] == 0
