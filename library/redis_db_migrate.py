#!/usr/bin/python
"""Ansible module: migrate keys between Redis logical databases. The engine is in module_utils."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_db_migrate
short_description: Copy keys and merge sorted-set indexes from one Redis db to another
description:
  - O(mode=migrate) (the default) copies; O(mode=preflight), O(mode=verify) and O(mode=cleanup)
    check the server, check the result, and clean up the source after a proven migration.
  - Copies every key matching O(patterns) from O(source_db) to O(target_db) on one Redis server,
    keeping each key's type, value and exact expiry. Keys of any type are copied.
  - A key that already exists in the target is skipped and left untouched, never overwritten.
  - Merges each sorted set listed in O(indexes) into the target with ZADD NX semantics, so a
    member already in the target keeps its score.
  - Reads back everything it wrote in the same run and fails when something is missing.
  - Never writes to or deletes from the source db, and never touches keys that do not match.
  - Finds keys with SCAN, never KEYS, and holds at most one batch of key names in memory.
  - Uses COPY on Redis 6.2 and newer, and DUMP + RESTORE where COPY is missing, renamed or
    denied. Each batch runs as a Lua script. Preflight probes every command the mode and
    strategy will send, and names each one the user may not run.
  - Per-key errors do not stop the run; they are counted and listed, and the task fails at the
    end with the full report.
  - In check mode it is a dry run that returns the full plan and sends Redis no write.
  - A memory guard keeps the copy from ever making Redis evict keys or refuse the
    application's writes. Before the first write it estimates what the copy adds, from the
    keys that will be copied (MEMORY USAGE of the matching keys the target lacks, read on the
    server), and refuses when that would leave less than O(memory_headroom) percent of
    C(maxmemory) free. Before every write it checks again that the write fits, and that the
    server has evicted nothing since the run started; otherwise it stops at once with the
    counts so far. Without C(maxmemory) it judges against the machine's free memory and says
    so.
  - Each server call stops at a byte budget (O(max_batch_bytes)) as well as a key count, so
    no call stalls the server, its replicas or Sentinel; a key larger than the budget goes
    alone.
  - DUMP + RESTORE restores at the source's absolute expiry on every server version, so a
    replica or an AOF reload keeps it.
  - High availability. With O(sentinel_hosts) it asks Sentinel for the primary and connects
    there; a replica it is pointed at is refused, naming its primary. Through the run it
    watches the primary. What it writes is acknowledged by O(min_replicas) replicas every
    50 ms and before it says verified; the wait goes ahead of its next call, in its round
    trip. It stops at once on a READONLY, LOADING or MASTERDOWN reply, on a connection that
    reopens to a node that is not the same primary (run_id and replication ID), and on a
    Sentinel announcing another primary. Before it says verified it asks the node and the
    Sentinels again. After a failover during the run the result is never verified; the
    message says what happened and to rerun, which copies only what the primary then lacks.
requirements:
  - redis (redis-py) >= 4.3 on the host that runs the module
  - Redis server 5.0 or newer, standalone (not cluster), primary (not replica), or the
    primary Sentinel names
options:
  mode:
    description:
      - V(migrate) copies keys, merges indexes and verifies what it wrote.
      - V(preflight) makes every check a migration makes before its first write (reachable,
        authenticated, primary, not cluster, both dbs exist, index types, permissions, copy
        strategy, memory) and returns the server facts and the memory estimate. It never writes.
      - V(verify) checks, independently of any run, that every matching source key and every
        source index entry is in the target; it fails when something is missing. It never
        writes.
      - V(cleanup) deletes from the source db only keys whose copy in the target has the same
        type and content, with UNLINK, in the same atomic call as the comparison, and deletes
        a source index only when every one of its entries is in the target index. Keys whose
        copy differs or is missing are kept and counted. In check mode it lists what it would
        delete.
    type: str
    choices: [preflight, migrate, verify, cleanup]
    default: migrate
  full_verify:
    description:
      - With O(mode=migrate), after the copy and its read-back, read everything again in the
        same run, as O(mode=verify) does, and fail unless every matching source key and every
        source index entry is in the target. Not in check mode.
    type: bool
    default: false
  memory_check:
    description:
      - Run the memory guard, described above. It needs INFO and MEMORY USAGE.
      - Set to V(false) only when you know the copy fits, or the user may not run INFO or
        MEMORY USAGE; the result then names the checks that did not run.
    type: bool
    default: true
  memory_headroom:
    description:
      - Percentage of C(maxmemory) (without it, of the machine's memory) the memory guard
        keeps free for the application. From 0 to 90.
    type: int
    default: 10
  max_batch_bytes:
    description:
      - Bytes of keys (as MEMORY USAGE counts them) one server call may work through.
      - V(0) sizes it for each kind of call, to keep each under about 20 ms; 8 MiB for COPY,
        1 MiB for DUMP + RESTORE, 2 MiB for the clean-up's comparison.
    type: int
    default: 0
  source_db:
    description: Database number to copy from, 0 or more. It is only read.
    type: int
    required: true
  target_db:
    description: Database number to copy into. Must differ from O(source_db).
    type: int
    required: true
  patterns:
    description:
      - Glob patterns, as SCAN MATCH reads them, of the keys to copy. At least one.
      - A key matched by several patterns is handled once.
    type: list
    elements: str
    required: true
  indexes:
    description:
      - Sorted sets to merge from O(source_db) into O(target_db) member by member.
      - An index key is never copied as a key, even when a pattern matches it.
    type: list
    elements: str
    default: []
  batch_size:
    description:
      - Keys (and index members) handled per server round trip and per SCAN COUNT, from 1 to
        10000.
      - Each batch runs as one Lua script that blocks other clients while it runs, so lower it
        for very large values.
    type: int
    default: 1000
  max_keys_per_second:
    description:
      - Pace the run to at most this many keys and index entries per second, for a busy
        production server. V(0) means no limit; not negative.
      - The pace is kept per batch, so a lower O(batch_size) makes it smoother.
    type: int
    default: 0
  min_replicas:
    description:
      - Replicas that must acknowledge what the run writes (C(WAIT)). The run waits for them
        every 50 ms, the wait travelling ahead of its next call in the same round trip, and
        for its last writes on their own before it says verified. When fewer replicas
        acknowledge within O(replica_timeout), the run stops, naming each replica and how far
        behind it is, and counts the writes not acknowledged; it never says verified then.
      - Unset, every replica connected and online when the run starts; none on a standalone
        server. V(0) waits for no replica.
    type: int
  replica_timeout:
    description:
      - Seconds each wait for O(min_replicas) acknowledgements may take.
    type: float
    default: 10
  wait_aof:
    description:
      - Wait with C(WAITAOF) (Redis 7.2 and newer, C(appendonly yes)) instead of C(WAIT).
        Each call's writes must then be in the primary's AOF, and in that of O(min_replicas)
        replicas, before the run goes on.
    type: bool
    default: false
  strategy:
    description:
      - How keys are copied. V(auto) uses COPY where the server has it and the user may run it,
        and DUMP + RESTORE otherwise.
      - V(copy) fails if COPY is unavailable; V(dump-restore) never uses COPY.
    type: str
    choices: [auto, copy, dump-restore]
    default: auto
extends_documentation_fragment:
  - redis_connection
attributes:
  check_mode:
    description: Runs every read and returns the full plan; Redis receives no write.
    support: full
  diff_mode:
    description: Shows the target db before and after, with a capped sample of keys.
    support: full
notes:
  - SCAN may return a key twice while the server resizes its tables. Such a key is handled
    twice and counted once as migrated and once as skipped; nothing is overwritten.
  - O(mode=cleanup) compares keys by type and content (hash fields and values, set members,
    list items in order, sorted-set members and scores, stream entries, strings byte for
    byte), whatever their encoding; expiries and stream consumer groups are not compared.
  - Each batch is checked against ACL key permissions as a whole, so one key the user may not
    touch fails its whole batch; the other keys are reported failed and copied by a rerun with
    the right permissions.
author:
  # No GitHub handle: the form Ansible's module checks accept for that.
  - StoryArt operations (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Move StoryArt sessions from db 1 to db 0
  redis_db_migrate:
    login_host: 127.0.0.1
    source_db: 1
    target_db: 0
    patterns:
      - "storyart:session:*"
    indexes:
      - "storyart:sessions:index"

- name: Check, writing nothing, that every session is in db 0
  redis_db_migrate:
    mode: verify
    source_db: 1
    target_db: 0
    patterns: ["storyart:session:*"]
    indexes: ["storyart:sessions:index"]

- name: Delete from db 1 the sessions db 0 holds an identical copy of
  redis_db_migrate:
    mode: cleanup
    source_db: 1
    target_db: 0
    patterns: ["storyart:session:*"]
    indexes: ["storyart:sessions:index"]

- name: Dry run against a TLS server with an ACL user
  redis_db_migrate:
    login_host: redis.example.internal
    login_port: 6380
    login_user: migrator
    login_password: "{{ vault_redis_password }}"
    tls: true
    ca_certs: /etc/ssl/redis-ca.pem
    source_db: 1
    target_db: 0
    patterns: ["storyart:session:*"]
    indexes: ["storyart:sessions:index"]
  check_mode: true
"""

RETURN = r"""
outcome:
  description:
    - V(ok) or V(failed), on every result. A task that records failures instead of failing
      (with C(failed_when) false) reads it; a result without it means the module never ran.
  returned: always
  type: str
  sample: ok
msg:
  description: One-line summary, the same facts as the old script's Migration Summary.
  returned: always
  type: str
  sample: >-
    db 1 -> db 0 on 127.0.0.1:6379 (Redis 7.0.15, strategy copy); keys found 5, migrated 5,
    skipped (already in db 0) 0, expired 0, failed 0; index storyart:sessions:index: 5 entries,
    added 5, already present 0, without session key 0, failed 0; verified; 0.01s, 500 keys/s
mode:
  description: The mode that ran.
  returned: mode is not preflight
  type: str
memory:
  description:
    - The memory guard. V(guard) whether it ran; V(policy) the server's maxmemory-policy;
      V(maxmemory); V(limit), V(maxmemory) or V(system memory) when the server has none;
      V(headroom_percent); V(ceiling_bytes), the used_memory the run stays under;
      V(used_memory); V(available_bytes); V(evicted_keys) at the start.
    - The estimate, V(exact) or V(sampled) (V(estimate)); V(matching_keys), V(keys_to_copy),
      V(needed_bytes) and V(fits).
    - V(warnings), e.g. that the server has no maxmemory. V(copy_bytes) (mode migrate), what
      the copy added (in check mode, would add).
    - Only V(guard=false) (and V(copy_bytes)) when O(memory_check=false) in mode migrate.
  returned: mode is migrate or preflight
  type: dict
checks_not_run:
  description:
    - Each check this run could not make, and why, e.g. the byte budget when MEMORY USAGE is
      denied. Empty when every check ran.
  returned: always
  type: list
  elements: str
role:
  description: Replication role of the server.
  returned: mode is preflight
  type: str
databases:
  description: Number of databases the server has, when CONFIG GET is allowed.
  returned: mode is preflight
  type: int
endpoint:
  description: The Redis server, as host:port or unix:path.
  returned: always
  type: str
source_db:
  description: The db copied from.
  returned: always
  type: int
target_db:
  description: The db copied into.
  returned: always
  type: int
dry_run:
  description: Whether this was a check-mode run. Counts then say what a real run would do.
  returned: always
  type: bool
strategy:
  description: How keys were copied, V(copy) or V(dump-restore).
  returned: always
  type: str
server_version:
  description: Version of the Redis server.
  returned: always
  type: str
counts:
  description:
    - With O(mode=cleanup), V(found), V(deleted) (identical copy in the target; in check
      mode, would be), V(kept_different), V(kept_missing) (no copy in the target),
      V(expired), V(failed).
    - With O(mode=verify), V(migrated) counts the keys still missing from the target and
      V(skipped) those present.
    - Otherwise key counts. V(found) keys in the source db match the patterns; V(migrated)
      were copied (in check mode, would be); V(skipped) were left alone because the target
      already had them; V(expired) vanished between SCAN and copy; V(failed) could not be
      copied, see
      RV(errors).
    - Counts are nested because Ansible reads top-level C(skipped) and C(failed) as task status.
  returned: always
  type: dict
  sample: {found: 5, migrated: 4, skipped: 1, expired: 0, failed: 0}
index_counts:
  description:
    - Index member counts over all indexes. V(found) members were read from the source;
      V(added) were added to the target (in check mode, would be); V(present) were already in
      the target and kept their score; V(orphans) have no session key in either db and were
      merged all the same; V(failed) could not be merged.
  returned: mode is migrate or verify
  type: dict
  sample: {found: 5, added: 4, present: 1, orphans: 0, failed: 0}
indexes:
  description:
    - The same index counts, per index.
    - With O(mode=cleanup), per index V(found), V(missing) from the target, V(deleted) and
      V(kept_because).
  returned: always
  type: list
  elements: dict
verified:
  description: True when everything written in this run was read back; null in check mode.
  returned: always
  type: bool
full_check:
  description:
    - With O(full_verify), the independent pass after the copy. V(verified), V(found),
      V(missing) keys, V(index_missing) entries, V(expired), V(missing_sample).
    - V(null) without O(full_verify) and in check mode.
  returned: mode is migrate
  type: dict
verification:
  description:
    - Keys and index members missing after the write (count and capped sample).
    - Keys that expired right after their copy, which verification accepts.
  returned: always
  type: dict
samples:
  description: Up to 10 key names for each of V(migrated), V(skipped) and V(expired).
  returned: always
  type: dict
errors:
  description: Up to 20 failures, each with the key and the server's error. Counts are never capped.
  returned: always
  type: list
  elements: dict
replication:
  description:
    - The primary the run wrote to and the watch over it. V(primary), host:port;
      V(sentinel_service), the Sentinel service it was found through, or null; its V(run_id)
      and V(replication_id) when the run started; V(replicas) online then; V(min_replicas)
      and V(wait_aof), what the writes waited for; V(acknowledged_waits), the waits the
      replicas answered in full; V(confirmed), whether the node, and the Sentinels, still named the
      same primary at the end (null when the run stopped first).
    - A run stops, and is never verified, on a failover, a demotion, a restart or a replica
      that does not acknowledge; its message says which.
  returned: always
  type: dict
unacknowledged:
  description:
    - Keys and index entries written that the replicas had not acknowledged when the run
      stopped. They are on the node written, and may be missing from a new primary after a
      failover. V(0) whenever the run finished.
  returned: always
  type: int
duration:
  description: Seconds the copy, merge and verification took.
  returned: always
  type: float
keys_per_second:
  description: Keys found divided by duration.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.redis_db_migration import (
    HAS_REDIS,
    MODES,
    ConnectionSettings,
    MigrationError,
    MigrationOptions,
    argument_spec,
    cleanup,
    from_params,
    migrate,
    preflight,
    verify,
)


def module_rules():
    """The options, each defined once in the engine, and how they go together."""
    spec = argument_spec(ConnectionSettings, MigrationOptions)
    spec["mode"] = dict(type="str", choices=list(MODES), default="migrate")
    return dict(
        argument_spec=spec,
        required_by={"client_key_file": "client_cert_file"},
        supports_check_mode=True,
    )


OPERATIONS = {"migrate": migrate, "verify": verify, "cleanup": cleanup}


def report_result(report, diff):
    result = report.as_dict()
    result["changed"] = report.changed
    if diff and hasattr(report, "diff") and not getattr(report, "verify_only", False):
        result["diff"] = report.diff()
    return result


def warn_about(module, result):
    """Ansible prints a module's warnings for each host, whatever the callback: e.g. that the
    server has no maxmemory, which every run should show."""
    for warning in (result.get("memory") or {}).get("warnings", ()):
        module.warn(warning)


def main():
    module = AnsibleModule(**module_rules())
    if not HAS_REDIS:
        module.fail_json(
            outcome="failed",
            msg=missing_required_lib("redis")
            + " On Debian and Ubuntu: apt-get install python3-redis. Or run the module where"
            " redis-py is installed, e.g. with delegate_to: localhost.",
        )
    settings = from_params(ConnectionSettings, module.params)
    options = from_params(MigrationOptions, module.params, dry_run=module.check_mode)
    mode = module.params["mode"]
    try:
        if mode == "preflight":
            facts = preflight(settings, options)
            warn_about(module, facts)
            module.exit_json(changed=False, outcome="ok", **facts)
        report = OPERATIONS[mode](settings, options)
    except MigrationError as exc:
        result = report_result(exc.report, module._diff) if exc.report else {}
        result.pop("msg", None)
        module.fail_json(msg=settings.scrub(exc), outcome="failed", **result)
    except Exception as exc:  # noqa: BLE001 - the operator gets a sentence, never a traceback
        module.fail_json(
            outcome="failed",
            msg=settings.scrub(
                f"Unexpected {type(exc).__name__} in mode {mode} on {settings.endpoint}: "
                f"{exc}. Rerunning is safe: every mode skips what is already done."
            ),
        )
    result = report_result(report, module._diff)
    warn_about(module, result)
    if report.ok:
        module.exit_json(outcome="ok", **result)
    module.fail_json(outcome="failed", **result)


if __name__ == "__main__":
    main()
