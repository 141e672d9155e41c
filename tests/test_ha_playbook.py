"""The migration playbook through Sentinel, as operators run it on a highly available Redis.

Two app hosts share one Sentinel service: it is one endpoint, migrated once, into whichever
node the Sentinels name as primary when the run reaches it. The dry run writes nothing on any
node; a failover between the dry run and the real run sends the real run to the new primary.
"""

from __future__ import annotations

import pytest
from helpers import INDEX, MIGRATE, expiries, run_playbook, seed_sessions, write_inventory, zset

pytestmark = [pytest.mark.ansible, pytest.mark.slow]


def sentinel_vars(topology):
    return {
        "storyart_session_migration_sentinel_hosts": topology.sentinel_hosts,
        "storyart_session_migration_sentinel_service_name": topology.service,
        # Not used through Sentinel: a closed port proves the module never goes there.
        "storyart_session_migration_login_port": 1,
    }


def holds_every_session(server, sessions, scores):
    """db 0 of ``server`` has each session at the exact absolute expiry of that server's own
    db 1 copy (before Redis 7 a replica's own may differ from the primary's by a millisecond:
    it turns a relative SET EX into its own absolute time), and its index score."""
    target = server.client(0)
    assert expiries(target, sessions) == expiries(server.client(1), sessions)
    assert -2 not in expiries(target, sessions)
    assert zset(target) == scores


def test_a_dry_run_then_a_failover_then_the_real_run_migrates_into_the_new_primary(
    tmp_path, ha_topology
):
    old = ha_topology.primary
    sessions = seed_sessions(old.client(1), 200)
    scores = zset(old.client(1))
    ha_topology.wait_for_sync()
    inventory = write_inventory(
        tmp_path, {"app1": sentinel_vars(ha_topology)} | {"app2": sentinel_vars(ha_topology)}
    )
    writes = {server.port: server.rdb_changes() for server in ha_topology.servers}

    dry = run_playbook(tmp_path, inventory, MIGRATE, "--check", report_dir=tmp_path / "reports")

    assert dry.rc == 0, dry.output
    assert {server.port: server.rdb_changes() for server in ha_topology.servers} == writes
    plan = dry.reports()
    assert plan["app1"]["migrate"]["counts"]["migrated"] == len(sessions)
    assert plan["app1"]["migrate"]["replication"]["primary"] == f"127.0.0.1:{old.port}"
    # One Sentinel service, one endpoint: app2 shares app1's result.
    assert plan["app2"]["handled_by"] == "app1"
    assert plan["app1"]["endpoint"].startswith("controller sentinel storyart ("), plan

    ha_topology.failover()
    new = ha_topology.wait_for_new_primary(old.port)
    ha_topology.wait_until_reconfigured(old)

    real = run_playbook(tmp_path, inventory, MIGRATE, report_dir=tmp_path / "reports")

    assert real.rc == 0, real.output
    record = real.reports()["app1"]["migrate"]
    assert record["verified"] is True, record["msg"]
    assert record["replication"]["primary"] == f"127.0.0.1:{new.port}"
    assert record["replication"]["sentinel_service"] == "storyart"
    assert record["replication"]["confirmed"] is True
    assert record["counts"]["migrated"] == len(sessions)
    holds_every_session(new, sessions, scores)
    # What the replicas acknowledged is on the old primary, now a replica, too.
    ha_topology.wait_for_sync()
    holds_every_session(old, sessions, scores)
    assert zset(new.client(0), INDEX) == scores

    check = run_playbook(
        tmp_path, inventory, MIGRATE, "--tags", "verify", report_dir=tmp_path / "reports"
    )

    assert check.rc == 0, check.output
    verify = check.reports()["app1"]["verify"]
    assert verify["verified"] is True, verify["msg"]
    assert verify["replication"]["primary"] == f"127.0.0.1:{new.port}"
