"""Seed a throwaway Redis with sample StoryArt sessions, the way the application wrote them.

db 1 gets 250 sessions (most with a 7-day TTL, a few persistent) and their index. db 0 already
holds 5 of them with newer content and a newer index score, as after a partial earlier move,
and the db 1 index has 2 entries whose session expired long ago.
"""

import argparse
import json

import redis

SESSION = "storyart:session:{}"
INDEX = "storyart:sessions:index"
START = 1704067200000


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--sessions", type=int, default=250)
    args = parser.parse_args()

    old = redis.Redis(host=args.host, port=args.port, db=1)
    new = redis.Redis(host=args.host, port=args.port, db=0)
    pipe = old.pipeline(transaction=False)
    for n in range(args.sessions):
        stamp = START + n * 60_000
        body = json.dumps({"title": f"Story {n}", "panels": list(range(n % 7)), "v": 1})
        pipe.set(SESSION.format(stamp), body, ex=None if n % 50 == 0 else 604800)
        pipe.zadd(INDEX, {SESSION.format(stamp): stamp})
    for stamp in (START - 86_400_000, START - 172_800_000):
        pipe.zadd(INDEX, {SESSION.format(stamp): stamp})
    pipe.execute()
    for n in range(5):
        stamp = START + n * 60_000
        new.set(SESSION.format(stamp), json.dumps({"title": f"Story {n}", "v": 2}), ex=604800)
        new.zadd(INDEX, {SESSION.format(stamp): stamp + 1})
    print(
        f"Seeded redis {args.host}:{args.port}: db 1 has {old.dbsize() - 1} sessions and "
        f"{old.zcard(INDEX)} index entries; db 0 already has {new.dbsize() - 1} of them."
    )


if __name__ == "__main__":
    main()
