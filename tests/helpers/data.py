"""The data the tests seed and read back: StoryArt-like sessions, snapshots of a db with exact
absolute expiries on every server version, values read by type, and the engine itself."""

from __future__ import annotations

import redis

from .engine import engine
from .servers import server_version

SESSION = b"storyart:session:"
INDEX = b"storyart:sessions:index"
PATTERN = "storyart:session:*"


# Absolute expiry in ms of each key before Redis 7.0, which has no PEXPIRETIME: PTTL read
# between two TIME replies of the same millisecond, so that both read the same clock.
EXPIRY_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  while not out[i] do
    local before = redis.call('TIME')
    local ttl = redis.call('PTTL', key)
    local after = redis.call('TIME')
    local ms = before[1] * 1000 + math.floor(before[2] / 1000)
    if ttl < 0 then
      out[i] = ttl
    elseif ms == after[1] * 1000 + math.floor(after[2] / 1000) then
      out[i] = ms + ttl
    end
  end
end
return out
"""


def expiries(client: redis.Redis, keys):
    """Each key's absolute expiry in ms (-1: none, -2: no such key), exact on every version."""
    keys = list(keys)
    if not keys:
        return []
    if server_version(client) < (7, 0):
        return client.eval(EXPIRY_SCRIPT, len(keys), *keys)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("PEXPIRETIME", key)
    return pipe.execute()


def expiry(client: redis.Redis, key):
    return expiries(client, [key])[0]


def snapshot(client: redis.Redis, match="*"):
    """Every key of the client's db: type, DUMP payload and absolute expiry in ms (-1: none)."""
    keys = list(client.scan_iter(match=match, count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.dump(key)
    replies = pipe.execute()
    return {
        key: (replies[2 * n], replies[2 * n + 1], at)
        for n, (key, at) in enumerate(zip(keys, expiries(client, keys)))
    }


def content(client, key):
    """Type and value of a key. DUMP serialises a hashtable in its bucket order, which differs
    between two equal hashes or sets, so those are compared by content."""
    kind = client.type(key)
    if client.object("encoding", key) != b"hashtable":
        return kind, client.dump(key)
    if kind == b"hash":
        return kind, client.hgetall(key)
    return kind, client.smembers(key)


def data_of(client: redis.Redis, key):
    """Type and value of a key read with each type's own commands, whatever its encoding:
    what the clean-up means by two keys being the same (expiries and stream groups aside)."""
    kind = client.type(key)
    read = {
        b"string": client.get,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"hash": client.hgetall,
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        b"stream": client.xrange,
    }
    return kind, read[kind](key) if kind in read else client.dump(key)


def zset(client: redis.Redis, key=INDEX):
    return dict(client.zrange(key, 0, -1, withscores=True))


def session_body(n):
    return b'{"story":"draft %d","panels":[1,2,3]}' % n


def seed_sessions(
    client: redis.Redis,
    count,
    start=1704067200000,
    ttl=604800,
    prefix=SESSION,
    *,
    body=session_body,
):
    """``count`` StoryArt sessions with a TTL and their index entries, like the app writes;
    session n holds ``body(n)``."""
    pipe = client.pipeline(transaction=False)
    names = []
    for n in range(count):
        stamp = start + n * 1000
        key = prefix + str(stamp).encode()
        names.append(key)
        pipe.set(key, body(n), ex=ttl)
        pipe.zadd(INDEX, {key: stamp})
    pipe.execute()
    return names


def options(**overrides):
    """StoryArt's migration, db 1 to db 0 of the sessions and their index, with ``overrides``."""
    values = dict(source_db=1, target_db=0, patterns=(PATTERN,), indexes=(INDEX,))
    values.update(overrides)
    values["patterns"], values["indexes"] = tuple(values["patterns"]), tuple(values["indexes"])
    return engine.MigrationOptions(**values)


def run(server, *, settings=None, hooks=None, **overrides):
    """Migrate ``server`` with the engine, as the module does: options(**overrides)."""
    return engine.migrate(settings or server.settings(), options(**overrides), hooks)


def seed_with_overlap(server, total, already_there):
    """``total`` sessions in db 1; the first ``already_there`` also in db 0, newer, own scores.

    db 1 also holds a key no pattern matches, and db 0 an unrelated key: neither may move.
    Returns (session names, names already in db 0).
    """
    source, target = server.client(1), server.client(0)
    names = seed_sessions(source, total)
    source.set(b"storyart:config:theme", b"dark")
    present = names[:already_there]
    for n, name in enumerate(present):
        target.set(name, b'{"story":"edited in db 0"}', ex=3600)
        target.zadd(INDEX, {name: float(n + 1)})
    target.set(b"other:app:key", b"keep me", ex=7200)
    return names, present
