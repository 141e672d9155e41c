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
    return contents(client, [key])[0]


def contents(client, keys):
    """content() of each of ``keys``, in two round trips whatever their number."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key).object("encoding", key).dump(key)
    replies = pipe.execute()
    found = list(zip(replies[0::3], replies[1::3], replies[2::3]))
    for key, (kind, encoding, _) in zip(keys, found):
        if encoding == b"hashtable":
            (pipe.hgetall if kind == b"hash" else pipe.smembers)(key)
    members = iter(pipe.execute())
    return [
        (kind, next(members) if encoding == b"hashtable" else payload)
        for kind, encoding, payload in found
    ]


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


def assert_same_value_and_expiry(source: redis.Redis, target: redis.Redis, keys, *, read=None):
    """Each of ``keys`` is in ``target`` with the type and value it has in ``source`` and the
    same absolute expiry to the ms. Values are compared as content() reads them (every key in
    two round trips), or as ``read(client, key)`` does: data_of, whatever the encoding, say.
    No keys, or a key missing from either side, fails: two missing keys are not the same."""
    keys = list(keys)
    assert keys, "no keys to compare"
    was, now = expiries(source, keys), expiries(target, keys)
    for side, expires in (("source", was), ("target", now)):
        missing = [key for key, at in zip(keys, expires) if at == -2]
        assert not missing, f"{len(missing)} keys not in the {side}, e.g. {missing[:3]}"
    if read is None:
        values = zip(contents(source, keys), contents(target, keys))
    else:
        values = ((read(source, key), read(target, key)) for key in keys)
    for key, (value, copied), at_source, at_target in zip(keys, values, was, now):
        assert copied == value, key
        assert at_target == at_source, (
            f"{key!r} expires at {at_target} in the target, {at_source} in the source (ms)"
        )


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


def migrate_with_engine(server, *, settings=None, hooks=None, **overrides):
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
