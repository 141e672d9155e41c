"""Benchmark of the session migration: the engine and the module against the server's own floor.

One throwaway redis-server, one dataset of N sessions (about 1 KB of JSON each, a 7-day TTL,
and the index) in db 1. Every method then migrates it into an empty db 0, in the same run:

- floor:     redis-cli --pipe fed the bare COPY of every key and ZADD NX of the index in
             batches: what the server itself needs for the job.
- engine:    the engine called directly (verification on), in a child process whose peak RSS
             is measured, while a second client PINGs every millisecond to see the latency
             the application would see. Also its dry run, and the DUMP/RESTORE path.
- module:    the redis_db_migrate module through ansible-playbook (start-up included).
- baseline:  per key like the old script: EXISTS in the target, GET, TTL, SET with the TTL,
             then ZADD of each index member one by one.
- rate:      the engine with a keys-per-second limit, to show it is honoured.
- unguarded: the engine as a user denied MEMORY, with memory_check off: no memory guard and
             no byte budget, to show what these two cost.
- large:     sessions of 100 KB to 2 MB of incompressible bytes, with COPY and DUMP/RESTORE,
             with the byte budget and without (one call per batch of keys): the longest server
             call and the latency another client sees.

Then the fleet: 20 inventory hosts, each with its own redis-server and 20k sessions, in one
ansible-playbook run of playbooks/migrate_sessions.yml, against one such host alone; and 10
hosts sharing one endpoint against one host. Results print as a table and go to a JSON file.
Run it with scripts/bench.sh; it is not part of the tests.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# The tests' own throwaway server, and the engine as the tests import it.
from helpers import RedisServer, engine  # noqa: E402

SESSION = b"storyart:session:%d"
INDEX = b"storyart:sessions:index"
START = 1704067200000
TTL = 604800
_servers = itertools.count()


def start_server(workdir):
    """A throwaway redis-server with no persistence and no memory limit, in ``workdir``."""
    return RedisServer(Path(workdir) / f"redis-{next(_servers)}").start()


def seed(server, count, sessions_in_target=0):
    """``count`` sessions of about 1 KB with a TTL, and the index, in db 1."""
    source = server.client(1)
    pipe = source.pipeline(transaction=False)
    for n in range(count):
        key = SESSION % (START + n)
        body = json.dumps(
            {"title": f"Story {n}", "panels": [{"id": p, "text": "x" * 90} for p in range(8)]}
        ).encode()
        pipe.set(key, body, ex=TTL)
        pipe.zadd(INDEX, {key: START + n})
        if n % 10000 == 9999:
            pipe.execute()
    pipe.execute()
    for n in range(sessions_in_target):
        server.client(0).set(SESSION % (START + n), b"newer", ex=TTL)


def check_migrated(server, count):
    target = server.client(0)
    got = (target.dbsize(), target.zcard(INDEX))
    if got != (count + 1, count):
        raise SystemExit(f"migration incomplete: db 0 has {got}, expected {(count + 1, count)}")


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def floor(server, count, batch):
    """redis-cli --pipe with the bare commands of the job; the server's own cost."""
    commands = [resp("SELECT", 1)]
    commands += [resp("COPY", SESSION % (START + n), SESSION % (START + n), "DB", 0)
                 for n in range(count)]  # fmt: skip
    commands.append(resp("SELECT", 0))
    for first in range(0, count, batch):
        args = ["ZADD", INDEX, "NX"]
        for n in range(first, min(count, first + batch)):
            args += [START + n, SESSION % (START + n)]
        commands.append(resp(*args))
    payload = b"".join(commands)
    started = time.monotonic()
    subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"], input=payload,
                   stdout=subprocess.DEVNULL, check=True)  # fmt: skip
    return time.monotonic() - started


def baseline(server, count):
    """The old script's way: a round trip per step, per key and per index member."""
    source, target = server.client(1), server.client(0)
    started = time.monotonic()
    for key in source.scan_iter(match=b"storyart:session:*", count=1000):
        if target.exists(key):
            continue
        value = source.get(key)
        ttl = source.ttl(key)
        if ttl > 0:
            target.set(key, value, ex=ttl)
        else:
            target.set(key, value)
    for member, score in source.zscan_iter(INDEX, count=1000):
        target.zadd(INDEX, {member: score}, nx=True)
    elapsed = time.monotonic() - started
    del count
    return elapsed


class LatencyProbe(threading.Thread):
    """PINGs from a second connection every millisecond; what the application would see."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.client = redis.Redis(host="127.0.0.1", port=server.port)  # as the application
        self.samples = []
        self.running = True

    def run(self):
        while self.running:
            started = time.perf_counter()
            self.client.ping()
            self.samples.append((time.perf_counter() - started) * 1000)
            time.sleep(0.001)

    def stop(self):
        self.running = False
        self.join()
        ordered = sorted(self.samples) or [0.0]
        return dict(
            pings=len(ordered),
            p50_ms=round(statistics.median(ordered), 3),
            p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            max_ms=round(ordered[-1], 3),
        )


def peak_rss_mb():
    """This process's peak resident memory. (ru_maxrss would include the parent's, from before
    exec; VmHWM starts afresh.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def engine_child(port, settings, options):
    """Run in a child process: one migration, then its duration and peak RSS as JSON."""
    options = engine.MigrationOptions(
        source_db=1, target_db=0, patterns=("storyart:session:*",), indexes=(INDEX,), **options
    )
    started = time.monotonic()
    report = engine.migrate(engine.ConnectionSettings(port=port, **settings), options)
    elapsed = time.monotonic() - started
    print(json.dumps(dict(
        seconds=elapsed, ok=report.ok, migrated=report.migrated, strategy=report.strategy,
        peak_rss_mb=peak_rss_mb(),
    )))  # fmt: skip


def run_engine(server, *, probe=False, settings=None, **options):
    """One engine run in a child process; ``options`` are MigrationOptions fields."""
    latency = LatencyProbe(server) if probe else None
    admin = server.client(0)
    # Every command of 1 ms or more is logged: the longest shows what a batch blocks the server.
    admin.config_set("slowlog-log-slower-than", 1000)
    admin.config_set("slowlog-max-len", 100000)
    admin.slowlog_reset()
    if latency:
        latency.start()
    out = subprocess.run(
        [sys.executable, __file__, "--engine-child", str(server.port),
         json.dumps(settings or {}), json.dumps(options)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    if latency:
        result["latency"] = latency.stop()
    slow = admin.slowlog_get(100000)
    result["server_blocked"] = dict(
        calls_over_1ms=len(slow),
        longest_ms=round(max((entry["duration"] for entry in slow), default=0) / 1000, 2),
    )
    if not result["ok"]:
        raise SystemExit(f"engine run failed: {result}")
    return result


def timed_playbook(workdir, *args):
    """Seconds one ansible-playbook run takes, from the repository root with its ansible.cfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(Path(workdir) / "ansible-tmp"),
        ANSIBLE_FORKS="50",
        ANSIBLE_NOCOLOR="1",
    )
    started = time.monotonic()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if out.returncode:
        raise SystemExit(
            f"ansible-playbook {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr}"
        )
    return elapsed


def run_module(server, workdir, batch):
    playbook = Path(workdir) / "module.yml"
    playbook.write_text(json.dumps([{
        "name": "Benchmark the module", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Migrate", "redis_db_migrate": {
            "login_host": "127.0.0.1", "login_port": server.port, "source_db": 1,
            "target_db": 0, "patterns": ["storyart:session:*"], "indexes": [INDEX.decode()],
            "batch_size": batch}}],
    }]))  # fmt: skip
    return timed_playbook(
        workdir, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
        "-c", "local", str(playbook),
    )  # fmt: skip


def run_fleet(servers, workdir, name, shared=False):
    """One ansible-playbook run of the real playbook over one host per server (or 10 sharing)."""
    hosts = {}
    for n, server in enumerate(servers if not shared else servers * 10):
        hosts[f"{name}-{n:02d}"] = {
            "storyart_session_migration_login_port": server.port,
            "storyart_session_migration_run_on": "controller",
            "ansible_host": "127.0.0.1",
        }
    inventory = Path(workdir) / f"{name}.json"
    inventory.write_text(json.dumps({"storyart": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "storyart_session_migration_report_dir": str(Path(workdir) / "reports"),
    }}}))  # fmt: skip
    return timed_playbook(
        workdir, "-i", str(inventory), str(ROOT / "playbooks" / "migrate_sessions.yml")
    )


def reset_target(server):
    server.client(0).flushdb()


def single_host(args, workdir, results):
    server = start_server(workdir)
    try:
        count = args.sessions
        print(f"Seeding {count} sessions...", flush=True)
        seed(server, count)
        t = results["times"] = {}
        t["floor"] = floor(server, count, args.batch_size)
        check_migrated(server, count)
        reset_target(server)
        run = run_engine(server, batch_size=args.batch_size, probe=True)
        check_migrated(server, count)
        t["engine"] = run["seconds"]
        results["engine"] = run
        reset_target(server)
        t["engine_unguarded"] = run_engine(
            server, settings=unguarded_user(server), batch_size=args.batch_size,
            memory_check=False,
        )["seconds"]  # fmt: skip
        check_migrated(server, count)
        t["engine_dry_run"] = run_engine(server, dry_run=True, batch_size=args.batch_size)[
            "seconds"
        ]
        reset_target(server)
        restore = run_engine(server, strategy="dump-restore", batch_size=args.batch_size)
        check_migrated(server, count)
        t["engine_dump_restore"] = restore["seconds"]
        reset_target(server)
        t["module"] = run_module(server, workdir, args.batch_size)
        check_migrated(server, count)
        if args.rate:
            reset_target(server)
            limited = run_engine(server, batch_size=args.batch_size, max_keys_per_second=args.rate)
            # The limit counts keys and index entries: 2 items a session.
            achieved = 2 * count / limited["seconds"]
            results["rate_limit"] = dict(
                limit_items_per_second=args.rate,
                achieved=round(achieved),
                honoured=achieved <= args.rate * 1.05,
            )
        if not args.skip_baseline:
            reset_target(server)
            t["baseline"] = baseline(server, count)
            check_migrated(server, count)
    finally:
        server.stop()
    results["keys_per_second"] = {name: round(count / s) for name, s in t.items()}
    ratios = results["ratios"] = {
        "engine / floor": t["engine"] / t["floor"],
        "module / floor": t["module"] / t["floor"],
        "dry run / engine": t["engine_dry_run"] / t["engine"],
        "dump-restore / floor": t["engine_dump_restore"] / t["floor"],
        "engine / unguarded engine": t["engine"] / t["engine_unguarded"],
    }
    if "baseline" in t:
        ratios["baseline / engine"] = t["baseline"] / t["engine"]
        ratios["baseline / module"] = t["baseline"] / t["module"]
    results["ratios"] = {k: round(v, 2) for k, v in ratios.items()}


def unguarded_user(server):
    """A user denied MEMORY: the engine then sizes no key, so with memory_check off it runs
    with neither the memory guard nor the byte budget."""
    server.client(0).execute_command(
        "ACL", "SETUSER", "unguarded", "on", ">bench", "~*", "&*", "+@all", "-memory"
    )
    return dict(username="unguarded", password="bench")  # noqa: S106 - a throwaway bench user


def large_sessions(args, workdir, results):
    """Sessions of 100 KB to 2 MB of random bytes: the longest server call and the latency
    another client sees, with the default byte budget and without one."""
    server = start_server(workdir)
    rows = results["large_sessions"] = {}
    try:
        data = random.Random(4)  # noqa: S311 - reproducible data, not a secret
        pipe = server.client(1).pipeline(transaction=False)
        for n in range(args.large_sessions):
            key = SESSION % (START + n)
            pipe.set(key, data.randbytes(data.randint(100_000, 2_000_000)), ex=TTL)
            pipe.zadd(INDEX, {key: START + n})
            if n % 20 == 19:
                pipe.execute()
        pipe.execute()
        for strategy in ("copy", "dump-restore"):
            for label, budget in (("budget", 0), ("no budget", 1 << 40)):
                reset_target(server)
                run = run_engine(
                    server, probe=True, strategy=strategy, max_batch_bytes=budget,
                    batch_size=args.batch_size,
                )  # fmt: skip
                check_migrated(server, args.large_sessions)
                rows[f"{strategy}, {label}"] = dict(
                    seconds=round(run["seconds"], 2),
                    longest_call_ms=run["server_blocked"]["longest_ms"],
                    ping_p99_ms=run["latency"]["p99_ms"],
                    ping_max_ms=run["latency"]["max_ms"],
                )
    finally:
        server.stop()


def fleet(args, workdir, results):
    servers = [start_server(workdir) for _ in range(args.fleet_hosts)]
    try:
        print(f"Seeding {args.fleet_hosts} servers with {args.fleet_sessions} sessions...",
              flush=True)  # fmt: skip
        for server in servers:
            seed(server, args.fleet_sessions)
        one = run_fleet(servers[:1], workdir, "one")
        for server in servers:
            reset_target(server)
        many = run_fleet(servers, workdir, "fleet")
        for server in servers:
            check_migrated(server, args.fleet_sessions)
        reset_target(servers[0])
        shared = run_fleet(servers[:1], workdir, "shared", shared=True)
        check_migrated(servers[0], args.fleet_sessions)
    finally:
        for server in servers:
            server.stop()
    results["fleet"] = dict(
        hosts=args.fleet_hosts, sessions_per_host=args.fleet_sessions,
        one_host_seconds=round(one, 2), fleet_seconds=round(many, 2),
        fleet_over_one=round(many / one, 2), shared_10_seconds=round(shared, 2),
        shared_10_over_one=round(shared / one, 2),
    )  # fmt: skip


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--engine-child":
        port, settings, options = sys.argv[2:5]
        engine_child(int(port), json.loads(settings), json.loads(options))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--rate", type=int, default=100_000, help="keys/s for the rate run; 0: skip"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="(it takes minutes at 1M)")
    parser.add_argument("--fleet-hosts", type=int, default=20)
    parser.add_argument("--fleet-sessions", type=int, default=20_000)
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument(
        "--large-sessions", type=int, default=100, help="sessions of 100 KB-2 MB; 0: skip"
    )
    parser.add_argument("--output", default=str(ROOT / "reports" / "bench.json"))
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    results = dict(sessions=args.sessions, batch_size=args.batch_size, cpus=os.cpu_count())
    with tempfile.TemporaryDirectory() as workdir:
        single_host(args, workdir, results)
        if args.large_sessions:
            large_sessions(args, workdir, results)
        if not args.skip_fleet:
            fleet(args, workdir, results)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"Written to {args.output}")


if __name__ == "__main__":
    main()
