"""Copy keys from one Redis logical database to another, safely and fast.

This is the migration engine behind the ``redis_db_migrate`` Ansible module. It is plain Python
over redis-py with no Ansible import, so the module, the tests and the benchmark all call it.

How a migration works:

* Preflight (``connect``, ``check_memory``): reach and authenticate, read the server's facts,
  refuse a cluster, a replica, a database number the server does not have, an index key that
  is not a sorted set, and a copy that would not fit in memory. Pick the copy strategy: COPY
  where the server has it and the user may run it, else DUMP + RESTORE.
* Keys: SCAN the source db once per pattern and hand each batch of names to one Lua script
  call, which copies each key without REPLACE and tells, atomically, whether it was copied, was
  already in the target, or has gone from the source. Only a batch of names is ever held.
* Indexes: one script call per ZSCAN page of each source index merges it into the target
  index with ZADD NX, so a member already in the target keeps its score.
* Verify: after each batch is written, read the target back in a separate round trip; with
  ``full_verify``, read everything again at the end.

A migration never writes to or deletes from the source db; the dry run runs the same scripts
with the writes left out. ``verify`` only reads; ``cleanup`` deletes from the source only keys
whose copy in the target is byte-identical.
"""

from __future__ import annotations

import os
import re
import ssl
import time
import traceback
from dataclasses import asdict, dataclass, field
from itertools import islice

try:
    import redis
    from redis import exceptions as redis_errors
except ImportError:
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:  # redis-py before 4.0: Migration() refuses it by its version
        NoBackoff = Retry = None

STRATEGIES = ("auto", "copy", "dump-restore")
# The oldest redis-py supported: Debian 12's python3-redis.
MIN_REDIS_PY = (4, 3)
MAX_BATCH_SIZE = 10000
SAMPLE_SIZE = 10
ERROR_LIST_SIZE = 20

# Outcome codes returned by the copy script for each key.
COPIED, PRESENT, GONE = 0, 1, 2

# KEYS: a batch of key names found in the source db.
# ARGV: source db, target db, mode ('plan', 'copy', 'restore' or 'restore-abs').
# 'restore-abs' (Redis 7.0+) restores at the source's absolute expiry (PEXPIRETIME + ABSTTL);
# 'restore' (older servers) uses the relative PTTL, which may add a millisecond.
# Returns one reply per key: 0 copied (or, when planning, to copy), 1 already in the target,
# 2 gone from the source (expired), or the error text of a write that failed.
# The whole batch runs atomically, so the classification cannot race with the write. A write
# comes first and tells most keys apart by itself: COPY without REPLACE answers 0 when the
# target has the key or the source lost it, RESTORE without REPLACE refuses a key the target
# has (BUSYKEY), and DUMP of a gone key is nil. A refused write (e.g. OOM, which Redis answers
# even when nothing would be written) of a key the target already has is a skip, so a rerun
# on a full server still succeeds.
COPY_SCRIPT = """
local src, dst, mode = ARGV[1], ARGV[2], ARGV[3]
local out = {}
redis.call('SELECT', src)
if mode == 'plan' then
  for i, key in ipairs(KEYS) do out[i] = 2 * (1 - redis.call('EXISTS', key)) end
  redis.call('SELECT', dst)
  for i, key in ipairs(KEYS) do
    if out[i] == 0 then out[i] = redis.call('EXISTS', key) end
  end
elseif mode == 'copy' then
  for i, key in ipairs(KEYS) do
    local r = redis.pcall('COPY', key, key, 'DB', dst)
    if r == 1 then
      out[i] = 0
    elseif r == 0 then
      out[i] = 1 + (1 - redis.call('EXISTS', key))
    else
      redis.call('SELECT', dst)
      out[i] = redis.call('EXISTS', key) == 1 and 1 or r.err
      redis.call('SELECT', src)
    end
  end
else
  local absolute = mode == 'restore-abs'
  for i, key in ipairs(KEYS) do
    local payload = redis.pcall('DUMP', key)
    if type(payload) == 'table' then
      out[i] = payload.err
    elseif not payload then
      out[i] = 2
    else
      local ttl = redis.call(absolute and 'PEXPIRETIME' or 'PTTL', key)
      if ttl == 0 and not absolute then
        -- expires within this millisecond: RESTORE with 0 would make it persistent
        out[i] = 2
      else
        redis.call('SELECT', dst)
        local r
        if ttl < 0 then
          r = redis.pcall('RESTORE', key, 0, payload)
        elseif absolute then
          r = redis.pcall('RESTORE', key, ttl, payload, 'ABSTTL')
        else
          r = redis.pcall('RESTORE', key, ttl, payload)
        end
        -- a status reply ({ok = 'OK'}) is a table too: only an error replaces the outcome
        if type(r) == 'table' and r.err then
          out[i] = redis.call('EXISTS', key) == 1 and 1 or r.err
        else
          out[i] = 0
        end
        redis.call('SELECT', src)
      end
    end
  end
end
return out
"""

# KEYS[1]: the index sorted set. ARGV: source db, target db, mode ('plan' or 'merge'), ZSCAN
# cursor, ZSCAN COUNT. Reads one page of the source index and merges it into the target index
# on the server: members already in the target keep their score (ZADD NX, whose reply counts
# the members it added). Returns {next cursor, added, present, orphans, members, error}:
# orphans are members whose session key exists in neither db, merged all the same; members
# are the page's names, for the read-back; error is '' or why the merge failed.
INDEX_SCRIPT = """
local src, dst, mode, index = ARGV[1], ARGV[2], ARGV[3], KEYS[1]
if redis.replicate_commands then redis.replicate_commands() end
redis.call('SELECT', src)
local page = redis.call('ZSCAN', index, ARGV[4], 'COUNT', ARGV[5])
local flat, members, pairs = page[2], {}, {}
for i = 1, #flat, 2 do
  members[#members + 1] = flat[i]
  pairs[#pairs + 1] = flat[i + 1]
  pairs[#pairs + 1] = flat[i]
end
local added, orphans, elsewhere, err = 0, 0, {}, ''
redis.call('SELECT', dst)
-- One EXISTS of the whole page settles the usual case: every session is in the target.
local in_target = 0
for first = 1, #members, 1000 do
  local last = math.min(first + 999, #members)
  in_target = in_target + redis.call('EXISTS', unpack(members, first, last))
end
if in_target < #members then
  for _, member in ipairs(members) do
    if redis.call('EXISTS', member) == 0 then elsewhere[#elsewhere + 1] = member end
  end
end
if mode == 'plan' then
  for _, member in ipairs(members) do
    if not redis.call('ZSCORE', index, member) then added = added + 1 end
  end
else
  for first = 1, #pairs, 2000 do
    local r = redis.pcall('ZADD', index, 'NX', unpack(pairs, first, math.min(first + 1999, #pairs)))
    if type(r) == 'table' then
      -- Refused (e.g. OOM): not an error if the target already has every one of them.
      for i = first + 1, math.min(first + 1999, #pairs), 2 do
        if not redis.call('ZSCORE', index, pairs[i]) then err = r.err end
      end
      if err ~= '' then break end
    else
      added = added + r
    end
  end
end
redis.call('SELECT', src)
for _, member in ipairs(elsewhere) do orphans = orphans + 1 - redis.call('EXISTS', member) end
return {page[1], added, #members - added, orphans, members, err}
"""

# KEYS: a batch of key names found in the source db. ARGV: source db, target db, mode ('plan'
# or 'delete'). Returns one code per key: 0 the target holds an identical copy (same DUMP
# payload, which includes the type), so the source key is deleted (or, planning, would be);
# 1 the target's copy differs; 2 the target has no copy; 3 gone from the source. Only keys
# with code 0 are ever deleted, with UNLINK, in the same atomic script as their comparison.
CLEANUP_SCRIPT = """
local src, dst, mode = ARGV[1], ARGV[2], ARGV[3]
local out, same = {}, {}
for i, key in ipairs(KEYS) do
  redis.call('SELECT', src)
  local mine = redis.call('DUMP', key)
  if not mine then
    out[i] = 3
  else
    redis.call('SELECT', dst)
    local theirs = redis.call('DUMP', key)
    if not theirs then out[i] = 2
    elseif theirs ~= mine then out[i] = 1
    else out[i] = 0; same[#same + 1] = key end
  end
end
if mode == 'delete' and #same > 0 then
  redis.call('SELECT', src)
  for first = 1, #same, 1000 do
    redis.call('UNLINK', unpack(same, first, math.min(first + 999, #same)))
  end
end
return out
"""

MEMORY_SAMPLE = 200
# Copying is refused when its estimate would leave less than this share of the limit free.
MEMORY_HEADROOM = 0.10


class MigrationError(Exception):
    """A problem the operator must fix. The message says what is wrong and what to do.

    ``report`` holds the counts so far when the run stopped part-way.
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to reach Redis. The password never appears in repr() or messages."""

    host: str = "localhost"
    port: int = 6379
    unix_socket: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    validate_certs: bool = True
    ca_certs: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    connect_timeout: float = 5.0
    socket_timeout: float = 30.0

    @property
    def endpoint(self):
        if self.unix_socket:
            return f"unix:{self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def validate(self):
        if "://" in self.host or "@" in self.host:
            # Not echoed: a pasted redis:// URL carries the password.
            raise MigrationError(
                "login_host looks like a URL, which may carry credentials: give only the host "
                "name or address, the user in login_user and the password in login_password."
            )
        if self.unix_socket and self.tls:
            raise MigrationError(
                "tls cannot be used with login_unix_socket: a unix socket is local and "
                "unencrypted. Drop one of the two options."
            )
        for option in ("ca_certs", "client_cert_file", "client_key_file"):
            path = getattr(self, option)
            if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
                raise MigrationError(
                    f"{option} {path!r} is not a readable file on the host running the module. "
                    f"Give the path of a readable PEM file."
                )
        if self.client_key_file and not self.client_cert_file:
            raise MigrationError(
                "client_key_file is set without client_cert_file: give the client certificate "
                "too, or neither."
            )
        for option in ("connect_timeout", "socket_timeout"):
            if getattr(self, option) <= 0:
                raise MigrationError(f"{option} must be a positive number of seconds.")

    def client(self, db):
        """A redis-py client on ``db`` that returns bytes and never retries on its own."""
        kwargs = dict(
            db=db,
            username=self.username,
            password=self.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            # A retried script could have run once already: fail instead, a rerun is safe.
            retry=Retry(NoBackoff(), 0),
        )
        if self.unix_socket:
            kwargs["unix_socket_path"] = self.unix_socket
        else:
            kwargs.update(host=self.host, port=self.port)
        if self.tls:
            kwargs.update(
                ssl=True,
                ssl_cert_reqs="required" if self.validate_certs else "none",
                ssl_check_hostname=self.validate_certs,
                ssl_ca_certs=self.ca_certs,
                ssl_certfile=self.client_cert_file,
                ssl_keyfile=self.client_key_file,
            )
        return redis.Redis(**kwargs)

    def scrub(self, text):
        """Remove the password from ``text``, whatever produced it."""
        text = str(text)
        if self.password:
            text = text.replace(self.password, "********")
        return text


@dataclass(frozen=True)
class MigrationOptions:
    source_db: int
    target_db: int
    patterns: tuple
    indexes: tuple = ()
    batch_size: int = 1000
    strategy: str = "auto"
    dry_run: bool = False
    memory_check: bool = True
    max_keys_per_second: int = 0
    full_verify: bool = False

    def validate(self):
        for option in ("source_db", "target_db"):
            if not isinstance(getattr(self, option), int) or getattr(self, option) < 0:
                raise MigrationError(
                    f"{option} must be a database number of 0 or more, not "
                    f"{getattr(self, option)!r}."
                )
        if self.source_db == self.target_db:
            raise MigrationError(
                f"source_db and target_db are both {self.source_db}: a db cannot be migrated "
                f"onto itself. Set source_db to the old db (StoryArt: 1) and target_db to the "
                f"new one (StoryArt: 0)."
            )
        if not self.patterns or not all(self.patterns):
            raise MigrationError(
                "patterns must list at least one non-empty glob pattern, e.g. 'storyart:session:*'."
            )
        if not all(self.indexes):
            raise MigrationError("indexes must not contain an empty key name.")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise MigrationError(
                f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {self.batch_size}."
            )
        if self.strategy not in STRATEGIES:
            raise MigrationError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}."
            )
        if self.max_keys_per_second < 0:
            raise MigrationError(
                f"max_keys_per_second must be 0 (no limit) or more, not {self.max_keys_per_second}."
            )


@dataclass
class ServerFacts:
    version: tuple
    role: str
    cluster: bool
    databases: int | None = None
    used_memory: int | None = None
    maxmemory: int | None = None
    total_system_memory: int | None = None

    @property
    def version_text(self):
        return ".".join(str(part) for part in self.version) or "unknown"


@dataclass
class IndexReport:
    name: bytes
    found: int = 0
    added: int = 0
    present: int = 0
    orphans: int = 0
    failed: int = 0
    missing: int = 0

    def as_dict(self):
        return {**asdict(self), "name": display(self.name)}


@dataclass
class Report:
    """What a run found and did. Counts are exact; samples and error lists are capped."""

    SAMPLE_KINDS = ()

    endpoint: str
    source_db: int
    target_db: int
    dry_run: bool
    server_version: str = "unknown"
    found: int = 0
    expired: int = 0
    failed: int = 0
    samples: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    duration: float = 0.0
    aborted: str | None = None

    def __post_init__(self):
        for kind in self.SAMPLE_KINDS:
            self.samples.setdefault(kind, [])

    @property
    def keys_per_second(self):
        return round(self.found / self.duration) if self.duration > 0 else 0

    def add_sample(self, kind, key):
        if len(self.samples[kind]) < SAMPLE_SIZE:
            self.samples[kind].append(display(key))

    def add_error(self, key, error):
        if len(self.errors) < ERROR_LIST_SIZE:
            self.errors.append({"key": display(key), "error": error})

    def tally(self, keys, outcomes, kinds):
        """Count a batch's outcome codes into the fields ``kinds`` names, and sample their keys.

        Counted a code at a time, not a key at a time: this runs for every key of a million.
        Returns the (key, outcome) pairs of no known code: the errors.
        """
        tallied = 0
        for code, kind in kinds.items():
            hits = outcomes.count(code)
            tallied += hits
            setattr(self, kind, getattr(self, kind) + hits)
            room = SAMPLE_SIZE - len(self.samples.get(kind, ())) if kind in self.samples else 0
            if hits and room > 0:
                picked = [key for key, outcome in zip(keys, outcomes) if outcome == code]
                for key in picked[:room]:
                    self.add_sample(kind, key)
        if tallied == len(keys):
            return []
        return [(key, outcome) for key, outcome in zip(keys, outcomes) if outcome not in kinds]

    def _head(self, what):
        dry = "DRY RUN, nothing written: " if self.dry_run else ""
        return (
            f"{dry}{what} db {self.source_db} -> db {self.target_db} on {self.endpoint} "
            f"(Redis {self.server_version})"
        )

    def _tail(self, parts):
        parts.append(f"{self.duration:.2f}s, {self.keys_per_second} keys/s")
        if self.aborted:
            parts.append("STOPPED before the end")
        return "; ".join(parts)

    def _as_dict(self, samples, **specific):
        """The result returned on every run, changed or not, with the same keys.

        Counts are nested: Ansible reads top-level ``skipped`` and ``failed`` as task status.
        """
        return dict(
            endpoint=self.endpoint,
            source_db=self.source_db,
            target_db=self.target_db,
            dry_run=self.dry_run,
            server_version=self.server_version,
            **specific,
            samples=samples,
            errors=self.errors,
            duration=round(self.duration, 3),
            keys_per_second=self.keys_per_second,
            aborted=self.aborted,
            msg=self.summary(),
        )


@dataclass
class MigrationReport(Report):
    """A migration, or with ``verify_only`` an independent check that nothing is left to copy.

    In a verification, ``migrated`` and the index ``added`` count what is still missing.
    """

    SAMPLE_KINDS = ("migrated", "skipped", "expired")

    verify_only: bool = False
    strategy: str = "unknown"
    migrated: int = 0
    skipped: int = 0
    indexes: list = field(default_factory=list)
    expired_after_copy: int = 0
    missing: int = 0
    missing_sample: list = field(default_factory=list)
    memory: dict | None = None
    full_check: dict | None = None

    def index_total(self, name):
        return sum(getattr(index, name) for index in self.indexes)

    @property
    def changed(self):
        return not self.verify_only and (self.migrated > 0 or self.index_total("added") > 0)

    @property
    def verified(self):
        """True when everything is in the target; None when this run cannot tell."""
        if self.aborted:
            return None
        if self.verify_only:
            return self.migrated + self.index_total("added") + self.failed == 0
        if self.dry_run:
            return None
        return self.missing == 0 and (self.full_check is None or self.full_check["verified"])

    @property
    def ok(self):
        return (
            not self.aborted
            and self.failed == 0
            and self.index_total("failed") == 0
            and self.verified is not False
        )

    def add_missing(self, what):
        self.missing += 1
        if len(self.missing_sample) < ERROR_LIST_SIZE:
            self.missing_sample.append(what)

    def summary(self):
        """One line an operator reads at a glance: the old script's "Migration Summary"."""
        return self._tail(self._verify_parts() if self.verify_only else self._migrate_parts())

    def _migrate_parts(self):
        would = "would be " if self.dry_run else ""
        target = self.target_db
        parts = [
            self._head("migrate") + f", strategy {self.strategy}",
            f"keys found {self.found}, {would}migrated {self.migrated}, {would}skipped "
            f"(already in db {target}) {self.skipped}, expired {self.expired}, "
            f"failed {self.failed}",
        ]
        parts.extend(
            f"index {display(index.name)}: {index.found} entries, {would}added "
            f"{index.added}, already present {index.present}, without session key "
            f"{index.orphans}, failed {index.failed}"
            for index in self.indexes
        )
        if self.verified is None:
            parts.append("verification not run" + (" (dry run)" if self.dry_run else ""))
        elif self.verified:
            full = "; every session read again: all in db {target}" if self.full_check else ""
            parts.append("verified" + full.format(target=target))
        elif self.missing:
            parts.append(f"VERIFICATION FAILED: {self.missing} missing in db {target}")
        else:
            check = self.full_check
            parts.append(
                f"VERIFICATION FAILED: read again, {check['missing']} keys and "
                f"{check['index_missing']} index entries of db {self.source_db} are not in db "
                f"{target}"
            )
        failures = self.failed + self.index_total("failed")
        if failures:
            parts.append(
                f"FAILED: {failures} keys or index entries could not be copied, see 'errors'; "
                f"fix the cause and rerun, done work is skipped"
            )
        return parts

    def _verify_parts(self):
        target = self.target_db
        parts = [
            self._head("verify"),
            f"keys found {self.found}, in db {target} {self.skipped}, MISSING from db "
            f"{target} {self.migrated}, expired {self.expired}, unreadable {self.failed}",
        ]
        parts.extend(
            f"index {display(index.name)}: {index.found} entries, in db {target} "
            f"{index.present}, MISSING {index.added}"
            for index in self.indexes
        )
        if self.verified:
            parts.append(f"verified: everything in db {self.source_db} is in db {target}")
        elif self.verified is False:
            parts.append(
                f"NOT VERIFIED: {self.migrated} keys and {self.index_total('added')} index "
                f"entries are not in db {target} yet; run the migration"
            )
        return parts

    def as_dict(self):
        samples = self.samples
        if self.verify_only:
            # In a verification the outcomes mean "missing" and "present".
            samples = dict(
                missing=samples["migrated"], present=samples["skipped"], expired=samples["expired"]
            )
        return self._as_dict(
            samples,
            mode="verify" if self.verify_only else "migrate",
            strategy=self.strategy,
            counts=dict(
                found=self.found,
                migrated=self.migrated,
                skipped=self.skipped,
                expired=self.expired,
                failed=self.failed,
            ),
            index_counts={
                name: self.index_total(name)
                for name in ("found", "added", "present", "orphans", "failed")
            },
            indexes=[index.as_dict() for index in self.indexes],
            verified=self.verified,
            verification=dict(
                missing=self.missing,
                missing_sample=self.missing_sample,
                expired_after_copy=self.expired_after_copy,
            ),
            memory=self.memory,
            full_check=self.full_check,
        )

    def diff(self):
        """A before/after view of the target db for Ansible's --diff, with capped samples."""
        header = f"redis://{self.endpoint}/{self.target_db}"
        before, after = [], []
        for index in self.indexes:
            name = display(index.name)
            before.append(f"index {name}: {index.present} of the source entries present")
            after.append(
                f"index {name}: {index.present + index.added} of the source entries present "
                f"(+{index.added})"
            )
        after.extend(f"+ {key}" for key in self.samples["migrated"])
        hidden = self.migrated - len(self.samples["migrated"])
        if hidden > 0:
            after.append(f"+ ... and {hidden} more keys")
        return dict(
            before_header=header,
            after_header=header,
            before="\n".join(before) + "\n",
            after="\n".join(after) + "\n",
        )


@dataclass
class IndexCleanup:
    name: bytes
    found: int = 0
    missing: int = 0
    deleted: bool = False
    failed: bool = False
    kept_because: str | None = None

    def as_dict(self):
        return {**asdict(self), "name": display(self.name)}


@dataclass
class CleanupReport(Report):
    """Source keys deleted because the target holds an identical copy, and what was kept."""

    SAMPLE_KINDS = ("deleted", "kept_different", "kept_missing")

    deleted: int = 0
    kept_different: int = 0
    kept_missing: int = 0
    indexes: list = field(default_factory=list)

    @property
    def changed(self):
        return self.deleted > 0 or any(index.deleted for index in self.indexes)

    @property
    def ok(self):
        return (
            not self.aborted
            and self.failed == 0
            and not any(index.failed for index in self.indexes)
        )

    def summary(self):
        would = "would be " if self.dry_run else ""
        source = self.source_db
        parts = [
            self._head("clean up"),
            f"keys found in db {source} {self.found}, {would}deleted {self.deleted} (identical "
            f"copy in db {self.target_db}), kept {self.kept_different} (db {self.target_db} "
            f"copy differs), kept {self.kept_missing} (no copy in db {self.target_db}), "
            f"expired {self.expired}, failed {self.failed}",
        ]
        for index in self.indexes:
            verdict = f"{would}deleted" if index.deleted else f"kept ({index.kept_because})"
            parts.append(
                f"index {display(index.name)}: {index.found} entries, {index.missing} missing "
                f"from db {self.target_db}, {verdict}"
            )
        if self.failed:
            parts.append(
                f"FAILED: {self.failed} keys could not be checked or deleted, see 'errors'"
            )
        return self._tail(parts)

    def as_dict(self):
        return self._as_dict(
            self.samples,
            mode="cleanup",
            counts=dict(
                found=self.found,
                deleted=self.deleted,
                kept_different=self.kept_different,
                kept_missing=self.kept_missing,
                expired=self.expired,
                failed=self.failed,
            ),
            indexes=[index.as_dict() for index in self.indexes],
        )

    def diff(self):
        header = f"redis://{self.endpoint}/{self.source_db}"
        before = [f"{self.deleted} keys with an identical copy in db {self.target_db}"]
        before.extend(f"- {key}" for key in self.samples["deleted"])
        hidden = self.deleted - len(self.samples["deleted"])
        if hidden > 0:
            before.append(f"- ... and {hidden} more keys")
        before.extend(f"- index {display(index.name)}" for index in self.indexes if index.deleted)
        after = [f"0 keys with an identical copy in db {self.target_db}"]
        return dict(
            before_header=header,
            after_header=header,
            before="\n".join(before) + "\n",
            after="\n".join(after) + "\n",
        )


def display(name):
    """A key name as text for reports: binary bytes are shown escaped, never lost."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return str(name)


def as_bytes(name):
    return name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")


def glob_matcher(pattern):
    """A predicate telling whether Redis' SCAN MATCH ``pattern`` matches a key name.

    It is used only to skip a key that an earlier pattern of the same run has handled, so it
    must never claim a match Redis would not make: that key would never be migrated. Where
    Redis differs by platform (range bounds of 0x80 and above compare as signed chars on x86,
    unsigned on ARM), it claims a match only when both readings agree. Missing a match is
    harmless: the key is then handled twice, and the second time counts as skipped.
    """
    regex = re.compile(b"".join(_glob_parts(pattern)), re.DOTALL)
    # SCAN matches the empty key name only with the pattern '*', which it does not even check.
    return lambda key: pattern == b"*" if key == b"" else regex.fullmatch(key) is not None


def _glob_parts(pattern):
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i : i + 1]
        if char == b"*":
            yield b".*"
        elif char == b"?":
            yield b"."
        elif char == b"\\" and i + 1 < n:
            i += 1
            yield re.escape(pattern[i : i + 1])
        elif char == b"[":
            i, char_class = _glob_class(pattern, i + 1)
            yield char_class
        else:
            yield re.escape(char)
        i += 1


def _glob_class(pattern, i):
    """Translate the ``[...]`` class starting after its ``[``; returns (index of ``]``, regex)."""
    n = len(pattern)
    negate = pattern[i : i + 1] == b"^"
    if negate:
        i += 1
    members = set()
    while i < n and pattern[i : i + 1] != b"]":
        if pattern[i : i + 1] == b"\\" and i + 1 < n:
            i += 1
            members.add(pattern[i])
        elif i + 2 < n and pattern[i + 1 : i + 2] == b"-":
            members |= _glob_range(pattern[i], pattern[i + 2], widest=negate)
            i += 2
        else:
            members.add(pattern[i])
        i += 1
    if not members:
        return i, b"." if negate else b"(?!)"
    body = b"".join(re.escape(bytes([byte])) for byte in sorted(members))
    return i, b"[" + (b"^" if negate else b"") + body + b"]"


def _glob_range(first, last, widest):
    """Bytes in a class range under both signed and unsigned char readings (see glob_matcher).

    A negated class must exclude every byte either reading holds, so it takes the union.
    """

    def signed(byte):
        return byte - 256 if byte > 127 else byte

    low, high = sorted((first, last))
    unsigned = set(range(low, high + 1))
    low, high = sorted((signed(first), signed(last)))
    as_signed = {byte for byte in range(256) if low <= signed(byte) <= high}
    return unsigned | as_signed if widest else unsigned & as_signed


def batched(iterable, size):
    iterator = iter(iterable)
    while True:
        batch = list(islice(iterator, size))
        if not batch:
            return
        yield batch


def describe_error(exc, settings, action):
    """An operator-facing sentence for a redis-py exception: what failed, where, what to do.

    The whole sentence is scrubbed: the password may hide in the user or host name too.
    """
    return settings.scrub(_describe(exc, settings, action))


def _describe(exc, settings, action):
    endpoint = settings.endpoint
    text = settings.scrub(exc).rstrip(".")
    if is_auth_failure(exc):
        return _authentication_failure(settings, text)
    if isinstance(exc, redis_errors.TimeoutError):
        return (
            f"Redis at {endpoint} did not answer within the timeout while {action}: {text}. "
            f"The server may be busy, paused or unreachable; retry later or raise "
            f"socket_timeout (now {settings.socket_timeout}s) and connect_timeout "
            f"(now {settings.connect_timeout}s)."
        )
    if isinstance(exc, redis_errors.ConnectionError):
        if _is_tls_failure(exc):
            return (
                f"TLS handshake with Redis at {endpoint} failed: {text}. Check that ca_certs "
                f"is the CA that signed the server certificate, that the certificate names "
                f"{settings.host}, and client_cert_file/client_key_file if the server asks "
                f"for a client certificate. validate_certs: false turns checking off (unsafe)."
            )
        hint = "" if settings.tls else " If the server only accepts TLS, set tls: true."
        return (
            f"Cannot connect to Redis at {endpoint} while {action}: {text}. Check that "
            f"redis-server is running there and that login_host/login_port (or "
            f"login_unix_socket) are right.{hint}"
        )
    if isinstance(exc, redis_errors.ResponseError) and is_noperm(exc):
        user = settings.username or "default"
        return (
            f"User '{user}' on Redis at {endpoint} lacks a permission needed while {action}: "
            f"{text}. Grant it with ACL SETUSER or use another login_user."
        )
    return f"Redis at {endpoint} refused while {action}: {text}"


def _authentication_failure(settings, text):
    if not settings.password:
        return (
            f"Authentication to Redis at {settings.endpoint} failed: the server requires a "
            f"password and login_password is not set. Set login_password (and login_user for "
            f"an ACL user)."
        )
    return (
        f"Authentication to Redis at {settings.endpoint} as user "
        f"'{settings.username or 'default'}' failed: {text}. Check login_user and "
        f"login_password (the password is never shown)."
    )


def is_auth_failure(exc):
    """Whether the server refused the credentials (redis-py 4.x reports some as ResponseError)."""
    if isinstance(exc, redis_errors.AuthenticationError):
        return True
    text = str(exc)
    return isinstance(exc, redis_errors.ResponseError) and (
        text.startswith(("WRONGPASS", "NOAUTH"))
        or "invalid password" in text
        or "without any password configured" in text
    )


def is_noperm(exc):
    """Whether the server refused for lack of ACL permission (redis-py 8 strips the code)."""
    if getattr(exc, "status_code", None) == "NOPERM":
        return True
    denied = getattr(redis_errors, "NoPermissionError", ())
    text = str(exc)
    # Inside a Lua script a denied command reads "The user executing the script can't run...".
    return isinstance(exc, denied) or text.startswith("NOPERM") or "can't run this command" in text


def _is_tls_failure(exc):
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "SSL" in text or "certificate" in text.lower()


def _command_permitted(client, *args):
    """Whether the server knows a command and lets this user run it.

    The probes are chosen so that the server rejects them only after its command lookup and
    ACL check, without writing anything.
    """
    try:
        client.execute_command(*args)
    except redis_errors.ResponseError as exc:
        return not (is_noperm(exc) or "unknown command" in str(exc))
    return True


class Migration:
    """One run against one Redis endpoint. Use ``connect()``, then ``run()``."""

    PROBE_KEY = b"storyart-migration:probe:never-written"

    def __init__(self, settings, options):
        if not HAS_REDIS:
            raise MigrationError("the Python library 'redis' (redis-py) is not installed.")
        found = tuple(int(part) for part in re.findall(r"\d+", redis.__version__)[:2])
        if found < MIN_REDIS_PY:
            raise MigrationError(
                f"redis-py {redis.__version__} is installed where the module runs; it needs "
                f"{'.'.join(map(str, MIN_REDIS_PY))} or newer (Debian 12's python3-redis). "
                f"Upgrade it, or run the module on the controller."
            )
        settings.validate()
        options.validate()
        self.settings = settings
        self.options = options
        self.patterns = [as_bytes(p) for p in options.patterns]
        self.index_names = [as_bytes(i) for i in options.indexes]
        self.report = None
        self.strategy = "none"
        self.action = "connecting"
        self.facts = None
        self.source = None
        self.target = None

    # Preflight -------------------------------------------------------------------------------

    def connect(self, copying=True):
        """Reach the server and check it can take this run; when copying, pick the strategy."""
        admin = self.settings.client(db=0)
        self._call(admin.ping, "connecting")
        self.facts = self._server_facts(admin)
        admin.close()
        self._check_server()
        self.source = self._open_db(self.options.source_db)
        self.target = self._open_db(self.options.target_db)
        self._check_index_types()
        self.strategy = self._pick_strategy() if copying else "none"
        self.copy_script = self.source.register_script(COPY_SCRIPT)
        self.index_script = self.source.register_script(INDEX_SCRIPT)
        self.cleanup_script = self.source.register_script(CLEANUP_SCRIPT)
        # Run the copy script on nothing: proves scripting is allowed before any key is touched.
        self._call(lambda: self._copy_batch([], "plan"), "running a Lua script (EVALSHA)")
        return self.facts

    def _call(self, func, action):
        try:
            return func()
        except redis_errors.RedisError as exc:
            raise MigrationError(describe_error(exc, self.settings, action)) from None

    def _server_facts(self, client):
        try:
            info = client.info()
        except redis_errors.ResponseError as exc:
            if not is_noperm(exc):
                raise MigrationError(describe_error(exc, self.settings, "reading INFO")) from None
            info = self._hello()
        except redis_errors.RedisError as exc:
            raise MigrationError(describe_error(exc, self.settings, "reading INFO")) from None
        version = tuple(int(p) for p in re.findall(rb"\d+", as_bytes(info["redis_version"]))[:3])
        facts = ServerFacts(
            version=version,
            role=str(info.get("role", "master")),
            cluster=bool(int(info.get("cluster_enabled", 0))),
            used_memory=info.get("used_memory"),
            maxmemory=info.get("maxmemory"),
            total_system_memory=info.get("total_system_memory"),
        )
        try:
            value = client.config_get("databases")
        except redis_errors.ResponseError:
            value = {}  # CONFIG denied or renamed: SELECT will tell instead
        for name, number in value.items():
            if display(name) == "databases":
                facts.databases = int(number)
        return facts

    def _hello(self):
        """Server facts for a user that may not run INFO (e.g. ACL -@dangerous).

        HELLO 2 switches its connection to RESP2, so it runs on a throwaway client.
        """
        probe = self.settings.client(db=0)
        try:
            reply = probe.execute_command("HELLO", "2")
        except redis_errors.RedisError as exc:
            raise MigrationError(
                f"Cannot read the server's version and role at {self.settings.endpoint}: INFO "
                f"is denied and HELLO failed ({self.settings.scrub(exc)}). Grant the user INFO "
                f"or use Redis 6 or newer."
            ) from None
        finally:
            probe.close()
        if isinstance(reply, list):
            reply = dict(zip(reply[::2], reply[1::2]))
        reply = {display(k): v for k, v in reply.items()}
        return {
            "redis_version": reply.get("version", b"0"),
            "role": display(reply.get("role", b"master")),
            "cluster_enabled": 1 if display(reply.get("mode", b"")) == "cluster" else 0,
        }

    def _check_server(self):
        endpoint = self.settings.endpoint
        if self.facts.cluster:
            raise MigrationError(
                f"Redis at {endpoint} runs in cluster mode, which has only db 0 and refuses "
                f"SELECT: there is no db {self.options.source_db} to migrate from. Point the "
                f"module at a standalone Redis."
            )
        if self.facts.role not in ("master", "primary"):
            raise MigrationError(
                f"Redis at {endpoint} is a replica ({self.facts.role}): writes there are "
                f"refused or lost at the next sync. Point login_host/login_port at the primary."
            )
        databases = self.facts.databases
        for option in ("source_db", "target_db"):
            db = getattr(self.options, option)
            if databases is not None and db >= databases:
                raise MigrationError(
                    f"{option} {db} does not exist on Redis at {endpoint}: the server has "
                    f"{databases} databases (0 to {databases - 1}). Fix {option}, or raise "
                    f"'databases' in redis.conf."
                )

    def _open_db(self, db):
        client = self.settings.client(db=db)
        try:
            client.ping()
        except redis_errors.ResponseError as exc:
            text = self.settings.scrub(exc)
            if "out of range" in text or "invalid DB index" in text:
                raise MigrationError(
                    f"db {db} does not exist on Redis at {self.settings.endpoint} ({text}). "
                    f"Fix source_db/target_db, or raise 'databases' in redis.conf."
                ) from None
            if "cluster" in text.lower():
                raise MigrationError(
                    f"Redis at {self.settings.endpoint} runs in cluster mode and refuses "
                    f"SELECT ({text}). Point the module at a standalone Redis."
                ) from None
            raise MigrationError(describe_error(exc, self.settings, f"selecting db {db}")) from None
        except redis_errors.RedisError as exc:
            raise MigrationError(describe_error(exc, self.settings, f"selecting db {db}")) from None
        return client

    def _check_index_types(self):
        for name in self.index_names:
            for db, client in (
                (self.options.source_db, self.source),
                (self.options.target_db, self.target),
            ):
                kind = display(self._call(lambda c=client, k=name: c.type(k), "reading TYPE"))
                if kind not in ("zset", "none"):
                    raise MigrationError(
                        f"index {display(name)!r} in db {db} on {self.settings.endpoint} is a "
                        f"{kind}, not a sorted set. Nothing was changed. Check the indexes "
                        f"option, or move that key away before migrating."
                    )

    def _pick_strategy(self):
        requested = self.options.strategy
        copy_ok = self.facts.version >= (6, 2) and self._call(
            lambda: _command_permitted(self.source, "COPY", self.PROBE_KEY, self.PROBE_KEY),
            "checking COPY",
        )
        if copy_ok and requested in ("auto", "copy"):
            return "copy"
        if requested == "copy":
            raise MigrationError(
                f"strategy 'copy' needs the COPY command, which Redis {self.facts.version_text} "
                f"at {self.settings.endpoint} lacks, has renamed or denies to this user. Use "
                f"strategy 'auto' or 'dump-restore'."
            )
        denied = [
            name
            for name, probe in (
                ("DUMP", ("DUMP", self.PROBE_KEY)),
                ("RESTORE", ("RESTORE", self.PROBE_KEY, "0", "not-a-dump-payload")),
            )
            if not self._call(
                lambda p=probe: _command_permitted(self.target, *p), f"checking {name}"
            )
        ]
        if denied:
            user = self.settings.username or "default"
            raise MigrationError(
                f"Cannot copy keys on Redis at {self.settings.endpoint}: COPY is unavailable "
                f"(needs Redis 6.2+ and permission) and user '{user}' may not run "
                f"{' and '.join(denied)}. Grant COPY, or DUMP and RESTORE, with ACL SETUSER."
            )
        return "dump-restore"

    # Memory ---------------------------------------------------------------------------------

    def estimate_memory(self):
        """What copying the keys not yet in the target will add to the server's memory.

        RANDOMKEY draws a sample of the source db: the share of it that matches and is not in
        the target yet, times DBSIZE, is how many keys the copy adds; MEMORY USAGE of those
        sampled gives their average size.
        """
        pipe = self.source.pipeline(transaction=False)
        for _ in range(MEMORY_SAMPLE):
            pipe.randomkey()
        drawn = [key for key in pipe.execute() if key is not None]
        matchers = [glob_matcher(pattern) for pattern in self.patterns]
        matching = [
            key
            for key in drawn
            if key not in self.index_names and any(matches(key) for matches in matchers)
        ]
        in_target = self._each(self.target, "exists", matching)
        to_copy = [key for key, present in zip(matching, in_target) if not present]
        facts = self.facts
        estimate = dict(
            sampled_keys=len(drawn),
            sampled_matching=len(matching),
            sampled_to_copy=len(to_copy),
            source_keys=self.source.dbsize(),
            average_key_bytes=None,
            needed_bytes=None,
            used_memory=facts.used_memory,
            maxmemory=facts.maxmemory or None,
            available_bytes=None,
            fits=None,
        )
        try:
            sizes = self._each(self.source, "memory_usage", to_copy)
            index_bytes = sum(self.source.memory_usage(name) or 0 for name in self.index_names)
        except redis_errors.ResponseError as exc:
            estimate["note"] = f"MEMORY USAGE is not available ({self.settings.scrub(exc)})"
            return estimate
        average = sum(size or 0 for size in sizes) / len(to_copy) if to_copy else 0
        keys = estimate["source_keys"] * len(to_copy) / len(drawn) if drawn else 0
        index_share = len(to_copy) / len(matching) if matching else 0
        needed = round(keys * average + index_bytes * index_share)
        estimate["average_key_bytes"] = round(average)
        estimate["needed_bytes"] = needed
        limit = facts.maxmemory or facts.total_system_memory
        if limit and facts.used_memory is not None:
            available = limit - facts.used_memory
            estimate["available_bytes"] = available
            # Nothing to copy always fits: a rerun must work on a nearly full server.
            headroom = MEMORY_HEADROOM * limit
            estimate["fits"] = needed == 0 or needed <= available - headroom
        else:
            estimate["note"] = "the server does not report its memory (INFO denied)"
        return estimate

    def check_memory(self):
        """The estimate, or None when memory_check is off; refuses when the copy won't fit."""
        if not self.options.memory_check:
            return None
        estimate = self._call(self.estimate_memory, "estimating memory")
        if estimate["fits"] is False:
            limit = "maxmemory" if self.facts.maxmemory else "the machine's memory"
            raise MigrationError(
                f"Not enough memory on Redis at {self.settings.endpoint} to copy the keys: "
                f"about {mib(estimate['needed_bytes'])} are needed (db "
                f"{self.options.source_db} has {estimate['source_keys']} keys; of a random "
                f"sample of {estimate['sampled_keys']}, {estimate['sampled_to_copy']} match and "
                f"are not in db {self.options.target_db} yet, {estimate['average_key_bytes']} "
                f"bytes each) but {mib(estimate['available_bytes'])} are free under {limit}, of "
                f"which {MEMORY_HEADROOM:.0%} of the limit must stay free. Nothing was written. "
                f"Raise maxmemory or free memory; if you know it fits, set memory_check: false "
                f"(role: storyart_session_migration_memory_check: false)."
            )
        return estimate

    # Runs ------------------------------------------------------------------------------------

    def _new_report(self, kind, **fields):
        return kind(
            endpoint=self.settings.endpoint,
            source_db=self.options.source_db,
            target_db=self.options.target_db,
            dry_run=self.options.dry_run,
            server_version=self.facts.version_text,
            **fields,
        )

    def _batches(self, items):
        """Batches of ``items``, paced to stay under max_keys_per_second when it is set."""
        for batch in batched(items, self.options.batch_size):
            yield batch
            self._pace(len(batch))

    def _pace(self, done):
        """Sleep as long as needed to stay under max_keys_per_second, when it is set."""
        rate = self.options.max_keys_per_second
        if rate:
            self.paced += done
            ahead = self.paced / rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)

    def _timed(self, work):
        """Run ``work``; a lost connection stops it with the counts so far in the error."""
        started = self.started = time.monotonic()
        self.paced = 0
        try:
            work()
        except redis_errors.RedisError as exc:
            if isinstance(exc, redis_errors.ConnectionError) and not is_auth_failure(exc):
                # It answered a moment ago: advice about where it listens would mislead.
                self.report.aborted = self.settings.scrub(
                    f"Lost the connection to Redis at {self.settings.endpoint} while "
                    f"{self.action}: {str(exc).rstrip('.')}"
                )
            else:
                self.report.aborted = describe_error(exc, self.settings, self.action).rstrip(".")
        finally:
            self.report.duration = time.monotonic() - started
        if self.report.aborted:
            raise MigrationError(
                f"{self.report.aborted}. Counts so far: {self.report.summary()}. Nothing is "
                f"lost: rerun once Redis answers, it skips what is already done.",
                report=self.report,
            )
        return self.report

    def run(self):
        """Copy, merge and verify. Returns the report; raises MigrationError if cut short."""
        if self.source is None:
            self.connect()
        memory = self.check_memory()
        self.report = self._new_report(MigrationReport, strategy=self.strategy, memory=memory)

        def work():
            self._copy_and_merge(self._copy_mode())
            if self.options.full_verify and not self.options.dry_run:
                self._full_check()

        return self._timed(work)

    def _full_check(self):
        """After the copy, the same pass as verify(), in the same process: read everything
        again and check that every matching key and index entry is in the target."""
        migration = self.report
        self.report = check = self._new_report(MigrationReport, verify_only=True)
        try:
            self._copy_and_merge("plan")
        finally:
            self.report = migration
        migration.full_check = dict(
            verified=check.verified,
            found=check.found,
            missing=check.migrated,
            index_missing=check.index_total("added"),
            expired=check.expired,
            missing_sample=check.samples["migrated"],
        )

    def verify(self):
        """Check, writing nothing, that every matching key and index entry is in the target."""
        if self.source is None:
            self.connect(copying=False)
        self.report = self._new_report(MigrationReport, verify_only=True)
        return self._timed(lambda: self._copy_and_merge("plan"))

    def cleanup(self):
        """Delete source keys whose copy in the target is identical, and fully merged indexes."""
        if self.source is None:
            self.connect(copying=False)
        self.report = self._new_report(CleanupReport)
        return self._timed(self._clean)

    def _copy_and_merge(self, mode):
        self.action = "copying keys"
        for batch in self._batches(self._matching_keys()):
            self._handle_keys(list(dict.fromkeys(batch)), mode)
        self.action = "merging indexes"
        for name in self.index_names:
            self._merge_index(name, mode)

    def _copy_mode(self):
        if self.options.dry_run:
            return "plan"
        if self.strategy == "copy":
            return "copy"
        return "restore-abs" if self.facts.version >= (7, 0) else "restore"

    def _matching_keys(self):
        """Every source key matching a pattern, once per pattern list, never all at once."""
        done = []
        count = max(self.options.batch_size, 10)
        skip = set(self.index_names)
        for pattern in self.patterns:
            for key in self.source.scan_iter(match=pattern, count=count):
                if key in skip or (done and any(matches(key) for matches in done)):
                    continue
                yield key
            done.append(glob_matcher(pattern))

    def _copy_batch(self, keys, mode):
        return self.copy_script(
            keys=keys, args=[self.options.source_db, self.options.target_db, mode]
        )

    def _handle_keys(self, keys, mode):
        report = self.report
        report.found += len(keys)
        try:
            outcomes = self._copy_batch(keys, mode)
            if len(outcomes) != len(keys):
                raise redis_errors.ResponseError(
                    f"the copy script returned {len(outcomes)} outcomes for {len(keys)} keys"
                )
        except redis_errors.ResponseError as exc:
            error = self.settings.scrub(exc)
            report.failed += len(keys)
            for key in keys:
                report.add_error(key, error)
            return
        kinds = {COPIED: "migrated", PRESENT: "skipped", GONE: "expired"}
        for key, error in report.tally(keys, outcomes, kinds):
            report.failed += 1
            report.add_error(key, self.settings.scrub(display(error)))
        if mode != "plan":
            copied = [key for key, outcome in zip(keys, outcomes) if outcome == COPIED]
            self._verify_keys(copied)

    def _verify_keys(self, copied):
        """Read back the keys this batch copied; a key gone from both dbs has expired since."""
        if not copied or self.target.exists(*copied) == len(copied):
            return
        in_target = self._each(self.target, "exists", copied)
        missing = [key for key, found in zip(copied, in_target) if not found]
        in_source = self._each(self.source, "exists", missing)
        for key, still_there in zip(missing, in_source):
            if still_there:
                self.report.add_missing(f"key {display(key)}")
            else:
                self.report.expired_after_copy += 1

    def _scores(self, index, members):
        """The target index's scores of ``members`` (None where absent), in one round trip."""
        if not members:
            return []
        if self.facts.version >= (6, 2):
            return self.target.zmscore(index, members)
        return self._each(self.target, "zscore", members, index)

    @staticmethod
    def _each(client, command, keys, *args):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            getattr(pipe, command)(*args, key)
        return pipe.execute()

    def _merge_index(self, name, mode):
        index = IndexReport(name=name)
        self.report.indexes.append(index)
        mode = "plan" if mode == "plan" else "merge"
        args = [self.options.source_db, self.options.target_db, mode]
        cursor = 0
        while True:
            cursor, added, present, orphans, members, error = self.index_script(
                keys=[name], args=[*args, cursor, self.options.batch_size]
            )
            index.found += len(members)
            if error:
                index.failed += len(members)
                self.report.add_error(name, self.settings.scrub(display(error)))
            else:
                index.added += added
                index.present += present
                index.orphans += orphans
                if mode != "plan" and members:
                    self._verify_members(index, members)
            self._pace(len(members))
            if int(cursor) == 0:
                return

    def _verify_members(self, index, members):
        """Read back the members this page merged from the target index."""
        for member, score in zip(members, self._scores(index.name, members)):
            if score is None:
                index.missing += 1
                self.report.add_missing(f"index {display(index.name)} member {display(member)}")

    # Cleanup ---------------------------------------------------------------------------------

    def _clean(self):
        mode = "plan" if self.options.dry_run else "delete"
        self.action = "cleaning up keys"
        for batch in self._batches(self._matching_keys()):
            self._clean_keys(list(dict.fromkeys(batch)), mode)
        self.action = "cleaning up indexes"
        for name in self.index_names:
            self._clean_index(name)

    def _clean_keys(self, keys, mode):
        report = self.report
        report.found += len(keys)
        try:
            outcomes = self.cleanup_script(
                keys=keys, args=[self.options.source_db, self.options.target_db, mode]
            )
        except redis_errors.ResponseError as exc:
            report.failed += len(keys)
            for key in keys:
                report.add_error(key, self.settings.scrub(exc))
            return
        kinds = {0: "deleted", 1: "kept_different", 2: "kept_missing", 3: "expired"}
        report.tally(keys, outcomes, kinds)  # the script has no per-key errors: DUMP, UNLINK

    def _clean_index(self, name):
        index = IndexCleanup(name=name)
        self.report.indexes.append(index)
        target = self.options.target_db
        with self.source.pipeline() as watched:
            # WATCH before the check: any change to the source index from here on, even one
            # that keeps its size, makes the EXEC of its deletion fail and the index is kept.
            watched.watch(name)
            size = watched.zcard(name)
            cursor = 0
            while True:
                cursor, page = watched.zscan(
                    name, cursor, count=self.options.batch_size, score_cast_func=bytes
                )
                members = [member for member, _ in page]
                index.found += len(members)
                index.missing += sum(score is None for score in self._scores(name, members))
                self._pace(len(members))
                if int(cursor) == 0:
                    break
            if size == 0:
                index.kept_because = f"it does not exist in db {self.options.source_db}"
            elif index.missing:
                index.kept_because = f"{index.missing} of its entries are not in db {target}"
            elif self.options.dry_run:
                index.deleted = True
            else:
                self._delete_index(index, watched)

    def _delete_index(self, index, watched):
        try:
            watched.multi()
            watched.unlink(index.name)
            watched.execute()
            index.deleted = True
        except redis_errors.WatchError:
            index.kept_because = "it changed during the cleanup; run the cleanup again"
        except redis_errors.ResponseError as exc:
            error = self.settings.scrub(exc)
            index.failed = True
            index.kept_because = f"deleting it failed: {error}"
            self.report.add_error(index.name, error)


def mib(size):
    return f"{size / 1048576:.1f} MiB"


def _run(settings, options, operation, copying=True):
    """One operation; whatever it raises reaches the caller without the password in it."""
    try:
        migration = Migration(settings, options)
        migration.connect(copying=copying)
        return operation(migration)
    except MigrationError as exc:
        if exc.report is not None and exc.report.aborted:
            exc.report.aborted = settings.scrub(exc.report.aborted)
        raise MigrationError(settings.scrub(exc), report=exc.report) from None


def migrate(settings, options):
    """Copy, merge and verify. Returns the report; raises MigrationError with a clear message."""
    return _run(settings, options, Migration.run)


def verify(settings, options):
    """Check that everything matching is in the target, writing nothing."""
    return _run(settings, options, Migration.verify, copying=False)


def cleanup(settings, options):
    """Delete from the source only what the target holds an identical copy of."""
    return _run(settings, options, Migration.cleanup, copying=False)


def preflight(settings, options):
    """Every check a migration makes before its first write, and the memory estimate."""

    def facts(migration):
        memory = migration.check_memory() or migration._call(
            migration.estimate_memory, "estimating memory"
        )
        server = migration.facts
        result = dict(
            endpoint=settings.endpoint,
            source_db=options.source_db,
            target_db=options.target_db,
            server_version=server.version_text,
            role=server.role,
            databases=server.databases,
            strategy=migration.strategy,
            memory=memory,
        )
        needed = "unknown" if memory["needed_bytes"] is None else mib(memory["needed_bytes"])
        free = memory["available_bytes"]
        result["msg"] = (
            f"Redis {server.version_text} at {settings.endpoint} is ready: primary, dbs "
            f"{options.source_db} and {options.target_db} exist, strategy {migration.strategy}, "
            f"copy needs about {needed} with {'no limit' if free is None else mib(free)} free"
        )
        return result

    return _run(settings, options, facts)
