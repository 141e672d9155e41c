"""The scripts of the preflight: the memory estimate, and the probes of what the user may run."""

from __future__ import annotations

from .lua import LUA_HEADER

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
