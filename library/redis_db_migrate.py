#!/usr/bin/python
"""Ansible module: migrate keys between Redis logical databases. The engine is in module_utils."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_db_migrate
short_description: Copy keys and merge sorted-set indexes from one Redis db to another
description:
  - Copies every key matching O(patterns) from O(source_db) to O(target_db) on one Redis server,
    keeping each key's type, value and exact expiry, and merges each sorted set listed in
    O(indexes) into the target member by member. Keys of any type are copied.
  - A key that already exists in the target is skipped and left untouched, never overwritten;
    a member already in a target index keeps its score.
  - Reads back everything it wrote in the same run and fails when something is missing.
  - Never writes to or deletes from the source db, and never touches keys that do not match.
  - O(mode=preflight) checks the server and the permissions without writing,
    O(mode=verify) checks that the target holds everything, and O(mode=cleanup) deletes from
    the source db the keys the target holds an identical copy of.
  - Per-key errors do not stop the run; they are counted and listed, and the task fails at the
    end with the full report.
  - Keeps the copy from making Redis evict keys or refuse the application's writes (the
    memory guard, O(memory_check)), and keeps each server call short, so the application
    keeps being served through the run.
  - Works on a standalone primary, given directly or found through Sentinel
    (O(sentinel_hosts)), waits for its replicas to acknowledge what it writes, and stops
    rather than say verified after a failover.
requirements:
  - redis (redis-py) >= 4.3 on the host that runs the module
  - Redis server 6.0 or newer, or Valkey, standalone (not cluster), primary (not replica), or the
    primary Sentinel names
options:
  mode:
    description:
      - V(migrate) copies keys, merges indexes and verifies what it wrote.
      - V(preflight) makes every check a migration makes before its first write (reachable,
        authenticated, primary, not cluster, both dbs exist, index types, permissions, copy
        strategy, memory) and returns the server facts and the memory estimate. It never writes.
        It also tries the commands the clean-up will send. It fails only on what the migration
        lacks, and warns of what the clean-up would lack (RV(permissions)), so a preflight
        without that warning means the clean-up may run too.
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
      - Run the memory guard, described in the notes. It needs INFO and MEMORY USAGE.
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
      - Each index is read a page a call in score order. Entries added to or removed from
        the source index meanwhile make the walk neither skip nor read twice an entry that
        keeps its score; an entry whose score changes may be read twice, or not at all.
    type: list
    elements: str
    default: []
  batch_size:
    description:
      - The most keys (and index members) one server call handles, and its SCAN COUNT, from 1
        to 10000; fewer at a low O(max_keys_per_second).
      - Below it, each call is sized by the server time it takes, not by a key count. Each
        call runs as one Lua script that blocks other clients while it runs, and measures its
        own time; the next call of its kind takes as many keys as fill about 20 ms. Calls
        start at 1000 keys (or O(batch_size) if lower), grow at most twofold from one call to
        the next, and shrink at once, for large values, a busy server or a slow strategy. Over
        a slow link large calls save round trips; the byte budget (O(max_batch_bytes)) bounds
        them too.
      - A call that writes also stops itself once it has run 25 ms (the copy checks every 64
        keys, the index merge every 1000 entries) and leaves the rest to the next call, since
        one call can take twice as long as the one before it. So each stays well under the
        50 ms at which replicas and Sentinel notice.
      - Where the server cannot time a call (C(TIME) frozen in scripts and no C(os.clock), or
        C(TIME) denied), calls keep their size.
    type: int
    default: 10000
  max_keys_per_second:
    description:
      - Pace the run to at most this many keys and index entries per second, for a busy
        production server. V(0) means no limit; not negative.
      - Every key and index entry the run goes through counts, in each pass (the copy, the
        index merge and, with O(full_verify), the second reading of both; in O(mode=cleanup),
        the keys compared and the index entries checked). A migration of K keys and E index
        entries takes (K + E) / O(max_keys_per_second) seconds, twice that with
        O(full_verify); O(mode=preflight) announces it (RV(pace)).
      - The calls are spread evenly, each handling at most a tenth of a second's worth of keys
        (O(max_keys_per_second) / 10, at least 1, at most O(batch_size)), so the server meets
        small calls at a steady pace rather than a full batch and then a long pause.
    type: int
    default: 0
  min_replicas:
    description:
      - Replicas that must acknowledge what the run writes (C(WAIT)). The run waits for them
        every 200 ms, the wait travelling ahead of its next call in the same round trip, and
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
  run_dir:
    description:
      - Directory, on the machine the module runs on, where a real O(mode=migrate) or
        O(mode=cleanup) records itself while it runs, so that a stop can find it, in a run file
        (mode 0600, the directory 0700) with its pid, mode, endpoint and start, never a
        secret, removed when the run ends.
      - A stop file beside the run file (the C(redis_db_migrate_stop) module writes it) or
        SIGTERM to the pid stops the run between two server calls, never in one. What the
        last call wrote is read back and acknowledged as usual; the result then has
        RV(outcome=stopped), the counts so far and RV(stopped), and is left beside the run
        file for the stop to report.
      - Unset, no run file is written; SIGTERM still stops the run that way.
    type: path
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
  - Finds keys with SCAN, never KEYS, and holds at most one batch of key names in memory.
  - Uses COPY on Redis 6.2 and newer, and DUMP + RESTORE where COPY is missing, renamed or
    denied (O(strategy)). Each batch runs as a Lua script. DUMP + RESTORE restores at the
    source's absolute expiry on every server version, so a replica or an AOF reload keeps it.
  - Before anything else, every mode tries each command it will send, in one pass that writes
    nothing, as the login user. A user who lacks some gets one refusal that names all of them,
    with one C(ACL SETUSER) line that grants them all. A command the server does not know
    (renamed or disabled, as managed services do) is named apart from one ACL denies, with the
    option that does without it, or the advice to have the provider enable it.
  - The memory guard. Before the first write it estimates what the copy adds, from the keys
    that will be copied (MEMORY USAGE of the matching keys the target lacks, read on the
    server), and refuses when that would leave less than O(memory_headroom) percent of
    C(maxmemory) free. Before every write it checks again that the write fits, and that the
    server has evicted nothing since the run started; otherwise it stops at once with the
    counts so far. Without C(maxmemory) it judges against the machine's free memory and says
    so.
  - Each server call is sized by the server time it takes (about 20 ms, O(batch_size) keys
    at most) and stops at a byte budget (O(max_batch_bytes)), so no call stalls the server,
    its replicas or Sentinel; a key larger than the budget goes alone. What a call wrote is
    read back in the round trip of the next call, so over a slow link each call costs one
    round trip.
  - High availability. With O(sentinel_hosts) it asks Sentinel for the primary and connects
    there; a replica it is pointed at is refused, naming its primary. Through the run it
    watches the primary. What it writes is acknowledged by O(min_replicas) replicas every
    50 ms and before it says verified; the wait goes ahead of its next call, in its round
    trip. It stops at once on a READONLY, LOADING or MASTERDOWN reply, on a connection that
    reopens to a node that is not the same primary (run_id and replication ID), and on a
    Sentinel announcing another primary. Before it says verified it asks the node and the
    Sentinels again. After a failover during the run the result is never verified; the
    message says what happened and to rerun, which copies only what the primary then lacks.
  - Nothing the module sent can run after it reports. Each call that writes carries a
    deadline on the server's own clock, read with C(TIME), which the user must therefore be
    allowed in O(mode=migrate) and O(mode=cleanup). The deadline is at most O(socket_timeout)
    after the call was sent, before the module can give up on it, and a call that reaches
    Redis later, held in a stalled network, does nothing. A call whose reply was lost may
    have run before its deadline; RV(unknown) says how much it may have done beyond the
    counts.
  - SCAN may return a key twice while the server resizes its tables. Such a key is handled
    twice and counted once as migrated and once as skipped; nothing is overwritten.
  - O(mode=cleanup) compares keys by type and content (hash fields and values, set members,
    list items in order, sorted-set members and scores, stream entries, strings byte for
    byte), whatever their encoding; expiries and stream consumer groups are not compared.
  - ACL key permissions are checked key by key, where the copy writes each key, so a key the
    user may read but not write fails alone; it is counted and listed in RV(errors), the rest
    of its batch is copied, and a rerun with the right permissions copies it. A matching key
    the user may not even read stops the run at the first call that meets it (the memory
    estimate, else the copy), naming the refusal; a rerun skips what was done.
  - Key names are shown escaped wherever they reach the operator (the diff, RV(msg),
    RV(samples), RV(errors), RV(indexes), RV(verification), RV(scope_warnings)), so that no
    name can move the cursor, clear or retitle the terminal or forge a line. A literal
    backslash shows as C(\\); a byte that is not UTF-8 as C(\xNN); a control or invisible
    formatting character (C0, DEL, C1 with ESC, CSI and OSC, bidi overrides, zero-width) as
    C(\n), C(\r), C(\t), C(\xNN) or C(\uNNNN). A name is cut after 200 characters, and
    the cut says how many bytes it left out, as in …(+99,800 bytes). Only what is shown is
    escaped; the keys are copied, compared and deleted by their exact bytes.
  - Given a secret (O(login_password), O(sentinel_password)), the module removes the
    C(AnsiballZ_redis_db_migrate.py) file it was started from as soon as it has read its
    arguments, also with C(ANSIBLE_KEEP_REMOTE_FILES). Ansible writes them into that file in
    clear and removes it only when the run ends, which a killed background run never does.
    A file it cannot remove is named in a warning.
seealso:
  # The collection names the module by FQCN (scripts/collection_tree.sh).
  - module: redis_db_migrate_stop
    description: Stops the migrations and clean-ups this module records in O(run_dir).
  - name: COPY
    description: The command the copy uses on Redis 6.2 and newer.
    link: https://redis.io/docs/latest/commands/copy/
  - name: SCAN
    description: How the keys matching O(patterns) are found, and why one may come twice.
    link: https://redis.io/docs/latest/commands/scan/
  - name: Redis ACL
    description: The permissions the login user needs; the module names any it lacks.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/
  - name: Redis Sentinel
    description: How O(sentinel_hosts) find the primary.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
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
    - V(ok), V(failed) or V(stopped), on every result. A task that records failures instead
      of failing (with C(failed_when) false) reads it; a result without it means the module
      never ran.
    - V(stopped), a failure, when the operator stopped the run (see O(run_dir)); its message
      says that Redis is consistent and that a rerun completes the run.
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
permissions:
  description:
    - What the login user may run, from the probe before anything else. V(user), the login
      user (V(default) without one); V(checked), the steps whose commands were tried
      (preflight checks V(migrate) and V(cleanup)); V(ready), per step, whether it may run;
      V(missing), per step, the commands it needs that cannot run.
    - V(denied), the commands ACL denies (NOPERM); V(renamed), those the server does not know
      (renamed or disabled, which no ACL grant brings back); V(keys), ACL key patterns
      (C(~...)) of keys the user may not touch.
    - V(acl_setuser), the one C(ACL SETUSER) line that grants every denied command and key
      pattern, or null; V(options), each option that would do without missing commands.
    - V(warnings), what a later step would be refused (in preflight, the clean-up), also
      issued as Ansible warnings.
    - On a refusal for missing commands, in any mode, the failed result holds it too.
  returned: mode is preflight, or the user lacks commands
  type: dict
  sample:
    user: storyart-migrator
    checked: [migrate, cleanup]
    ready: {migrate: false, cleanup: false}
    missing:
      migrate: [PING, SELECT, SCRIPT LOAD, EVALSHA, INFO]
      cleanup: [PING, SELECT, SCRIPT LOAD, EVALSHA, WATCH, MULTI, EXEC, UNWATCH]
    denied: [PING, SELECT, SCRIPT LOAD, EVALSHA, INFO, WATCH, MULTI, EXEC, UNWATCH]
    renamed: []
    keys: []
    acl_setuser: >-
      ACL SETUSER storyart-migrator +ping +select +script|load +evalsha +info +watch +multi
      +exec +unwatch
    options: ["memory_check: false runs migrate without INFO"]
    warnings: []
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
    - With O(mode=verify), V(found), V(missing) (in the source, not in the target),
      V(present) (in the source and the target), V(expired), V(failed) (could not be read).
    - Deprecated with O(mode=verify), to be removed in 2.0.0, V(migrated) and V(skipped),
      the same numbers as V(missing) and V(present) under the words of a migration.
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
  description:
    - Up to 10 key names for each of V(migrated), V(skipped) and V(expired) (with
      O(mode=verify), V(missing), V(present) and V(expired)), each shown escaped and cut as the
      notes say.
  returned: always
  type: dict
errors:
  description:
    - Up to 20 failures, each with the key and the server's error, both shown escaped as the
      notes say (the error cut after 500 characters). Counts are never capped.
  returned: always
  type: list
  elements: dict
scope_warnings:
  description:
    - What the patterns and indexes took in that deserves a look, also issued as Ansible
      warnings. A pattern that starts with a glob character (C(*), C(?), C([) or a
      backslash), which SCAN cannot narrow to one application's keys, so it may take in any
      key of the db.
      With O(mode=migrate) or O(mode=verify), an index whose entries were merged or checked
      while the patterns matched no key at all.
    - Empty when there is nothing to look at.
  returned: always
  type: list
  elements: str
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
unknown:
  description:
    - What the last call may have written beyond the counts, when its reply was lost (the
      connection was reset, or no reply came within O(socket_timeout)), since the call may
      have run all the same. V(keys), the most keys it may have copied or, with O(mode=cleanup),
      deleted (its batch); V(index_entries), the index entries it may have added (one page
      of the index) or, with O(mode=cleanup), those of the index it may have deleted;
      V(call), that in words. A rerun skips whatever it did.
    - V(keys=0), V(index_entries=0) and V(call=null) whenever every reply arrived.
  returned: always
  type: dict
  sample: {keys: 1000, index_entries: 0, call: "may have copied up to 1000 more keys (its batch)"}
pace:
  description:
    - V(max_keys_per_second), as asked.
    - With O(mode=preflight), what a migration will go through and for how long,
      V(matching_keys) (as RV(memory) counts them), V(index_entries) in the source indexes,
      V(passes) (2 with O(full_verify), which reads everything again, outside check mode), and
      V(seconds), (V(matching_keys) + V(index_entries)) x V(passes) / V(max_keys_per_second);
      null without a rate or when the keys could not be counted.
    - Otherwise what the run went through, V(keys_and_entries), every key and index entry of
      every pass, and V(per_second), that divided by RV(duration), the rate achieved.
  returned: always
  type: dict
  sample: {max_keys_per_second: 500, keys_and_entries: 12000, per_second: 500}
duration:
  description: Seconds the copy, merge and verification took.
  returned: always
  type: float
keys_per_second:
  description: Keys found divided by duration.
  returned: always
  type: int
stopped:
  description:
    - True when the operator stopped the run between two server calls (O(run_dir)); RV(msg)
      then says while doing what, and after how many keys and index entries.
  returned: mode is not preflight
  type: bool
"""

import inspect
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.redis_db_migration.api import (
    HAS_REDIS,
    MODES,
    ConnectionSettings,
    MigrationError,
    MigrationOptions,
    RunRecord,
    argument_spec,
    cleanup,
    from_params,
    migrate,
    preflight,
    verify,
)
from ansible.module_utils.redis_db_migration.redis_py import REDIS_IMPORT_ERROR


def module_rules():
    """The options, each defined once in the engine, and how they go together."""
    spec = argument_spec(ConnectionSettings, MigrationOptions)
    spec["mode"] = dict(type="str", choices=list(MODES), default="migrate")
    spec["run_dir"] = dict(type="path")
    return dict(
        argument_spec=spec,
        required_by={"client_key_file": "client_cert_file"},
        supports_check_mode=True,
    )


OPERATIONS = {"migrate": migrate, "verify": verify, "cleanup": cleanup}

# The whole fix for a host without redis-py, said once, here: the role passes the message on.
INSTALL_REDIS_PY = (
    " On Debian and Ubuntu: apt-get install python3-redis. With the role"
    " storyart_session_migration: Install python3-redis on this host with a real run of the same"
    " playbook with --tags python_redis -e storyart_session_migration_install_python_redis=true"
    " (a dry run installs nothing). Or run the module where redis-py is installed:"
    " delegate_to: localhost, or storyart_session_migration_run_on: controller with the role."
)


def report_result(report, diff):
    result = report.as_dict()
    result["changed"] = report.changed
    if diff and hasattr(report, "diff") and not getattr(report, "verify_only", False):
        result["diff"] = report.diff()
    return result


def warn_about(module, result):
    """Ansible prints a module's warnings for each host, whatever the callback: e.g. that the
    server has no maxmemory, or that a pattern may take in other applications' keys, which
    every run should show."""
    for warning in (result.get("memory") or {}).get("warnings", ()):
        module.warn(warning)
    for warning in result.get("scope_warnings", ()):
        module.warn(warning)
    for warning in (result.get("permissions") or {}).get("warnings", ()):
        module.warn(warning)


def remove_arguments_file(module):
    """Remove the AnsiballZ file this run was started from when its arguments hold a secret.

    The file holds them in clear, and Ansible removes it only when the run ends: a background
    run outlives a Ctrl-C of ansible-playbook, and a killed one never ends. Nothing reads the
    file once the module has its arguments: async_wrapper read its interpreter line before
    starting it, and only removes its directory afterwards. The file is the first frame's, and
    only a real AnsiballZ wrapper is touched: not a module run in-process or piped to Python.
    """
    if not module.no_log_values:
        return
    frame = inspect.currentframe()
    while frame is not None and frame.f_back is not None:
        frame = frame.f_back
    wrapper = frame.f_globals if frame is not None else {}
    path = wrapper.get("__file__") or ""
    if not wrapper.get("_ANSIBALLZ_WRAPPER") or not os.path.basename(path).startswith("AnsiballZ_"):
        return
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        module.warn(
            f"Could not remove {path}, which holds this task's arguments, its password among "
            f"them: {exc.strerror or exc}. Remove it; Ansible removes it when the run ends."
        )


def record_run(module, settings, mode):
    """The record of a real migration or clean-up (running.RunRecord): its run file in
    run_dir, which a stop finds, and SIGTERM as a stop request; None for the other modes and
    a dry run, which write nothing."""
    if mode not in ("migrate", "cleanup") or module.check_mode:
        return None
    run = RunRecord(
        module.params["run_dir"],
        mode=mode,
        endpoint=settings.scrub(settings.endpoint),
        source_db=module.params["source_db"],
        target_db=module.params["target_db"],
    )
    problem = run.start()
    if problem:
        module.warn(
            f"Cannot record this run in run_dir: {problem}. A stop cannot find it; "
            f"kill -TERM {os.getpid()} stops it between two server calls."
        )
    return run


def end(module, run, **result):
    """Exit with ``result``, a success only when its outcome is ok. A recorded run first
    leaves it, without its secrets, for the stop that asked for it, and removes its run file."""
    if run is not None:
        run.end(remove_values(result, module.no_log_values))
    if result["outcome"] == "ok":
        module.exit_json(**result)
    module.fail_json(**result)


def main():
    module = AnsibleModule(**module_rules())
    remove_arguments_file(module)
    if not HAS_REDIS:
        module.fail_json(
            outcome="failed",
            # Ansible's sentence ends without a full stop, in the versions this module supports.
            msg=missing_required_lib("redis").rstrip(".") + "." + INSTALL_REDIS_PY,
            exception=REDIS_IMPORT_ERROR,
        )
    settings = from_params(ConnectionSettings, module.params)
    options = from_params(MigrationOptions, module.params, dry_run=module.check_mode)
    mode = module.params["mode"]
    run = record_run(module, settings, mode)
    try:
        if mode == "preflight":
            facts = preflight(settings, options)
            warn_about(module, facts)
            module.exit_json(changed=False, outcome="ok", **facts)
        report = OPERATIONS[mode](
            settings, options, stop_requested=run.stop_requested if run else None
        )
    except MigrationError as exc:
        result = report_result(exc.report, module._diff) if exc.report else {}
        result.pop("msg", None)
        result.update(exc.fields)
        end(module, run, msg=settings.scrub(exc), outcome="failed", **result)
    except Exception as exc:  # noqa: BLE001 - the operator gets a sentence, never a traceback
        end(
            module,
            run,
            outcome="failed",
            msg=settings.scrub(
                f"Unexpected {type(exc).__name__} in mode {mode} on {settings.endpoint}: "
                f"{exc}. Rerunning is safe: every mode skips what is already done."
            ),
        )
    result = report_result(report, module._diff)
    warn_about(module, result)
    outcome = "ok" if report.ok else "stopped" if report.stopped else "failed"
    end(module, run, outcome=outcome, **result)


if __name__ == "__main__":
    main()
