"""The scripts that delete from the source: the keys whose copy has the same type and content,
and an index the clean-up has checked. The clean-up script comes with the builder of its
arguments and the type of its reply, so that the script and the code that calls it change
together."""

from __future__ import annotations

from typing import NamedTuple

from .lua import LUA_DEADLINE, LUA_HEADER

# KEYS: key names found in the source db; its verb: 'plan' or 'delete'; its arguments:
# cleanup_arguments(). Compares each source key with the target key of the same name by type
# and content, whatever their encodings: strings byte for byte, list items in order, hash
# fields and values, set members, sorted-set members and scores, stream entries one by one
# (other types by DUMP). Stops before a key that would take the call over its byte budget (a
# key larger than the budget goes alone). Returns a CleanupReply. Only identical keys are ever
# deleted, with UNLINK, in the same atomic call as their comparison.
CLEANUP_SCRIPT = (
    LUA_HEADER
    + LUA_DEADLINE
    + """
local src, dst, verb = ARGV[1], ARGV[2], ARGV[3]
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
if verb == 'delete' and #identical > 0 then
  redis.call('SELECT', src)
  for first = 1, #identical, 1000 do
    redis.call('UNLINK', unpack(identical, first, math.min(first + 999, #identical)))
  end
end
return {ended, spent, out, took_us()}
"""
)


def cleanup_arguments(source_db, target_db, verb, *, budget, sized):
    """The clean-up script's ARGV; Session.write() adds the deadline last (LUA_DEADLINE)."""
    return [
        source_db,  # ARGV[1]
        target_db,  # ARGV[2]
        verb,  # ARGV[3]
        budget,  # ARGV[4]: this call's byte budget, 0 for none
        "1" if sized else "0",  # ARGV[5]: whether keys are sized with MEMORY USAGE
    ]


class CleanupReply(NamedTuple):
    """What a call of the clean-up script returns. An outcome is IDENTICAL (deleted, or
    planning, would be), DIFFERENT, NO_COPY or CLEAN_GONE (gone from the source)."""

    ended: int  # lua.DONE or BUDGET
    compared: int  # bytes compared
    outcomes: list  # one per key handled, in the order of KEYS
    took_us: int  # the call's own server time, 0 when unknown (lua.LUA_HEADER)

    @classmethod
    def from_reply(cls, raw):
        return cls(*raw)


# KEYS[1]: a source index the clean-up has checked entry by entry. ARGV[1]: the deadline. Sent
# inside the MULTI of the connection that has WATCHed the index since before the check, so it
# runs only when nothing changed the index meanwhile; a script so that the deadline covers it.
# Returns {DONE, 1 when it deleted the index}.
DROP_INDEX_SCRIPT = (
    LUA_HEADER
    + LUA_DEADLINE
    + """
return {DONE, redis.call('UNLINK', KEYS[1])}
"""
)
