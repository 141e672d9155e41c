"""The script of the preflight: the memory estimate. (What the user may run: probe.py.)"""

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
