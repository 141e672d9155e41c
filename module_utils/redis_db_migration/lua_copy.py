"""The scripts that copy: keys one call of a batch at a time, and the index one page at a time.
Each comes with the builder of its arguments and the type of its reply, so that a script and
the code that calls it change together."""

from __future__ import annotations

from typing import NamedTuple

from .lua import LUA_DEADLINE, LUA_HEADER, LUA_MEMORY_GUARD, guarded_arguments
from .sizing import limit_us

# One call handles one batch of keys, and finds them itself: SCAN runs in the script, so key
# names cross the network only on their way back, for the read-back. Its verb: 'plan'
# (classify, write nothing), 'copy' (COPY), 'restore' (DUMP, then RESTORE at the source's
# absolute expiry read with PEXPIRETIME, Redis 7+) or 'restore-time' (the same on older
# servers, the expiry read with TIME and PTTL). Its arguments: copy_arguments(). No key is
# declared in KEYS: ACL then checks each key in the command that touches it, so a key the user
# may not write fails alone.
# SCAN pages of the pattern fill the batch after the keys left: at most 16 pages of the batch
# size, so that in a db where few keys match one call still walks no more than a few ms of it.
# Handles the batch in order, never with REPLACE, and stops before a key that would take the
# call over its byte budget (a key larger than the budget goes alone) or over the room the
# memory guard leaves. Returns a CopyReply. A call runs atomically, so a key's classification
# cannot race with its write.
COPY_SCRIPT = (
    LUA_HEADER
    + LUA_DEADLINE
    + LUA_MEMORY_GUARD
    + """
local src, dst, verb = ARGV[1], ARGV[2], ARGV[3]
local budget, sized = tonumber(ARGV[8]), ARGV[9] == '1'
local batch, cursor, pattern = tonumber(ARGV[10]), ARGV[11], ARGV[12]
local limit_us = tonumber(ARGV[13])

-- The keys of this call, in order: those an earlier call left, then those SCAN finds.
local function find_keys()
  local keys, skip, pages, found = {}, {}, 0, 0
  local first_left = 15 + tonumber(ARGV[14])
  for i = 15, first_left - 1 do skip[ARGV[i]] = true end
  for i = first_left, #ARGV - 1 do
    found = found + 1
    keys[found] = ARGV[i]
  end
  redis.call('SELECT', src)
  while found < batch and cursor ~= '' and pages < 16 do
    local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', batch)
    cursor, pages = page[1] == '0' and '' or page[1], pages + 1
    for _, key in ipairs(page[2]) do
      if not skip[key] then
        found = found + 1
        keys[found] = key
      end
    end
  end
  return keys
end
local keys = find_keys()

-- The reply: every key found, of which the first #out are handled (CopyReply splits them).
local function reply(ended, spent, out, used, ceiling, evicted, need)
  return {ended, spent, keys, out, used, ceiling, evicted, need, cursor, took_us()}
end

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
  if verb == 'restore' then
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
  if verb == 'copy' then
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

local out, spent, last = {}, 0, math.min(#keys, batch)
if verb == 'plan' then
  local sizes = {}
  redis.call('SELECT', src)
  for i = 1, last do
    sizes[i] = redis.call('EXISTS', keys[i]) == 1 and (size_of(keys[i]) or 0)
  end
  redis.call('SELECT', dst)
  for i = 1, last do
    if not sizes[i] then
      out[i] = GONE
    elseif redis.call('EXISTS', keys[i]) == 1 then
      out[i] = PRESENT
    else
      out[i] = COPIED
      spent = spent + sizes[i]
    end
  end
  return reply(DONE, spent, out, 0, 0, evicted_at_start, 0)
end

local room, used, ceiling, evicted = memory_room(dst, last)
if not room then return reply(EVICTED, 0, out, used, ceiling, evicted, 0) end
redis.call('SELECT', src)
for i = 1, last do
  -- Past its time limit (sizing.CALL_LIMIT_SECONDS), the call leaves the rest to the next.
  if i % 64 == 0 and took_us() > limit_us then
    return reply(BUDGET, spent, out, used, ceiling, evicted, 0)
  end
  local key = keys[i]
  local size = size_of(key)
  if not size then
    out[i] = GONE
  elseif budget > 0 and spent > 0 and spent + size > budget then
    return reply(BUDGET, spent, out, used, ceiling, evicted, 0)
  elseif spent + size > room and not in_target(key) then
    return reply(MEMORY, spent, out, used, ceiling, evicted, size)
  else
    out[i] = copy(key)
    if out[i] == COPIED then spent = spent + size end
  end
end
return reply(DONE, spent, out, used, ceiling, evicted, 0)
"""
)


def copy_arguments(
    source_db,
    target_db,
    verb,
    guard,
    *,
    budget,
    sized,
    batch_size,
    cursor,
    pattern,
    index_names,
    left,
):
    """The copy script's ARGV; Session.write() adds the deadline last (LUA_DEADLINE)."""
    return [
        *guarded_arguments(source_db, target_db, verb, guard),  # ARGV[1..7]
        budget,  # ARGV[8]: this call's byte budget, 0 for none
        "1" if sized else "0",  # ARGV[9]: whether keys are sized with MEMORY USAGE
        batch_size,  # ARGV[10]
        cursor,  # ARGV[11]: the SCAN cursor to go on from, '' once the walk is over
        pattern,  # ARGV[12]
        limit_us(),  # ARGV[13]: the call's time limit, in µs
        len(index_names),  # ARGV[14]: how many index names follow, never handled as keys
        *index_names,
        *left,  # the keys an earlier call found and did not handle
    ]


class CopyReply(NamedTuple):
    """What a call of the copy script returns. An outcome is COPIED (planning: to copy),
    PRESENT (the target has it), GONE (expired from the source) or the error of a write that
    failed."""

    ended: int  # lua.DONE, BUDGET, MEMORY or EVICTED
    spent: int  # bytes copied; planning: to copy
    handled: list  # the keys handled, in order
    outcomes: list  # one per key handled
    used_memory: int
    ceiling: int
    evicted_keys: bytes
    need: int  # bytes of the key that the memory guard found no room for
    cursor: bytes  # where the next call goes on, b'' once the walk is over
    left: list  # the keys found and not handled, for the next call
    took_us: int  # the call's own server time, 0 when unknown (lua.LUA_HEADER)

    @classmethod
    def from_reply(cls, raw):
        """The script returns every key it found and an outcome for each it handled, the
        first of them: the split is made here, not in Lua, where it would cost the server a
        table of its own each call."""
        ended, spent, found, outcomes, *memory, cursor, took = raw
        handled, left = found[: len(outcomes)], found[len(outcomes) :]
        return cls(ended, spent, handled, outcomes, *memory, cursor, left, took)


# Its verb: 'plan' or 'merge'; its arguments: index_arguments(), the index sorted set among
# them. No key is declared in KEYS, as in the copy script: ACL then checks each command on the
# index, so a user who may only read the source index may still check it (the clean-up does,
# with 'plan').
# Reads one page of the source index, in score order, and merges it into the target index on
# the server: members already in the target keep their score (ZADD NX, whose reply counts the
# members it added). Score order, not ZSCAN's hash order: ZRANGE reads the skiplist in
# sequence and ZADD then inserts near the entries it inserted last, which at 1M entries takes
# the server about half the time (README, Performance). A page starts after the last entry
# the walk has seen, its rank, score and member: found again by ZRANK, or after its score,
# when the index changed before it meanwhile. Returns an IndexReply. A page the memory guard
# stops is not merged at all, and the place returned is the one it was given.
INDEX_SCRIPT = (
    LUA_HEADER
    + LUA_DEADLINE
    + LUA_MEMORY_GUARD
    + """
local src, dst, verb = ARGV[1], ARGV[2], ARGV[3]
local seen_rank, seen_score, seen_member = tonumber(ARGV[8]), ARGV[9], ARGV[10]
local count, index, limit_us = tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])
local function stopped(ended, need, used, ceiling, evicted)
  return {ended, 0, {seen_rank, seen_score, seen_member}, 0, 0, 0, {}, '', need, used, ceiling,
    evicted, took_us()}
end
local room, used, ceiling, evicted = math.huge, 0, 0, evicted_at_start
if verb == 'merge' then
  room, used, ceiling, evicted = memory_room(dst, 0)
  if not room then return stopped(EVICTED, 0, used, ceiling, evicted) end
end

-- Whether member a sorts at or before b, byte by byte as the index orders equal scores (Lua's
-- own comparison follows the server's locale).
local function at_or_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end

-- The rank this page starts at: just after the last entry seen.
local function first_rank()
  if seen_rank < 0 then return 0 end
  local there = redis.call('ZRANGE', index, seen_rank, seen_rank, 'WITHSCORES')
  if there[1] == seen_member and there[2] == seen_score then return seen_rank + 1 end
  -- The index changed before the walk's place: that entry, where it is now.
  local rank = redis.call('ZRANK', index, seen_member)
  if rank and redis.call('ZSCORE', index, seen_member) == seen_score then return rank + 1 end
  -- It has left, or moved: after the entries of a lower score, then those of its score up to
  -- its member (a binary search of the entries of equal score).
  local low = redis.call('ZCOUNT', index, '-inf', '(' .. seen_score)
  local high = redis.call('ZCOUNT', index, '-inf', seen_score)
  while low < high do
    local middle = math.floor((low + high) / 2)
    local entry = redis.call('ZRANGE', index, middle, middle)
    if at_or_before(entry[1], seen_member) then low = middle + 1 else high = middle end
  end
  return low
end

redis.call('SELECT', src)
local start = first_rank()
-- One entry more than the page: whether it is the last is known without another call.
local flat = redis.call('ZRANGE', index, start, start + count, 'WITHSCORES')
local over = #flat <= 2 * count and 1 or 0
local members, scored = {}, {}
for i = 1, math.min(#flat, 2 * count), 2 do
  members[(i + 1) / 2] = flat[i]
  scored[i], scored[i + 1] = flat[i + 1], flat[i]
end
local place = {seen_rank, seen_score, seen_member}
if #members > 0 then place = {start + #members - 1, scored[#scored - 1], scored[#scored]} end
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
if verb == 'merge' then
  need = bytes(members)
  -- Only the entries the target lacks take memory: count them before refusing the page.
  if need > room then need = bytes(new_members()) end
  if need > 0 and need > room then return stopped(MEMORY, need, used, ceiling, evicted) end
end
-- 1,000 entries at a time: merged (planning: counted), then their sessions looked up in the
-- target, where one EXISTS settles the usual case. Past its time limit
-- (sizing.CALL_LIMIT_SECONDS), a merge ends its page at the entries done.
local in_target = 0
for first = 1, #members, 1000 do
  local last = math.min(first + 999, #members)
  if verb == 'plan' then
    for i = first, last do
      if not redis.call('ZSCORE', index, members[i]) then added = added + 1 end
    end
  else
    local r = redis.pcall('ZADD', index, 'NX', unpack(scored, 2 * first - 1, 2 * last))
    if type(r) == 'table' then
      -- Refused (e.g. OOM): not an error if the target already has every one of them.
      for i = first, last do
        if not redis.call('ZSCORE', index, members[i]) then err = r.err end
      end
      if err ~= '' then break end
    else
      added = added + r
    end
  end
  in_target = in_target + redis.call('EXISTS', unpack(members, first, last))
  if verb == 'merge' and last < #members and took_us() > limit_us then
    for i = #members, last + 1, -1 do members[i] = nil end
    place, over = {start + last - 1, scored[2 * last - 1], scored[2 * last]}, 0
    break
  end
end
local elsewhere, orphans = {}, 0
if in_target < #members then
  for _, member in ipairs(members) do
    if redis.call('EXISTS', member) == 0 then elsewhere[#elsewhere + 1] = member end
  end
  redis.call('SELECT', src)
  for _, member in ipairs(elsewhere) do orphans = orphans + 1 - redis.call('EXISTS', member) end
end
return {DONE, over, place, added, #members - added, orphans, members, err, need, used, ceiling,
  evicted, took_us()}
"""
)

# Where an index walk starts: before its first entry (IndexReply.place).
INDEX_START = (-1, "", "")


def index_arguments(source_db, target_db, verb, guard, *, place, count, index):
    """The index script's ARGV; Session.write() adds the deadline last (LUA_DEADLINE)."""
    return [
        *guarded_arguments(source_db, target_db, verb, guard),  # ARGV[1..7]
        *place,  # ARGV[8..10]: the rank, score and member of the last entry seen, INDEX_START
        count,  # ARGV[11]: entries a page, sized by the caller to its time and the byte budget
        index,  # ARGV[12]: the index sorted set
        limit_us(),  # ARGV[13]: the call's time limit, in µs
    ]


class IndexReply(NamedTuple):
    """What a call of the index script returns."""

    ended: int  # lua.DONE, MEMORY or EVICTED
    over: int  # 1 once the walk has read the last entry of the index
    place: list  # the last entry seen: its rank, score and member; where the next page starts
    added: int
    present: int
    orphans: int  # members whose session key exists in neither db, merged all the same
    members: list  # the page's names, for the read-back
    error: bytes  # b'' or why the merge failed
    need: int  # bytes the page needs
    used_memory: int
    ceiling: int
    evicted_keys: bytes
    took_us: int  # the call's own server time, 0 when unknown (lua.LUA_HEADER)

    @classmethod
    def from_reply(cls, raw):
        return cls(*raw)
