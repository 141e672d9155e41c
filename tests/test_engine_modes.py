"""The engine's other modes against real redis-server processes: preflight, the memory check,
verify and cleanup.

Each test reads the server back afterwards (write counter, DUMP payloads, expiries, index
scores), not only the report. Cleanup must delete from the source db only what the target
holds an identical copy of, and must never write the target.
"""

from __future__ import annotations

import re

import pytest
import redis
from helpers import (
    INDEX,
    SESSION,
    engine,
    migrate_with_engine,
    options,
    seed_sessions,
    seed_with_overlap,
    snapshot,
    zset,
)

RO_PASSWORD = "ro-pw"  # noqa: S105 - a throwaway test user on a throwaway server
CLEANER_PASSWORD = "cleaner-pw"  # noqa: S105 - likewise
OTHER = b"storyart:other:1"  # in db 1, never matched by PATTERN


def state(server):
    """Everything a run could change: the server's write counter and both dbs, byte for byte."""
    return server.rdb_changes(), snapshot(server.client(0)), snapshot(server.client(1))


def without_index(keys):
    return {key: value for key, value in keys.items() if key != INDEX}


def names(keys):
    return {engine.shown(key) for key in keys}


def seed_big_sessions(client, count):
    """``count`` sessions of about 1 KB each, all of exactly the same size, and their index."""
    return seed_sessions(client, count, body=lambda n: b"%06d" % n + b"x" * 1000)


def used_memory(server):
    return int(server.client().info("memory")["used_memory"])


def add_user(server, name, password, *rules):
    server.client().execute_command("ACL", "SETUSER", name, "on", f">{password}", *rules)
    return server.settings(username=name, password=password)


# 1. Preflight --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "strategy"),
    [(("databases 5",), "copy"), (("databases 5", 'rename-command COPY ""'), "dump-restore")],
    ids=["copy", "copy-renamed"],
)
def test_preflight_reports_the_server_and_an_estimate_and_writes_nothing(
    redis_factory, config, strategy
):
    server = redis_factory(*config)
    src = server.client(1)
    sessions = seed_sessions(src, 300)
    before = state(server)

    facts = engine.preflight(server.settings(), options())

    assert state(server) == before
    assert facts["server_version"] == server.client().info("server")["redis_version"]
    assert facts["role"] == "master"
    assert facts["databases"] == 5  # read from the server, not a default
    assert facts["strategy"] == strategy
    assert (facts["source_db"], facts["target_db"]) == (1, 0)
    assert f"strategy {strategy}" in facts["msg"]
    assert facts["checks_not_run"] == []
    memory = facts["memory"]
    # Fewer sessions than the sample: every one is read, and the estimate is exact.
    assert memory["estimate"] == "exact"
    assert memory["matching_keys"] == memory["keys_to_copy"] == 300
    sizes = sum(src.memory_usage(key) + engine.KEY_OVERHEAD for key in sessions)
    assert memory["needed_bytes"] == sizes + src.memory_usage(INDEX)
    info = server.client().info()
    assert memory["policy"] == info["maxmemory_policy"] == "noeviction"
    assert memory["maxmemory"] == 0
    assert memory["limit"] == "system memory"  # no maxmemory: said, and warned about
    [warning] = memory["warnings"]
    assert re.fullmatch(
        r"no maxmemory: the memory guard judges against the machine's free memory "
        r"\([\d.]+ MiB\), and Redis cannot see a container's limit; set maxmemory",
        warning,
    )
    # The ceiling is the machine's memory less the headroom, at most.
    assert memory["ceiling_bytes"] <= info["total_system_memory"] * 0.9 + info["used_memory"]
    assert memory["available_bytes"] == memory["ceiling_bytes"] - memory["used_memory"] > 0
    assert "WARNING: no maxmemory" in facts["msg"]
    assert memory["evicted_keys"] == info["evicted_keys"]
    assert memory["fits"] is True

    migrate_with_engine(server)
    before = state(server)

    facts = engine.preflight(server.settings(), options())

    assert state(server) == before
    assert facts["memory"]["keys_to_copy"] == 0
    assert facts["memory"]["needed_bytes"] == 0
    assert facts["memory"]["fits"] is True


def test_preflight_announces_the_keys_and_the_duration_at_the_configured_rate(redis_server):
    seed_sessions(redis_server.client(1), 300)

    paced = engine.preflight(redis_server.settings(), options(max_keys_per_second=100))
    unpaced = engine.preflight(redis_server.settings(), options())
    checked = options(max_keys_per_second=100, full_verify=True)
    twice = engine.preflight(redis_server.settings(), checked)

    assert paced["memory"]["matching_keys"] == 300
    # The rate counts keys and index entries: 600 at 100 a second.
    assert paced["pace"] == dict(
        max_keys_per_second=100, matching_keys=300, index_entries=300, passes=1, seconds=6.0
    )
    assert (
        "; 300 matching keys and 300 index entries to go through: about 6 s at "
        "max_keys_per_second 100"
    ) in paced["msg"]
    assert (
        "; 300 matching keys and 300 index entries to go through, no rate limit "
        "(max_keys_per_second 0)"
    ) in unpaced["msg"]
    assert unpaced["pace"]["seconds"] is None
    # full_verify reads them all again.
    assert (
        "; 300 matching keys and 300 index entries to go through, twice with full_verify: "
        "about 12 s at max_keys_per_second 100"
    ) in twice["msg"]


# 2. Memory check -----------------------------------------------------------------------------


def test_copy_that_would_not_fit_is_refused_and_the_override_fails_cleanly(redis_server):
    server = redis_server
    admin, src, dst = server.client(), server.client(1), server.client(0)
    seed_big_sessions(src, 2000)
    admin.config_set("maxmemory-policy", "noeviction")
    used = used_memory(server)
    admin.config_set("maxmemory", used + 256 * 1024)
    estimate = engine.preflight(server.settings(), options(memory_check=False))["memory"]
    assert estimate["fits"] is False
    assert estimate["maxmemory"] == used + 256 * 1024
    assert estimate["needed_bytes"] > 2000 * 1000
    before = state(server)

    with pytest.raises(engine.MigrationError) as refused:
        migrate_with_engine(server)

    message = str(refused.value)
    assert "maxmemory" in message
    assert f"about {engine.mib(estimate['needed_bytes'])} are needed" in message
    assert "memory_check: false" in message
    assert "Nothing was written" in message
    assert state(server) == before
    assert dst.dbsize() == 0
    with pytest.raises(engine.MigrationError, match="memory_check"):
        engine.preflight(server.settings(), options())
    assert state(server) == before

    # Overridden: the copy runs into maxmemory part-way. Redis refuses each COPY (and the
    # index's ZADD) with OOM once memory is over the limit; COPY is atomic per key.
    try:
        report = migrate_with_engine(server, memory_check=False, batch_size=500)
    except engine.MigrationError as exc:
        report = exc.report
        assert report is not None
    failures = report.failed + report.index_total("failed")
    assert failures > 0
    assert report.ok is False
    assert any("OOM" in error["error"] for error in report.errors)
    source = snapshot(src)
    copied = without_index(snapshot(dst))
    assert len(copied) < 2000
    assert report.migrated == len(copied)
    assert report.failed == 2000 - len(copied)
    for key, payload in copied.items():
        assert payload == source[key], key  # type, value and absolute expiry: no partial key
    assert zset(dst).items() <= zset(src).items()  # whatever was merged has the source score

    admin.config_set("maxmemory", used + 64 * 1024 * 1024)
    report = migrate_with_engine(server)

    assert report.ok
    assert report.verified is True
    assert report.migrated == 2000 - len(copied)
    assert report.skipped == len(copied)
    assert without_index(snapshot(dst)) == without_index(snapshot(src))
    assert zset(dst) == zset(src)


def test_rerun_with_nothing_left_to_copy_is_not_refused_for_memory(redis_server):
    """A finished migration rerun on a server near its maxmemory copies nothing: it must not
    be refused, whatever the headroom."""
    server = redis_server
    admin, src, dst = server.client(), server.client(1), server.client(0)
    seed_big_sessions(src, 500)
    migrate_with_engine(server)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", used_memory(server) + 256 * 1024)
    before = state(server)

    facts = engine.preflight(server.settings(), options())
    report = migrate_with_engine(server)

    assert facts["memory"]["needed_bytes"] == 0
    assert facts["memory"]["fits"] is True
    assert report.migrated == 0
    assert report.skipped == 500
    assert report.verified is True
    assert state(server) == before
    assert zset(dst) == zset(src)


# 3. Verify -----------------------------------------------------------------------------------


def test_verify_counts_what_is_missing_and_writes_nothing(redis_server):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 30)
    before = state(server)

    report = engine.verify(server.settings(), options())

    assert state(server) == before
    assert report.verify_only is True
    assert report.verified is False
    assert (report.found, report.migrated, report.skipped, report.failed) == (30, 30, 0, 0)
    assert report.index_total("added") == 30
    assert report.index_total("present") == 0
    assert report.changed is False
    assert report.ok is False
    assert "NOT VERIFIED: 30 keys and 30 index entries are not in db 0" in report.summary()

    migrate_with_engine(server)
    report = engine.verify(server.settings(), options())

    assert report.verified is True
    assert report.ok is True
    assert (report.migrated, report.skipped) == (0, 30)
    assert (report.index_total("added"), report.index_total("present")) == (0, 30)

    gone, unindexed = sessions[3], sessions[7]
    dst.delete(gone)
    dst.zrem(INDEX, unindexed)
    before = state(server)

    report = engine.verify(server.settings(), options())

    assert state(server) == before  # nothing put back
    assert dst.exists(gone) == 0
    assert dst.zscore(INDEX, unindexed) is None
    assert report.verified is False
    assert (report.found, report.migrated, report.skipped) == (30, 1, 29)
    assert report.samples["migrated"] == [engine.shown(gone)]
    assert (report.index_total("added"), report.index_total("present")) == (1, 29)
    result = report.as_dict()
    assert set(result["samples"]) == {"missing", "present", "expired"}
    assert result["samples"]["missing"] == [engine.shown(gone)]
    assert len(result["samples"]["present"]) == engine.SAMPLE_SIZE
    assert engine.shown(gone) not in result["samples"]["present"]
    assert result["mode"] == "verify"
    assert result["verified"] is False
    assert result["counts"]["missing"] == 1
    assert result["index_counts"]["added"] == 1
    assert "NOT VERIFIED: 1 keys and 1 index entries" in report.summary()


def test_verify_counts_missing_and_present_under_their_own_names(redis_server):
    """A verification's counts say what they count: ``missing`` from the target, ``present``
    in it. The migration's words for them, ``migrated`` and ``skipped``, stay beside them with
    the same numbers until 2.0.0; a migration's counts are left as they were."""
    server = redis_server
    dst = server.client(0)
    sessions, present = seed_with_overlap(server, 12, 5)
    before = state(server)

    result = engine.verify(server.settings(), options()).as_dict()

    assert state(server) == before
    assert result["counts"] == dict(
        found=12, missing=7, present=5, expired=0, failed=0, migrated=7, skipped=5
    )
    assert list(result["counts"])[:5] == ["found", "missing", "present", "expired", "failed"]
    assert set(result["samples"]["missing"]) == names(sessions[5:])
    assert set(result["samples"]["present"]) == names(present)
    assert result["verified"] is False

    migration = migrate_with_engine(server).as_dict()

    assert set(migration["counts"]) == {"found", "migrated", "skipped", "expired", "failed"}
    assert (migration["counts"]["migrated"], migration["counts"]["skipped"]) == (7, 5)
    gone = sessions[2:5] + sessions[9:11]
    dst.delete(*gone)

    result = engine.verify(server.settings(), options()).as_dict()

    assert result["counts"] == dict(
        found=12, missing=5, present=7, expired=0, failed=0, migrated=5, skipped=7
    )
    assert set(result["samples"]["missing"]) == names(gone)
    assert result["verified"] is False


def test_verify_needs_only_read_permissions(redis_server):
    """The user of the brief works unchanged on 7.0: +@read holds SCAN, EXISTS, TYPE, ZRANGE,
    ZRANK, ZCOUNT, ZSCORE and DUMP; SELECT, EVAL/EVALSHA, SCRIPT (redis-py loads the script on
    NOSCRIPT), INFO and PING are granted one by one. CONFIG GET is denied: the engine then
    leaves 'databases' unknown and lets SELECT tell. A script's calls are checked against the
    ACL again, and the verify script calls only SELECT, EXISTS and the index's reads. -@write
    makes sure nothing can be written: COPY and RESTORE are refused, so migrate stops in
    preflight."""
    server = redis_server
    src, dst = server.client(1), server.client(0)
    seed_sessions(src, 15)
    rules = ["~*", "&*", "+@read", "+select", "+evalsha", "+eval", "+script", "+info", "+ping"]
    ro = add_user(server, "ro", RO_PASSWORD, *rules, "+hello", "+auth", "-@write")
    with pytest.raises(redis.exceptions.ResponseError, match="no permissions"):
        server.client(0, username="ro", password=RO_PASSWORD).set(b"probe", b"1")
    before = state(server)

    report = engine.verify(ro, options())

    assert report.verified is False
    assert (report.migrated, report.index_total("added"), report.failed) == (15, 15, 0)
    with pytest.raises(engine.MigrationError, match="RESTORE"):
        engine.migrate(ro, options())
    assert state(server) == before

    migrate_with_engine(server)
    before = state(server)
    report = engine.verify(ro, options())

    assert report.verified is True
    assert (report.skipped, report.index_total("present"), report.failed) == (15, 15, 0)
    assert state(server) == before
    assert zset(dst) == zset(src)


# 4. Cleanup, dry run -------------------------------------------------------------------------


def test_cleanup_dry_run_reports_what_it_would_delete_and_deletes_nothing(redis_server):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 20)
    migrate_with_engine(server)
    changed, gone = sessions[0], sessions[1]
    dst.set(changed, b"edited in db 0", keepttl=True)
    dst.delete(gone)
    before = state(server)

    report = engine.cleanup(server.settings(), options(dry_run=True))

    assert state(server) == before
    assert report.dry_run is True
    assert (report.found, report.deleted, report.kept_different, report.kept_missing) == (
        20, 18, 1, 1,
    )  # fmt: skip
    assert (report.expired, report.failed) == (0, 0)
    assert report.ok
    assert report.samples["kept_different"] == [engine.shown(changed)]
    assert report.samples["kept_missing"] == [engine.shown(gone)]
    assert len(report.samples["deleted"]) == engine.SAMPLE_SIZE
    assert set(report.samples["deleted"]) <= names(sessions[2:])
    [index] = report.indexes
    assert (index.found, index.missing, index.deleted) == (20, 0, True)  # would be deleted
    summary = report.summary()
    assert summary.startswith("DRY RUN, nothing written")
    assert "would be deleted 18" in summary
    assert f"index {INDEX.decode()}: 20 entries, 0 missing from db 0, would be deleted" in summary
    assert report.as_dict()["counts"]["deleted"] == 18


# 5. Cleanup ----------------------------------------------------------------------------------


def test_cleanup_deletes_only_identical_copies_and_never_writes_the_target(redis_server):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 20)
    src.set(OTHER, b"never matched by the pattern")
    migrate_with_engine(server)
    changed, gone, unindexed = sessions[0], sessions[1], sessions[2]
    dst.set(changed, b"edited in db 0", keepttl=True)
    dst.delete(gone)
    dst.zrem(INDEX, unindexed)
    source_before, target_before = snapshot(src), snapshot(dst)
    original = src.get(changed)

    report = engine.cleanup(server.settings(), options())

    assert snapshot(dst) == target_before  # (e) the target is never written
    after = snapshot(src)
    # (a) every identical copy is deleted from db 1, (b, c, d) the rest is kept byte for byte
    assert set(after) == {changed, gone, OTHER, INDEX}
    for key, payload in after.items():
        assert payload == source_before[key], key
    assert src.get(changed) == original
    assert dst.get(changed) == b"edited in db 0"
    assert all(dst.exists(key) for key in sessions[2:])
    assert (report.found, report.deleted, report.kept_different, report.kept_missing) == (
        20, 17 + 1, 1, 1,
    )  # fmt: skip  # the unindexed session's key is identical in db 0: deleted
    assert (report.expired, report.failed) == (0, 0)
    assert report.ok
    assert report.changed is True
    assert report.samples["kept_different"] == [engine.shown(changed)]
    assert report.samples["kept_missing"] == [engine.shown(gone)]
    assert engine.shown(OTHER) not in report.samples["deleted"]
    # (f) the index is kept: one of its members is not in db 0's index
    [index] = report.indexes
    assert (index.found, index.missing, index.deleted) == (20, 1, False)
    assert "1 of its entries are not in db 0" in index.kept_because
    assert report.as_dict()["indexes"][0]["kept_because"] == index.kept_because
    assert f"kept ({index.kept_because})" in report.summary()


def test_cleanup_deletes_a_fully_merged_index_and_a_rerun_changes_nothing(redis_server):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 20)
    migrate_with_engine(server)
    changed = sessions[0]
    dst.set(changed, b"edited in db 0", keepttl=True)
    source_index, source_before = zset(src), snapshot(src)
    target_before = snapshot(dst)

    report = engine.cleanup(server.settings(), options())

    assert snapshot(dst) == target_before
    assert src.exists(INDEX) == 0  # (f) every member is in db 0's index
    assert set(source_index) <= set(zset(dst))
    assert snapshot(src) == {changed: source_before[changed]}
    [index] = report.indexes
    assert (index.found, index.missing, index.deleted, index.kept_because) == (20, 0, True, None)
    assert (report.deleted, report.kept_different, report.kept_missing) == (19, 1, 0)
    assert report.changed is True
    assert f"- index {INDEX.decode()}" in report.diff()["before"]
    remaining = snapshot(src)
    writes = server.rdb_changes()

    again = engine.cleanup(server.settings(), options())

    # (g) nothing left to do
    assert again.changed is False
    assert server.rdb_changes() == writes
    assert snapshot(src) == remaining
    assert snapshot(dst) == target_before
    assert (again.found, again.deleted, again.kept_different, again.kept_missing) == (1, 0, 1, 0)
    [index] = again.indexes
    assert index.deleted is False
    assert index.kept_because == "it does not exist in db 1"
    assert again.ok


# 6. Index guard ------------------------------------------------------------------------------


def test_index_is_kept_when_an_entry_is_added_between_check_and_delete(redis_server):
    server = redis_server
    src = server.client(1)
    seed_sessions(src, 10)
    migrate_with_engine(server)
    late = SESSION + b"1999999999999"

    class AppAddsASession(engine.Hooks):
        def before_index_delete(self, index):
            src.zadd(index, {late: 1999999999999})

    report = engine.cleanup(server.settings(), options(), AppAddsASession())

    assert src.zcard(INDEX) == 11
    assert src.zscore(INDEX, late) == 1999999999999
    [index] = report.indexes
    assert index.deleted is False
    assert index.kept_because == "it changed during the cleanup; run the cleanup again"
    assert report.deleted == 10


# 7. TTLs -------------------------------------------------------------------------------------


def test_cleanup_deletes_a_source_key_that_differs_from_its_copy_only_by_ttl(redis_server):
    """Intended: DUMP holds the type and value, not the expiry. A copy with the same value
    and another TTL holds the same data; the copy in db 0 is the one the app reads and
    refreshes, so its TTL is the one that counts. The source key is deleted, the copy's
    expiry is left exactly as it was."""
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 3)
    migrate_with_engine(server)
    longer, shorter = sessions[0], sessions[1]
    src.expire(longer, 30 * 86400)
    src.expire(shorter, 3600)
    assert src.ttl(longer) > dst.ttl(longer)
    assert src.ttl(shorter) < dst.ttl(shorter)
    target_before = snapshot(dst)

    report = engine.cleanup(server.settings(), options(indexes=()))

    assert src.exists(longer, shorter) == 0
    assert snapshot(dst) == target_before  # value and absolute expiry of the copies unchanged
    assert (report.deleted, report.kept_different, report.kept_missing) == (3, 0, 0)


# 9. Failures ---------------------------------------------------------------------------------


def test_cleanup_by_a_user_who_may_not_unlink_is_refused_before_it_reads_a_key(redis_server):
    server = redis_server
    seed_sessions(server.client(1), 12)
    migrate_with_engine(server)
    cleaner = add_user(server, "cleaner", CLEANER_PASSWORD, "~*", "&*", "+@all", "-unlink")
    before = state(server)

    with pytest.raises(engine.MigrationError) as refused:
        engine.cleanup(cleaner, options(batch_size=5))

    assert state(server) == before
    message = str(refused.value)
    assert "User 'cleaner'" in message
    assert "may not run UNLINK, which mode cleanup" in message
    assert "ACL SETUSER cleaner +unlink" in message


def test_cleanup_index_delete_that_is_denied_is_reported_with_its_reason(redis_server):
    """The user may delete sessions but only read the index: the sessions go, the index is
    kept and the report says why."""
    server = redis_server
    sessions = seed_sessions(server.client(1), 5)
    migrate_with_engine(server)
    if server.version < (7, 0):
        pytest.skip("read-only key patterns (%R~) need Redis 7.0")
    cleaner = add_user(
        server, "cleaner", CLEANER_PASSWORD, "~storyart:session:*", f"%R~{INDEX.decode()}",
        "&*", "+@all",
    )  # fmt: skip

    report = engine.cleanup(cleaner, options())

    assert report.ok is False
    assert report.deleted == 5
    src = server.client(1)
    assert src.zcard(INDEX) == 5
    assert all(src.exists(key) == 0 for key in sessions)
    [index] = report.indexes
    assert index.deleted is False
    assert index.failed is True
    assert index.kept_because.startswith("deleting it failed: ")
    assert "no permissions" in index.kept_because.lower()
    assert "kept (deleting it failed: " in report.summary()


def test_full_verify_reads_everything_again_and_fails_on_a_missing_session(redis_server):
    """full_verify: after the copy and its read-back, the same pass as verify(), in the same
    run. A session removed from db 0 in between (eviction, an operator) fails the run."""
    src, dst = redis_server.client(1), redis_server.client(0)
    sessions = seed_sessions(src, 30)
    lost = sessions[7]

    class LosesOneAfterTheCopy(engine.Hooks):
        def before_full_check(self):
            dst.delete(lost)
            dst.zrem(INDEX, lost)

    full = options(full_verify=True)
    report = engine.migrate(redis_server.settings(), full, LosesOneAfterTheCopy())

    assert report.migrated == 30
    assert report.missing == 0  # the copy's own read-back passed
    assert report.full_check["missing"] == 1
    assert report.full_check["index_missing"] == 1
    assert report.full_check["missing_sample"] == [lost.decode()]
    assert report.verified is False
    assert report.ok is False
    assert "VERIFICATION FAILED: read again, 1 keys and 1 index entries" in report.summary()
    assert report.as_dict()["full_check"]["verified"] is False

    again = engine.migrate(redis_server.settings(), full)  # a rerun restores it
    assert again.migrated == 1
    assert again.verified is True
    assert dst.get(lost) == src.get(lost)
