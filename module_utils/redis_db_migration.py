"""Copy keys from one Redis logical database to another, safely and fast.

This is the migration engine behind the ``redis_db_migrate`` Ansible module. It is plain Python
over redis-py with no Ansible import, so the module, the tests and the benchmark all call it.

How a migration works:

* Preflight (``connect``, ``check_memory``): reach and authenticate, read the server's facts,
  refuse a cluster, a replica, a database number the server does not have and an index key
  that is not a sorted set; probe every command the run will send; pick the copy strategy
  (COPY where the server has it and the user may run it, else DUMP + RESTORE); estimate what
  the copy adds to memory from the keys that will be copied, and refuse what would not fit.
* Keys: SCAN the source db once per pattern and hand each batch of names to Lua script calls,
  each of which copies keys without REPLACE and tells, atomically, whether each was copied,
  was already in the target, or has gone from the source. A call stops at a byte budget, and
  before any write the memory guard would refuse; only a batch of names is ever held.
* Indexes: one script call per ZSCAN page of each source index merges it into the target
  index with ZADD NX, so a member already in the target keeps its score.
* Verify: after each call's writes, read the target back in a separate round trip; with
  ``full_verify``, read everything again at the end.

A migration never writes to or deletes from the source db; the dry run runs the same scripts
with the writes left out. ``verify`` only reads; ``cleanup`` deletes from the source only keys
whose copy in the target has the same type and content.
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

# Bytes of MEMORY USAGE one server call may work through when max_batch_bytes is 0, by what the
# call does. Measured on Redis 6.2, 7.0 and Valkey 9 (README, Performance): COPY costs up to
# 2 ms per MB, DUMP + RESTORE of incompressible values up to 19 ms per MB, the clean-up's
# comparison up to 5 ms per MB; so a call takes about 20 ms at most, well under the 50 ms at
# which replicas, Sentinel and clients start to notice.
AUTO_BATCH_BYTES = {"copy": 8 << 20, "dump-restore": 1 << 20, "cleanup": 2 << 20}
# Memory a key takes beyond its MEMORY USAGE: the entry of its expiry.
KEY_OVERHEAD = 48
# Memory one index entry takes beyond its member name: skiplist node, score and dict entry.
INDEX_ENTRY_BYTES = 96
# The estimate reads SCAN pages of each pattern until it has seen this many matching keys.
ESTIMATE_SAMPLE = 10000
# Pacing sleeps in slices this long and PINGs its connections between them, so a server
# 'timeout' (at least 1 s) never closes them as idle.
KEEPALIVE_SECONDS = 0.5

# Outcome codes of the copy script, per key.
COPIED, PRESENT, GONE = 0, 1, 2
# Outcome codes of the clean-up script, per key.
IDENTICAL, DIFFERENT, NO_COPY, CLEAN_GONE = 0, 1, 2, 3
# How a script call ended: every key handled; stopped at its byte budget (the next call takes
# the rest); stopped by the memory guard because the next write would not fit; or stopped
# because the server has evicted keys since the run started.
DONE, BUDGET, MEMORY, EVICTED = 0, 1, 2, 3

# Every script starts with this. Redis 5 and 6 let a script write after a non-deterministic
# command (TIME, INFO, SCAN) only when it replicates its effects; Redis 7 always does.
LUA_HEADER = f"""
if redis.replicate_commands then redis.replicate_commands() end
local COPIED, PRESENT, GONE = {COPIED}, {PRESENT}, {GONE}
local IDENTICAL, DIFFERENT, NO_COPY, CLEAN_GONE = {IDENTICAL}, {DIFFERENT}, {NO_COPY}, {CLEAN_GONE}
local DONE, BUDGET, MEMORY, EVICTED = {DONE}, {BUDGET}, {MEMORY}, {EVICTED}
local KEY_OVERHEAD, INDEX_ENTRY_BYTES = {KEY_OVERHEAD}, {INDEX_ENTRY_BYTES}
"""

# The memory guard, run before a call writes anything. ARGV[4]: '1' when it is on; ARGV[5]: the
# percentage of maxmemory kept free; ARGV[6]: the ceiling of used_memory when the server has no
# maxmemory; ARGV[7]: evicted_keys when the run started. Returns the bytes this call may still
# add (nil once the server has evicted keys since the start), used_memory, the ceiling and
# evicted_keys. The ceiling is read afresh each call, so raising maxmemory mid-run counts.
LUA_MEMORY_GUARD = """
local function memory_room(dst, new_keys)
  if ARGV[4] ~= '1' then return math.huge, 0, 0, ARGV[7] end
  local evicted = redis.call('INFO', 'stats'):match('evicted_keys:(%d+)')
  local info = redis.call('INFO', 'memory')
  local used = tonumber(info:match('used_memory:(%d+)'))
  local max = tonumber(info:match('maxmemory:(%d+)'))
  local ceiling = tonumber(ARGV[6])
  if max > 0 then ceiling = math.floor(max * (100 - tonumber(ARGV[5])) / 100) end
  if evicted ~= ARGV[7] then return nil, used, ceiling, evicted end
  -- New keys can double the target db's hash tables (keys and expiries), all at once.
  redis.call('SELECT', dst)
  local size, buckets, growth = redis.call('DBSIZE'), 4, 0
  while buckets < size do buckets = buckets * 2 end
  while size + new_keys > buckets do
    buckets = buckets * 2
    growth = growth + 16 * buckets
  end
  return ceiling - used - growth, used, ceiling, evicted
end
"""

# KEYS: key names found in the source db. ARGV[1], ARGV[2]: source and target db. ARGV[3]: the
# mode: 'plan' (classify, write nothing), 'copy' (COPY), 'restore' (DUMP, then RESTORE at the
# source's absolute expiry read with PEXPIRETIME, Redis 7+) or 'restore-time' (the same on
# older servers, the expiry read with TIME and PTTL). ARGV[4..7]: the memory guard (above).
# ARGV[8]: this call's byte budget, 0 for none. ARGV[9]: '1' to size keys with MEMORY USAGE.
# Handles the keys in order, never with REPLACE, and stops before a key that would take the
# call over its byte budget (a key larger than the budget goes alone) or over the room the
# memory guard leaves. Returns {how it ended, bytes copied (planning: to copy), one outcome per
# key handled, used_memory, ceiling, evicted_keys, bytes of the key that did not fit}. An
# outcome is COPIED (planning: to copy), PRESENT (the target has it), GONE (expired from the
# source) or the error of a write that failed. A call runs atomically, so a key's
# classification cannot race with its write.
COPY_SCRIPT = (
    LUA_HEADER
    + LUA_MEMORY_GUARD
    + """
local src, dst, mode = ARGV[1], ARGV[2], ARGV[3]
local budget, sized = tonumber(ARGV[8]), ARGV[9] == '1'

local function in_target(key)
  redis.call('SELECT', dst)
  local found = redis.call('EXISTS', key) == 1
  redis.call('SELECT', src)
  return found
end

-- Bytes the key takes in the source, or nil when it is not there; 0 when keys are not sized.
-- MEMORY USAGE still sizes a key that has expired but not been deleted yet, so the writes
-- below tell gone keys apart anyway.
local function size_of(key)
  if not sized then return 0 end
  local bytes = redis.call('MEMORY', 'USAGE', key)
  return bytes and bytes + KEY_OVERHEAD
end

-- The source key's absolute expiry in ms, -1 for none, 0 when it has expired or expires this
-- millisecond. Before Redis 7 there is no PEXPIRETIME: PTTL read between two TIME replies of
-- the same millisecond gives it exactly, since both read the same clock.
local function expiry(key)
  if mode == 'restore' then
    local at = redis.call('PEXPIRETIME', key)
    return at == -2 and 0 or at
  end
  while true do
    local before = redis.call('TIME')
    local ttl = redis.call('PTTL', key)
    local after = redis.call('TIME')
    if ttl == -1 then return -1 end
    if ttl <= 0 then return 0 end
    local ms = tonumber(before[1]) * 1000 + math.floor(tonumber(before[2]) / 1000)
    if ms == tonumber(after[1]) * 1000 + math.floor(tonumber(after[2]) / 1000) then
      return ms + ttl
    end
  end
end

local function copy(key)
  if mode == 'copy' then
    local done = redis.pcall('COPY', key, key, 'DB', dst)
    if done == 1 then return COPIED end
    -- Nothing copied: the target has the key, or the source's has expired.
    if done == 0 then return in_target(key) and PRESENT or GONE end
    return in_target(key) and PRESENT or done.err
  end
  if in_target(key) then return PRESENT end
  local payload = redis.call('DUMP', key)
  if not payload then return GONE end
  local at = expiry(key)
  if at == 0 then return GONE end
  redis.call('SELECT', dst)
  local done
  if at < 0 then
    done = redis.pcall('RESTORE', key, 0, payload)
  else
    -- Absolute: what replicas and the AOF replay is the same instant, whenever they replay it.
    done = redis.pcall('RESTORE', key, at, payload, 'ABSTTL')
  end
  local outcome = COPIED
  -- A status reply ({ok = 'OK'}) is a table too: only an error changes the outcome.
  if done.err then outcome = redis.call('EXISTS', key) == 1 and PRESENT or done.err end
  redis.call('SELECT', src)
  return outcome
end

local out, spent = {}, 0
if mode == 'plan' then
  local sizes = {}
  redis.call('SELECT', src)
  for i, key in ipairs(KEYS) do
    sizes[i] = redis.call('EXISTS', key) == 1 and (size_of(key) or 0)
  end
  redis.call('SELECT', dst)
  for i, key in ipairs(KEYS) do
    if not sizes[i] then
      out[i] = GONE
    elseif redis.call('EXISTS', key) == 1 then
      out[i] = PRESENT
    else
      out[i] = COPIED
      spent = spent + sizes[i]
    end
  end
  return {DONE, spent, out, 0, 0, ARGV[7], 0}
end

local room, used, ceiling, evicted = memory_room(dst, #KEYS)
if not room then return {EVICTED, 0, out, used, ceiling, evicted, 0} end
redis.call('SELECT', src)
for i, key in ipairs(KEYS) do
  local size = size_of(key)
  if not size then
    out[i] = GONE
  elseif budget > 0 and spent > 0 and spent + size > budget then
    return {BUDGET, spent, out, used, ceiling, evicted, 0}
  elseif spent + size > room and not in_target(key) then
    return {MEMORY, spent, out, used, ceiling, evicted, size}
  else
    out[i] = copy(key)
    if out[i] == COPIED then spent = spent + size end
  end
end
return {DONE, spent, out, used, ceiling, evicted, 0}
"""
)

# KEYS[1]: the index sorted set. ARGV[1], ARGV[2]: source and target db. ARGV[3]: 'plan' or
# 'merge'. ARGV[4..7]: the memory guard. ARGV[8]: ZSCAN cursor. ARGV[9]: ZSCAN COUNT, sized by
# the caller to the byte budget. Reads one page of the source index and merges it into the
# target index on the server: members already in the target keep their score (ZADD NX, whose
# reply counts the members it added). Returns {how it ended, next cursor, added, present,
# orphans, members, error, bytes the page needs, used_memory, ceiling, evicted_keys}: orphans
# are members whose session key exists in neither db, merged all the same; members are the
# page's names, for the read-back; error is '' or why the merge failed. A page the memory
# guard stops is not merged at all, and the cursor returned is the one it was given.
INDEX_SCRIPT = (
    LUA_HEADER
    + LUA_MEMORY_GUARD
    + """
local src, dst, mode, index = ARGV[1], ARGV[2], ARGV[3], KEYS[1]
local room, used, ceiling, evicted = math.huge, 0, 0, ARGV[7]
if mode == 'merge' then
  room, used, ceiling, evicted = memory_room(dst, 0)
  if not room then return {EVICTED, ARGV[8], 0, 0, 0, {}, '', 0, used, ceiling, evicted} end
end
redis.call('SELECT', src)
local page = redis.call('ZSCAN', index, ARGV[8], 'COUNT', ARGV[9])
local flat, members, scored = page[2], {}, {}
for i = 1, #flat, 2 do
  members[#members + 1] = flat[i]
  scored[#scored + 1] = flat[i + 1]
  scored[#scored + 1] = flat[i]
end
redis.call('SELECT', dst)

local function new_members()
  local found = {}
  for _, member in ipairs(members) do
    if not redis.call('ZSCORE', index, member) then found[#found + 1] = member end
  end
  return found
end

local function bytes(names)
  local total = 0
  for _, member in ipairs(names) do total = total + #member + INDEX_ENTRY_BYTES end
  return total
end

local added, need, err = 0, 0, ''
if mode == 'plan' then
  added = #new_members()
else
  need = bytes(members)
  -- Only the entries the target lacks take memory: count them before refusing the page.
  if need > room then need = bytes(new_members()) end
  if need > 0 and need > room then
    return {MEMORY, ARGV[8], 0, 0, 0, {}, '', need, used, ceiling, evicted}
  end
  for first = 1, #scored, 2000 do
    local last = math.min(first + 1999, #scored)
    local r = redis.pcall('ZADD', index, 'NX', unpack(scored, first, last))
    if type(r) == 'table' then
      -- Refused (e.g. OOM): not an error if the target already has every one of them.
      for i = first + 1, last, 2 do
        if not redis.call('ZSCORE', index, scored[i]) then err = r.err end
      end
      if err ~= '' then break end
    else
      added = added + r
    end
  end
end
-- One EXISTS of the whole page settles the usual case: every session is in the target.
local in_target, elsewhere, orphans = 0, {}, 0
for first = 1, #members, 1000 do
  local last = math.min(first + 999, #members)
  in_target = in_target + redis.call('EXISTS', unpack(members, first, last))
end
if in_target < #members then
  for _, member in ipairs(members) do
    if redis.call('EXISTS', member) == 0 then elsewhere[#elsewhere + 1] = member end
  end
  redis.call('SELECT', src)
  for _, member in ipairs(elsewhere) do orphans = orphans + 1 - redis.call('EXISTS', member) end
end
return {DONE, page[1], added, #members - added, orphans, members, err, need, used, ceiling,
  evicted}
"""
)

# KEYS: key names found in the source db. ARGV[1], ARGV[2]: source and target db. ARGV[3]:
# 'plan' or 'delete'. ARGV[4]: this call's byte budget, 0 for none. ARGV[5]: '1' to size keys
# with MEMORY USAGE. Compares each source key with the target key of the same name by type and
# content, whatever their encodings: strings byte for byte, list items in order, hash fields
# and values, set members, sorted-set members and scores, stream entries one by one (other
# types by DUMP). Stops before a key that would take the call over its byte budget (a key
# larger than the budget goes alone). Returns {how it ended, bytes compared, one outcome per
# key handled}: IDENTICAL (deleted, or planning, would be), DIFFERENT, NO_COPY or CLEAN_GONE
# (gone from the source). Only identical keys are ever deleted, with UNLINK, in the same
# atomic call as their comparison.
CLEANUP_SCRIPT = (
    LUA_HEADER
    + """
local src, dst, mode = ARGV[1], ARGV[2], ARGV[3]
local budget, sized = tonumber(ARGV[4]), ARGV[5] == '1'

local function as_map(flat, step)
  local map, n = {}, 0
  for i = 1, #flat, step do
    map[flat[i]] = step == 2 and flat[i + 1] or true
    n = n + 1
  end
  return {map = map, n = n}
end

local function stream(key)
  local flat = {}
  for _, entry in ipairs(redis.call('XRANGE', key, '-', '+')) do
    flat[#flat + 1] = entry[1]
    flat[#flat + 1] = #entry[2]
    for _, part in ipairs(entry[2]) do flat[#flat + 1] = part end
  end
  return flat
end

-- The type and content of a key of the selected db.
local function content(key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return kind end
  if kind == 'string' then return kind, redis.call('GET', key) end
  if kind == 'list' then return kind, redis.call('LRANGE', key, 0, -1) end
  if kind == 'hash' then return kind, as_map(redis.call('HGETALL', key), 2) end
  if kind == 'set' then return kind, as_map(redis.call('SMEMBERS', key), 1) end
  if kind == 'zset' then return kind, as_map(redis.call('ZRANGE', key, 0, -1, 'WITHSCORES'), 2) end
  if kind == 'stream' then return kind, stream(key) end
  return kind, redis.call('DUMP', key)
end

local function same(a, b)
  if type(a) ~= 'table' then return a == b end
  if a.map then
    if a.n ~= b.n then return false end
    for name, value in pairs(a.map) do
      if b.map[name] ~= value then return false end
    end
    return true
  end
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local out, identical, spent, ended = {}, {}, 0, DONE
for i, key in ipairs(KEYS) do
  redis.call('SELECT', src)
  local size = 0
  if sized then size = redis.call('MEMORY', 'USAGE', key) or 0 end
  if budget > 0 and spent > 0 and spent + size > budget then
    ended = BUDGET
    break
  end
  local kind, mine = content(key)
  if kind == 'none' then
    out[i] = CLEAN_GONE
  else
    spent = spent + size
    redis.call('SELECT', dst)
    local their_kind, theirs = content(key)
    if their_kind == 'none' then
      out[i] = NO_COPY
    elseif their_kind == kind and same(mine, theirs) then
      out[i] = IDENTICAL
      identical[#identical + 1] = key
    else
      out[i] = DIFFERENT
    end
  end
end
if mode == 'delete' and #identical > 0 then
  redis.call('SELECT', src)
  for first = 1, #identical, 1000 do
    redis.call('UNLINK', unpack(identical, first, math.min(first + 999, #identical)))
  end
end
return {ended, spent, out}
"""
)

# KEYS: the index names, which are never counted as keys. ARGV[1], ARGV[2]: source and target
# db. ARGV[3]: SCAN cursor. ARGV[4]: pattern. ARGV[5]: SCAN COUNT. One SCAN page of the source
# for the memory estimate: how many keys match, how many of those the target lacks, and the
# bytes (MEMORY USAGE) these take. Returns {next cursor, matching, to copy, bytes to copy}.
ESTIMATE_SCRIPT = (
    LUA_HEADER
    + """
local skip = {}
for _, name in ipairs(KEYS) do skip[name] = true end
redis.call('SELECT', ARGV[1])
local page = redis.call('SCAN', ARGV[3], 'MATCH', ARGV[4], 'COUNT', ARGV[5])
local names, sizes = {}, {}
for _, key in ipairs(page[2]) do
  local bytes = not skip[key] and redis.call('MEMORY', 'USAGE', key)
  if bytes then
    names[#names + 1] = key
    sizes[#names] = bytes
  end
end
redis.call('SELECT', ARGV[2])
local to_copy, total = 0, 0
for i, key in ipairs(names) do
  if redis.call('EXISTS', key) == 0 then
    to_copy = to_copy + 1
    total = total + sizes[i] + KEY_OVERHEAD
  end
end
return {page[1], #names, to_copy, total}
"""
)

# KEYS[1]: a key name inside the migrated namespace that neither db holds, so that no probe
# can change anything. ARGV[1], ARGV[2]: source and target db, then each command to try as its
# word count and its words, '{key}' standing for KEYS[1]. Each runs with redis.pcall in the
# source db, so the server's own command table and ACL decide. Returns, per command, the
# error it got or '' when it ran; nil when the probe key exists (the caller picks another).
PROBE_SCRIPT = (
    LUA_HEADER
    + """
local key = KEYS[1]
-- Without EXISTS nothing proves the key is absent: then UNLINK is not tried (its answer is '').
local absent = true
for _, db in ipairs({ARGV[2], ARGV[1]}) do
  redis.call('SELECT', db)
  local found = redis.pcall('EXISTS', key)
  if found == 1 then return nil end
  absent = absent and found == 0
end
local out, i = {}, 3
while i <= #ARGV do
  local count, words = tonumber(ARGV[i]), {}
  for j = 1, count do
    words[j] = ARGV[i + j] == '{key}' and key or ARGV[i + j]
  end
  local reply = ''
  if absent or words[1] ~= 'UNLINK' then reply = redis.pcall(unpack(words)) end
  out[#out + 1] = type(reply) == 'table' and reply.err or ''
  i = i + count + 1
end
return out
"""
)

# How each command a run may send is tried without changing anything: on a probe key that
# exists in neither db, or with arguments the command itself rejects after the server's command
# lookup and ACL check (COPY of a key onto itself, RESTORE of a payload that is not one, ZADD
# with both NX and XX).
PROBES = {
    "COPY": ("COPY", "{key}", "{key}"),
    "DUMP": ("DUMP", "{key}"),
    "RESTORE": ("RESTORE", "{key}", "0", "not a dump payload"),
    "PEXPIRETIME": ("PEXPIRETIME", "{key}"),
    "PTTL": ("PTTL", "{key}"),
    "TIME": ("TIME",),
    "EXISTS": ("EXISTS", "{key}"),
    "SCAN": ("SCAN", "0", "MATCH", "{key}", "COUNT", "1"),
    "TYPE": ("TYPE", "{key}"),
    "DBSIZE": ("DBSIZE",),
    "INFO": ("INFO", "stats"),
    "MEMORY USAGE": ("MEMORY", "USAGE", "{key}"),
    "ZSCAN": ("ZSCAN", "{key}", "0"),
    "ZSCORE": ("ZSCORE", "{key}", "m"),
    "ZMSCORE": ("ZMSCORE", "{key}", "m"),
    "ZCARD": ("ZCARD", "{key}"),
    "ZADD": ("ZADD", "{key}", "NX", "XX", "0", "m"),
    "GET": ("GET", "{key}"),
    "LRANGE": ("LRANGE", "{key}", "0", "-1"),
    "HGETALL": ("HGETALL", "{key}"),
    "SMEMBERS": ("SMEMBERS", "{key}"),
    "ZRANGE": ("ZRANGE", "{key}", "0", "-1"),
    "XRANGE": ("XRANGE", "{key}", "-", "+"),
    "UNLINK": ("UNLINK", "{key}"),
}
# Commands only a client may send (not a script): tried on one connection, in this order.
TRANSACTION_PROBES = (("WATCH", "{key}"), ("MULTI",), ("EXEC",), ("UNWATCH",))


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

    def client(self, db, **extra):
        """A redis-py client on ``db`` that returns bytes and never retries on its own."""
        kwargs = dict(
            extra,
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
    max_batch_bytes: int = 0
    memory_headroom: int = 10

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
        if self.max_batch_bytes < 0:
            raise MigrationError(
                f"max_batch_bytes must be 0 (sized for each kind of call) or more, not "
                f"{self.max_batch_bytes}."
            )
        if not 0 <= self.memory_headroom <= 90:
            raise MigrationError(
                f"memory_headroom must be a percentage from 0 to 90, not {self.memory_headroom}."
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
    info: bool = True  # INFO answered; without it (HELLO) the memory facts are unknown
    databases: int | None = None
    used_memory: int | None = None
    used_memory_rss: int | None = None
    maxmemory: int | None = None
    maxmemory_policy: str | None = None
    total_system_memory: int | None = None
    evicted_keys: int | None = None

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
    # Checks this run could not make, each with why: e.g. MEMORY USAGE denied.
    checks_not_run: list = field(default_factory=list)

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
        parts.extend(f"NOT CHECKED: {check}" for check in self.checks_not_run)
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
            checks_not_run=self.checks_not_run,
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
    # MEMORY USAGE of the keys copied (in a dry run: that a real run would copy).
    copy_bytes: int = 0

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
            f"keys found {self.found}, {would}migrated {self.migrated} "
            f"({self.copy_bytes / 1048576:.1f} MiB), {would}skipped (already in db {target}) "
            f"{self.skipped}, expired {self.expired}, failed {self.failed}",
        ]
        parts.extend(f"WARNING: {text}" for text in (self.memory or {}).get("warnings", ()))
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
            memory=dict(self.memory or {}, copy_bytes=self.copy_bytes),
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
    text = str(exc).lower()
    # Inside a Lua script Redis says "The user executing the script can't run this command",
    # Valkey "ACL failure in script: User x has no permissions to run the 'copy' command".
    return (
        isinstance(exc, denied)
        or text.startswith("noperm")
        or "can't run this command" in text
        or "no permissions" in text
    )


def is_unknown_command(exc):
    """Whether the server does not know a command: it lacks it, or it was renamed away."""
    text = str(exc).lower()
    return "unknown command" in text or "unknown redis command" in text


def is_refusal(text):
    """Whether a probe's error says the command may not run here, as opposed to an error
    the command itself gave for the probe's arguments."""
    return bool(text) and (is_noperm(text) or is_unknown_command(text))


def _is_tls_failure(exc):
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "SSL" in text or "certificate" in text.lower()


class GuardStop(Exception):
    """The memory guard stopped the run; the message says why and what to do."""


def scanned_share(cursor):
    """The share of a db's keys a SCAN has gone through when it returns ``cursor``.

    SCAN walks the hash table in reverse-binary order of its buckets, so the cursor's bits read
    backwards are the part of the table behind it, whatever the table's size.
    """
    cursor = int(cursor)
    return int(f"{cursor:064b}"[::-1], 2) / 2**64 if cursor else 1.0


def acl_name(command):
    """How ACL SETUSER names a command: 'MEMORY USAGE' is 'memory|usage'."""
    return command.lower().replace(" ", "|")


class Migration:
    """One run against one Redis endpoint: ``connect(mode)``, then ``run()``, ``verify()`` or
    ``cleanup()``."""

    PROBE_SUFFIX = b"redis-db-migrate-probe"

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
        self.copy_script = None
        self.index_script = None
        self.cleanup_script = None
        self.estimate_script = None
        # Commands the server lacks, has renamed or denies this user; checks that cannot run.
        self.unavailable = set()
        self.checks_not_run = []
        # The memory guard's arguments to the scripts: off until check_memory() sets them.
        self.guard_args = ["0", "0", "0", "0"]
        self.started = 0.0
        self.paced = 0

    # Preflight -------------------------------------------------------------------------------

    def connect(self, mode="migrate"):
        """Reach the server and check it can take a run of ``mode``: preflight, migrate,
        verify or cleanup. Every command the run will send is probed first."""
        admin = self.settings.client(db=0)
        self._call(admin.ping, "connecting")
        self.facts = self._server_facts(admin)
        admin.close()
        self._check_server()
        self.source = self._open_db(self.options.source_db)
        self.target = self._open_db(self.options.target_db)
        self._check_index_types()
        scripts = self._load_scripts(
            COPY_SCRIPT, INDEX_SCRIPT, CLEANUP_SCRIPT, ESTIMATE_SCRIPT, PROBE_SCRIPT
        )
        self.copy_script, self.index_script, self.cleanup_script, self.estimate_script = scripts[:4]
        self.unavailable = self._probe_commands(scripts[4])
        if not self.facts.info:
            self.unavailable.add("INFO")
        copying = mode in ("preflight", "migrate")
        self.strategy = self._pick_strategy() if copying else "none"
        self._check_commands(mode)
        return self.facts

    def _load_scripts(self, *sources):
        """The scripts as callables, loaded into the server first: a user who may not load
        or run scripts is told so before anything else runs."""
        scripts = [self.source.register_script(source) for source in sources]
        for script in scripts:
            self._call(
                lambda s=script: self.source.script_load(s.script),
                "loading the Lua scripts it runs (SCRIPT LOAD, then EVALSHA)",
            )
        return scripts

    def _call(self, func, action):
        try:
            return func()
        except redis_errors.RedisError as exc:
            raise MigrationError(describe_error(exc, self.settings, action)) from None

    def _server_facts(self, client):
        try:
            info, readable = client.info(), True
        except redis_errors.ResponseError as exc:
            if not (is_noperm(exc) or is_unknown_command(exc)):
                raise MigrationError(describe_error(exc, self.settings, "reading INFO")) from None
            info, readable = self._hello(), False
        except redis_errors.RedisError as exc:
            raise MigrationError(describe_error(exc, self.settings, "reading INFO")) from None
        version = tuple(int(p) for p in re.findall(rb"\d+", as_bytes(info["redis_version"]))[:3])
        facts = ServerFacts(
            version=version,
            role=str(info.get("role", "master")),
            cluster=bool(int(info.get("cluster_enabled", 0))),
            info=readable,
            used_memory=info.get("used_memory"),
            used_memory_rss=info.get("used_memory_rss"),
            maxmemory=info.get("maxmemory"),
            maxmemory_policy=info.get("maxmemory_policy"),
            total_system_memory=info.get("total_system_memory"),
            evicted_keys=info.get("evicted_keys"),
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
        """Server facts for a user that may not run INFO, or a server that renamed it.

        HELLO 2 switches its connection to RESP2, so it runs on a throwaway client.
        """
        probe = self.settings.client(db=0)
        try:
            reply = probe.execute_command("HELLO", "2")
        except redis_errors.RedisError as exc:
            raise MigrationError(
                f"Cannot read the server's version and role at {self.settings.endpoint}: INFO "
                f"is denied or renamed and HELLO failed ({self.settings.scrub(exc)}). Grant "
                f"the user INFO or use Redis 6 or newer."
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

    def _probe_keys(self):
        """Names inside the migrated namespace for the probes: the first pattern's literal
        start, so a user whose keys an ACL limits to that namespace may touch them."""
        prefix = re.split(rb"[*?\[\\]", self.patterns[0], maxsplit=1)[0]
        for n in range(10):
            yield prefix + self.PROBE_SUFFIX + b":%d" % n

    def _probe_commands(self, probe):
        """The commands of PROBES and TRANSACTION_PROBES this server lacks, has renamed or
        denies this user. Running the probe script also proves scripting is allowed."""
        names = list(PROBES)
        words = [word for name in names for word in (str(len(PROBES[name])), *PROBES[name])]
        dbs = [self.options.source_db, self.options.target_db]
        for key in self._probe_keys():
            replies = self._call(
                lambda k=key: probe(keys=[k], args=[*dbs, *words]),
                "running a Lua script (EVALSHA)",
            )
            if replies is not None:
                break
        else:
            raise MigrationError(
                f"Every probe key name ({display(key)} and the 9 before it) exists on Redis at "
                f"{self.settings.endpoint}: delete them, they are never written by this module."
            )
        denied = {name for name, reply in zip(names, replies) if is_refusal(display(reply))}
        return denied | self._call(lambda: self._probe_transaction(key), "checking WATCH")

    def _probe_transaction(self, key):
        """WATCH, MULTI, EXEC and UNWATCH, which scripts may not send, tried on a connection
        of their own that is closed afterwards, whatever state the probes left it in."""
        probe = self.settings.client(db=self.options.source_db, single_connection_client=True)
        denied = set()
        try:
            for words in TRANSACTION_PROBES:
                try:
                    probe.execute_command(*(key if word == "{key}" else word for word in words))
                except redis_errors.ResponseError as exc:
                    if is_refusal(str(exc)):
                        denied.add(words[0])
        finally:
            probe.close()
        return denied

    def _pick_strategy(self):
        requested = self.options.strategy
        copy_ok = self.facts.version >= (6, 2) and "COPY" not in self.unavailable
        if copy_ok and requested in ("auto", "copy"):
            return "copy"
        if requested == "copy":
            raise MigrationError(
                f"strategy 'copy' needs the COPY command, which Redis {self.facts.version_text} "
                f"at {self.settings.endpoint} lacks, has renamed or denies to this user. Use "
                f"strategy 'auto' or 'dump-restore'."
            )
        return "dump-restore"

    def _needed_commands(self, mode):
        """The commands a run of ``mode`` sends: those it cannot do without, and those that
        only feed a check (memory guard, byte budget), which can be switched off."""
        needed = {"SCAN", "EXISTS", "TYPE"}
        measured = {"MEMORY USAGE"}
        indexed = bool(self.index_names)
        read_back = "ZMSCORE" if self.facts.version >= (6, 2) else "ZSCORE"
        if indexed:
            needed |= {"ZSCAN", "ZSCORE"}
        if mode in ("preflight", "migrate"):
            if self.strategy == "copy":
                needed.add("COPY")
            else:
                needed |= {"DUMP", "RESTORE"}
                needed |= {"PEXPIRETIME"} if self.facts.version >= (7, 0) else {"TIME", "PTTL"}
            if indexed:
                needed |= {"ZADD", "ZCARD", read_back}
            measured |= {"INFO", "DBSIZE"}
            if self.options.memory_check:
                needed |= measured
        elif mode == "cleanup":
            needed |= {"GET", "LRANGE", "HGETALL", "SMEMBERS", "ZRANGE", "XRANGE", "DUMP"}
            needed.add("UNLINK")
            if indexed:
                needed |= {"ZCARD", read_back, "WATCH", "MULTI", "EXEC", "UNWATCH"}
        else:
            measured = set()
        return needed, measured - needed

    def _check_commands(self, mode):
        """Refuse a run that would send a command the user may not run; name the checks that
        cannot run for want of an optional one."""
        needed, optional = self._needed_commands(mode)
        missing = sorted(needed & self.unavailable)
        if missing:
            user = self.settings.username or "default"
            them = "them" if len(missing) > 1 else "it"
            grants = " ".join(f"+{acl_name(name)}" for name in missing)
            how = f"strategy {self.strategy}" if mode in ("preflight", "migrate") else "it"
            hint = ""
            if set(missing) <= {"INFO", "DBSIZE", "MEMORY USAGE"}:
                hint = " Or set memory_check: false to run without the memory guard."
            raise MigrationError(
                f"User '{user}' on Redis at {self.settings.endpoint} may not run "
                f"{', '.join(missing)}, which mode {mode} with {how} needs: the server lacks, "
                f"has renamed or denies {them}. Grant {them} with ACL SETUSER {user} {grants} "
                f"(a renamed command must get its name back).{hint}"
            )
        if mode in ("preflight", "migrate") and not self.options.memory_check:
            self.checks_not_run.append("memory guard: memory_check is false")
        if "MEMORY USAGE" in optional & self.unavailable:
            self.checks_not_run.append(
                "byte budget: MEMORY USAGE is not available, so each server call is bounded by "
                "batch_size keys only"
            )

    # Memory ---------------------------------------------------------------------------------

    def _ceiling(self):
        """The used_memory the run must stay under, what it comes from, and a warning.

        With maxmemory: maxmemory less the headroom. Without: what the machine has free, less
        the headroom of its memory; Redis cannot see a container's limit, hence the warning.
        """
        facts, headroom = self.facts, self.options.memory_headroom
        if facts.maxmemory:
            return facts.maxmemory * (100 - headroom) // 100, "maxmemory", None
        if not (facts.total_system_memory and facts.used_memory_rss):
            return None, None, None
        free = facts.total_system_memory - facts.used_memory_rss
        ceiling = facts.used_memory + free - facts.total_system_memory * headroom // 100
        warning = (
            f"no maxmemory: the memory guard judges against the machine's free memory "
            f"({mib(free)}), and Redis cannot see a container's limit; set maxmemory"
        )
        return ceiling, "system memory", warning

    def estimate_memory(self):
        """The memory guard's view before the first write: the limit, what Redis uses, and
        what the copy will add.

        The estimate reads, on the server, SCAN pages of each pattern until it has seen
        ESTIMATE_SAMPLE matching keys: the keys the target lacks and their MEMORY USAGE. The
        share of the db those pages cover (read from SCAN's cursor) scales them up, so what
        else the db holds cannot skew it; a db with fewer matching keys is read whole, and the
        estimate is exact. Keys matched by two patterns are counted twice: an upper bound.
        """
        facts = self.facts
        ceiling, limit, warning = self._ceiling()
        estimate = self._estimate_copy()
        available = None if ceiling is None else ceiling - facts.used_memory
        needed = estimate["needed_bytes"]
        return dict(
            guard=self.options.memory_check,
            policy=display(facts.maxmemory_policy) if facts.maxmemory_policy else None,
            maxmemory=facts.maxmemory,
            limit=limit,
            headroom_percent=self.options.memory_headroom,
            ceiling_bytes=ceiling,
            used_memory=facts.used_memory,
            available_bytes=available,
            evicted_keys=facts.evicted_keys,
            **estimate,
            # Nothing to copy always fits: a rerun must work on a full server.
            fits=None if available is None else needed == 0 or needed <= available,
            warnings=[warning] if warning else [],
        )

    def _estimate_copy(self):
        totals, exact = [0.0, 0.0, 0.0], True
        count = max(self.options.batch_size, 10)
        dbs = [self.options.source_db, self.options.target_db]
        for pattern in self.patterns:
            cursor, seen = 0, [0, 0, 0]
            while True:
                cursor, *page = self.estimate_script(
                    keys=self.index_names, args=[*dbs, cursor, pattern, count]
                )
                seen = [total + part for total, part in zip(seen, page)]
                if int(cursor) == 0 or seen[0] >= ESTIMATE_SAMPLE:
                    break
            share = scanned_share(cursor)
            exact = exact and int(cursor) == 0
            totals = [total + part / share for total, part in zip(totals, seen)]
        matching, to_copy, needed = totals
        # The index entries come with the keys they index: the same share is still to add.
        if matching:
            index_bytes = sum(self.source.memory_usage(name) or 0 for name in self.index_names)
            needed += index_bytes * to_copy / matching
        return dict(
            estimate="exact" if exact else "sampled",
            matching_keys=round(matching),
            keys_to_copy=round(to_copy),
            needed_bytes=round(needed),
        )

    def check_memory(self, always_estimate=False):
        """Preflight's memory check; arms the guard for the run. Refuses a copy that will
        not fit, or a server whose limit it cannot know. With memory_check off it refuses
        nothing and skips the estimate, unless ``always_estimate`` and the server allows it."""
        if not self.options.memory_check:
            if always_estimate and not {"INFO", "MEMORY USAGE"} & self.unavailable:
                return self._call(self.estimate_memory, "estimating memory")
            return dict(guard=False)
        memory = self._call(self.estimate_memory, "estimating memory")
        endpoint = self.settings.endpoint
        if memory["ceiling_bytes"] is None:
            raise MigrationError(
                f"Cannot tell how much memory Redis at {endpoint} may use: it reports neither "
                f"maxmemory nor the machine's memory. Set maxmemory, or set memory_check: false "
                f"to run without the memory guard."
            )
        if memory["fits"] is False:
            raise MigrationError(
                f"Not enough memory on Redis at {endpoint} to copy the keys: about "
                f"{mib(memory['needed_bytes'])} are needed ({memory['keys_to_copy']} keys not "
                f"in db {self.options.target_db} yet, {memory['estimate']}) but "
                f"{mib(max(memory['available_bytes'], 0))} are free under {self._limit_text()}. "
                f"Nothing was written. Free memory or raise maxmemory; if you know it fits, set "
                f"memory_check: false."
            )
        without_maxmemory = memory["ceiling_bytes"] if memory["limit"] == "system memory" else 0
        self.guard_args = [
            "1",
            str(self.options.memory_headroom),
            str(without_maxmemory),
            str(self.facts.evicted_keys),
        ]
        return memory

    def _limit_text(self):
        facts, headroom = self.facts, self.options.memory_headroom
        if facts.maxmemory:
            return (
                f"maxmemory {mib(facts.maxmemory)} with {headroom}% of it kept free (policy "
                f"{display(facts.maxmemory_policy)})"
            )
        return f"the machine's free memory with {headroom}% of its memory kept free"

    def _guard_stop(self, ended, need, used, ceiling, evicted):
        endpoint = self.settings.endpoint
        policy = display(self.facts.maxmemory_policy)
        if ended == EVICTED:
            return GuardStop(
                f"Stopped: Redis at {endpoint} has evicted keys since the run started "
                f"(evicted_keys {self.facts.evicted_keys} -> {display(evicted)}, "
                f"maxmemory-policy {policy}). It is at its memory limit, and each key copied "
                f"now would make it evict more. Free memory or raise maxmemory"
            )
        return GuardStop(
            f"Stopped by the memory guard before the next write: it needs about {mib(need)} "
            f"and only {mib(max(ceiling - used, 0))} are left on Redis at {endpoint} under "
            f"{self._limit_text()}, so the write could make Redis evict keys or refuse the "
            f"application's writes. Nothing was evicted. Free memory or raise maxmemory"
        )

    # Runs ------------------------------------------------------------------------------------

    def _new_report(self, kind, **fields):
        return kind(
            endpoint=self.settings.endpoint,
            source_db=self.options.source_db,
            target_db=self.options.target_db,
            dry_run=self.options.dry_run,
            server_version=self.facts.version_text,
            checks_not_run=list(self.checks_not_run),
            **fields,
        )

    def _budget(self, kind):
        """Bytes one server call may work through; 0 (no budget) when keys cannot be sized."""
        if "MEMORY USAGE" in self.unavailable:
            return 0
        return self.options.max_batch_bytes or AUTO_BATCH_BYTES[kind]

    def _batches(self, items):
        """Batches of ``items``, paced to stay under max_keys_per_second when it is set."""
        for batch in batched(items, self.options.batch_size):
            yield batch
            self._pace(len(batch))

    def _pace(self, done, *idle):
        """Sleep as long as needed to stay under max_keys_per_second, when it is set; PING
        the run's connections (and ``idle`` ones) meanwhile, so the server never closes them."""
        rate = self.options.max_keys_per_second
        if not rate:
            return
        self.paced += done
        while True:
            ahead = self.paced / rate - (time.monotonic() - self.started)
            if ahead <= 0:
                return
            time.sleep(min(ahead, KEEPALIVE_SECONDS))
            for connection in (self.source, self.target, *idle):
                connection.ping()

    def _timed(self, work):
        """Run ``work``; a lost connection or the memory guard stops it with the counts so far."""
        started = self.started = time.monotonic()
        self.paced = 0
        rerun = "once Redis answers"
        try:
            work()
        except GuardStop as exc:
            self.report.aborted = str(exc)
            rerun = "then"
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
                f"{self.report.aborted}. Counts so far: {self.report.summary()}. The source db "
                f"was not written, and what the counts say was copied was read back; rerun "
                f"{rerun}: it skips what is already done.",
                report=self.report,
            )
        return self.report

    def run(self):
        """Copy, merge and verify. Returns the report; raises MigrationError if cut short."""
        if self.source is None:
            self.connect("migrate")
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
            self.connect("verify")
        self.report = self._new_report(MigrationReport, verify_only=True)
        return self._timed(lambda: self._copy_and_merge("plan"))

    def cleanup(self):
        """Delete source keys whose copy in the target is identical, and fully merged indexes."""
        if self.source is None:
            self.connect("cleanup")
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
        return "restore" if self.facts.version >= (7, 0) else "restore-time"

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

    def _in_calls(self, keys, call, handle):
        """Hand ``keys`` to one script ``call`` after another until each is handled: a call
        stops at its byte budget and the next takes the rest. ``handle`` gets each call's
        keys and reply. A call the server refuses as a whole fails its keys."""
        pending = keys
        while pending:
            try:
                reply = call(pending)
                ended, outcomes = reply[0], reply[2]
                if ended == DONE and len(outcomes) != len(pending):
                    raise redis_errors.ResponseError(
                        f"a script returned {len(outcomes)} outcomes for {len(pending)} keys"
                    )
            except redis_errors.ResponseError as exc:
                error = self.settings.scrub(exc)
                self.report.failed += len(pending)
                for key in pending:
                    self.report.add_error(key, error)
                return
            handle(pending[: len(outcomes)], reply)
            if ended != BUDGET:
                return
            pending = pending[len(outcomes) :]

    def _handle_keys(self, keys, mode):
        """Copy (or plan) one SCAN batch, in as many script calls as its byte budget needs."""
        report = self.report
        report.found += len(keys)
        sized = "0" if report.verify_only or "MEMORY USAGE" in self.unavailable else "1"
        budget = self._budget("copy" if mode in ("plan", "copy") else "dump-restore")
        args = [
            self.options.source_db,
            self.options.target_db,
            mode,
            *self.guard_args,
            budget,
            sized,
        ]
        kinds = {COPIED: "migrated", PRESENT: "skipped", GONE: "expired"}

        def handle(handled, reply):
            ended, spent, outcomes, used, ceiling, evicted, need = reply
            for key, error in report.tally(handled, outcomes, kinds):
                report.failed += 1
                report.add_error(key, self.settings.scrub(display(error)))
            report.copy_bytes += spent
            if mode != "plan":
                self._verify_keys([key for key, code in zip(handled, outcomes) if code == COPIED])
            if ended in (MEMORY, EVICTED):
                raise self._guard_stop(ended, need, used + spent, ceiling, evicted)

        self._in_calls(keys, lambda pending: self.copy_script(keys=pending, args=args), handle)

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

    def _page_size(self, name):
        """ZSCAN COUNT for an index: batch_size entries, fewer when its entries are so large
        that a page would pass the byte budget."""
        size = self.options.batch_size
        budget = self._budget("copy")
        entries = self.source.zcard(name) if budget else 0
        if not entries:
            return size
        average = (self.source.memory_usage(name) or 0) / entries
        return max(1, min(size, int(budget // max(average, 1))))

    def _merge_index(self, name, mode):
        index = IndexReport(name=name)
        self.report.indexes.append(index)
        mode = "plan" if mode == "plan" else "merge"
        args = [self.options.source_db, self.options.target_db, mode, *self.guard_args]
        count = self._page_size(name)
        cursor = 0
        while True:
            ended, cursor, added, present, orphans, members, error, *memory = self.index_script(
                keys=[name], args=[*args, cursor, count]
            )
            if ended != DONE:
                raise self._guard_stop(ended, *memory)
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
        sized = "0" if "MEMORY USAGE" in self.unavailable else "1"
        args = [self.options.source_db, self.options.target_db, mode, self._budget("cleanup")]
        kinds = {
            IDENTICAL: "deleted",
            DIFFERENT: "kept_different",
            NO_COPY: "kept_missing",
            CLEAN_GONE: "expired",
        }
        self._in_calls(
            keys,
            lambda pending: self.cleanup_script(keys=pending, args=[*args, sized]),
            # The script has no per-key errors: its reads and UNLINK fail whole calls only.
            lambda handled, reply: report.tally(handled, reply[2], kinds),
        )

    def _clean_index(self, name):
        index = IndexCleanup(name=name)
        self.report.indexes.append(index)
        target = self.options.target_db
        count = self._page_size(name)
        with self.source.pipeline() as watched:
            # WATCH before the check: any change to the source index from here on, even one
            # that keeps its size, makes the EXEC of its deletion fail and the index is kept.
            watched.watch(name)
            size = watched.zcard(name)
            cursor = 0
            while True:
                cursor, page = watched.zscan(name, cursor, count=count, score_cast_func=bytes)
                members = [member for member, _ in page]
                index.found += len(members)
                index.missing += sum(score is None for score in self._scores(name, members))
                self._pace(len(members), watched)
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


MODES = ("preflight", "migrate", "verify", "cleanup")


def _run(settings, options, operation, mode):
    """One operation; whatever it raises reaches the caller without the password in it."""
    try:
        migration = Migration(settings, options)
        migration.connect(mode)
        return operation(migration)
    except MigrationError as exc:
        if exc.report is not None and exc.report.aborted:
            exc.report.aborted = settings.scrub(exc.report.aborted)
        raise MigrationError(settings.scrub(exc), report=exc.report) from None


def migrate(settings, options):
    """Copy, merge and verify. Returns the report; raises MigrationError with a clear message."""
    return _run(settings, options, Migration.run, "migrate")


def verify(settings, options):
    """Check that everything matching is in the target, writing nothing."""
    return _run(settings, options, Migration.verify, "verify")


def cleanup(settings, options):
    """Delete from the source only what the target holds an identical copy of."""
    return _run(settings, options, Migration.cleanup, "cleanup")


def preflight(settings, options):
    """Every check a migration makes before its first write, and the memory estimate."""

    def facts(migration):
        memory = migration.check_memory(always_estimate=True)
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
            checks_not_run=migration.checks_not_run,
        )
        result["msg"] = (
            f"Redis {server.version_text} at {settings.endpoint} is ready: primary, dbs "
            f"{options.source_db} and {options.target_db} exist, strategy {migration.strategy}, "
            f"{memory_line(memory)}{not_checked(migration.checks_not_run)}"
        )
        return result

    return _run(settings, options, facts, "preflight")


def memory_line(memory):
    """The memory check in a few words, for the one-line summaries."""
    if "needed_bytes" not in memory:
        return "memory guard OFF"
    line = "" if memory["guard"] else "memory guard OFF; "
    line += (
        f"copy needs about {mib(memory['needed_bytes'])} ({memory['keys_to_copy']} keys, "
        f"{memory['estimate']}), "
    )
    if memory["available_bytes"] is None:
        line += "the server's memory limit is unknown"
    else:
        line += (
            f"{mib(max(memory['available_bytes'], 0))} free under "
            f"{'maxmemory' if memory['limit'] == 'maxmemory' else 'the machine memory'} less "
            f"{memory['headroom_percent']}% (policy {memory['policy']})"
        )
    return "; ".join([line, *(f"WARNING: {text}" for text in memory["warnings"])])


def not_checked(checks):
    return "".join(f"; NOT CHECKED: {check}" for check in checks)
