"""What the Lua scripts of the engine share: outcome codes, the header, the deadline, the memory
guard and its arguments.

Scripts stay in .py files: Ansible's module bundler ships only Python.
"""

from __future__ import annotations

# Memory a key takes beyond its MEMORY USAGE: the entry of its expiry.
KEY_OVERHEAD = 48
# Memory one index entry takes beyond its member name: skiplist node, score and dict entry.
INDEX_ENTRY_BYTES = 96

# Outcome codes of the copy script, per key.
COPIED, PRESENT, GONE = 0, 1, 2
# Outcome codes of the clean-up script, per key.
IDENTICAL, DIFFERENT, NO_COPY, CLEAN_GONE = 0, 1, 2, 3
# How a script call ended: every key handled; stopped at its byte budget (the next call takes
# the rest); stopped by the memory guard because the next write would not fit; stopped
# because the server has evicted keys since the run started; or not run at all, because it
# reached the server after its deadline (LUA_DEADLINE).
DONE, BUDGET, MEMORY, EVICTED, EXPIRED = 0, 1, 2, 3, 4

# Every script starts with this. Redis 5 and 6 let a script write after a non-deterministic
# command (TIME, INFO, SCAN) only when it replicates its effects; Redis 7 always does. Then it
# reads the server's clock: the deadline (LUA_DEADLINE) is judged against it, and took_us()
# gives the call's own duration, which sizes the next call (sizing.py). Some servers (Valkey)
# freeze TIME for the length of a script: their CPU clock (os.clock, which they offer) counts
# instead; where neither moves, or TIME is denied (verify needs no TIME), took_us() is 0 and the
# caller keeps the size it has.
LUA_HEADER = f"""
if redis.replicate_commands then redis.replicate_commands() end
local COPIED, PRESENT, GONE = {COPIED}, {PRESENT}, {GONE}
local IDENTICAL, DIFFERENT, NO_COPY, CLEAN_GONE = {IDENTICAL}, {DIFFERENT}, {NO_COPY}, {CLEAN_GONE}
local DONE, BUDGET, MEMORY, EVICTED, EXPIRED = {DONE}, {BUDGET}, {MEMORY}, {EVICTED}, {EXPIRED}
local KEY_OVERHEAD, INDEX_ENTRY_BYTES = {KEY_OVERHEAD}, {INDEX_ENTRY_BYTES}
local function now_us()
  local now = redis.pcall('TIME')
  if now.err then return 0 end
  return tonumber(now[1]) * 1000000 + tonumber(now[2])
end
local cpu_clock = nil
pcall(function() cpu_clock = os.clock end)
local started_us, started_cpu = now_us(), cpu_clock and cpu_clock() or 0
local function took_us()
  local took = now_us() - started_us
  if took == 0 and cpu_clock then took = math.floor((cpu_clock() - started_cpu) * 1000000) end
  return took
end
"""

# The deadline of a call that writes, in its last ARGV: the time in ms on the server's clock
# after which it must not run, or 0 for none (in_flight.py). It is checked, against the time
# LUA_HEADER read, before anything else, so a call that reaches the server later (held in a
# stalled network after its caller gave up) returns {EXPIRED, the server's time} and changes
# nothing. Scripts replicate their effects, not themselves (LUA_HEADER): replicas and the AOF
# replay what a call did, or nothing, and never judge its deadline again.
LUA_DEADLINE = """
local not_after = tonumber(ARGV[#ARGV])
if not_after > 0 then
  -- Without the time, no deadline can be judged: the call fails with TIME's own error.
  if started_us == 0 then redis.call('TIME') end
  local now = math.floor(started_us / 1000)
  if now > not_after then return {EXPIRED, now} end
end
"""

# The memory guard, run before a call writes anything, by the scripts whose ARGV[1..7] are
# guarded_arguments(). Returns the bytes this call may still add (nil once the server has
# evicted keys since the start), used_memory, the ceiling and evicted_keys. The ceiling is read
# afresh each call, so raising maxmemory mid-run counts.
LUA_MEMORY_GUARD = """
local guard_on, headroom = ARGV[4] == '1', ARGV[5]
local ceiling_without_maxmemory, evicted_at_start = ARGV[6], ARGV[7]
local function memory_room(dst, new_keys)
  if not guard_on then return math.huge, 0, 0, evicted_at_start end
  local evicted = redis.call('INFO', 'stats'):match('evicted_keys:(%d+)')
  local info = redis.call('INFO', 'memory')
  local used = tonumber(info:match('used_memory:(%d+)'))
  local max = tonumber(info:match('maxmemory:(%d+)'))
  local ceiling = tonumber(ceiling_without_maxmemory)
  if max > 0 then ceiling = math.floor(max * (100 - tonumber(headroom)) / 100) end
  if evicted ~= evicted_at_start then return nil, used, ceiling, evicted end
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


def guarded_arguments(source_db, target_db, verb, guard):
    """ARGV[1..7] of a script that runs the memory guard. ``verb``: what the call does, 'plan'
    for nothing written. ``guard``: memory.MemoryGuard.script_args, '1' when the guard is on,
    the percentage of maxmemory kept free, the ceiling of used_memory when the server has no
    maxmemory, and evicted_keys when the run started."""
    return [source_db, target_db, verb, *guard]


def expired_at(reply):
    """The server's time in ms when a script's ``reply`` says the call reached it after its
    deadline and did not run (LUA_DEADLINE); None when it ran."""
    return reply[1] if reply[0] == EXPIRED else None
