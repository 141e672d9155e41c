-- Snapshot of the selected db, as JSON: every key with its type, value, DUMP digest and
-- expiry. Read-only: it calls no write command, so INFO's rdb_changes_since_last_save (and
-- the key space) stay exactly as they were. Runs on Redis 6.0 and 7.x.
--
-- {"entries": {KEY: {"type", "value", "dump_sha1", "persistent", "pexpiretime"}},
--  "pttl": {KEY: milliseconds left, -1 when persistent}}
-- "entries" does not change while nothing writes (absolute expiry); "pttl" counts down.
-- pexpiretime is null on Redis before 7.0, which has no PEXPIRETIME.
local entries, pttls = {}, {}
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local kind = redis.call('TYPE', key)['ok']
    local value
    if kind == 'string' then
      value = redis.call('GET', key)
    elseif kind == 'hash' then
      value = {}
      local flat = redis.call('HGETALL', key)
      for i = 1, #flat, 2 do value[flat[i]] = flat[i + 1] end
    elseif kind == 'list' then
      value = redis.call('LRANGE', key, 0, -1)
    elseif kind == 'set' then
      value = redis.call('SMEMBERS', key)
      table.sort(value)
    elseif kind == 'zset' then
      value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    elseif kind == 'stream' then
      value = redis.call('XRANGE', key, '-', '+')
    end
    local pttl = redis.call('PTTL', key)
    local expiretime = redis.pcall('PEXPIRETIME', key)
    if type(expiretime) ~= 'number' then expiretime = cjson.null end
    entries[key] = {
      type = kind,
      value = value,
      dump_sha1 = redis.sha1hex(redis.call('DUMP', key)),
      persistent = pttl == -1,
      pexpiretime = expiretime,
    }
    pttls[key] = pttl
  end
until cursor == '0'
return cjson.encode({entries = entries, pttl = pttls})
