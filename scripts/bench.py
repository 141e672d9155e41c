"""Benchmark of the session migration: the engine, the module and a peer tool against the
server's own floor, then the controller's cost per host across a fleet.

For each size N (200k, 1M and 3M sessions by default), one throwaway redis-server holds N
sessions (about 1 KB of JSON each, a 7-day TTL, and the index) in db 1. Every method then
migrates them into an empty db 0, in the same run, with its wall time and the server's CPU
time (from /proc/<pid>/stat):

- floor:     redis-cli --pipe fed the bare COPY of every key and ZADD NX of the index in
             batches: what the server itself needs for the job, finding no key.
- engine:    the engine called directly, every guarantee on (memory guard, byte budget,
             read-back), in a child process whose peak RSS is measured, while a second client
             PINGs every millisecond to see the latency the application would see.
- engine_unguarded: the same as a user denied MEMORY, with memory_check off: no memory guard
             and no byte budget, to show what these two cost.
- engine_dump_restore: the DUMP/RESTORE strategy.
- module:    the redis_db_migrate module through ansible-playbook (start-up included).
- engine_dry_run: the dry run, into a db 0 that has every session.
The floor, the engine and the unguarded engine, whose ratios are the targets, run three times
in turn (--rounds); each keeps its median run. With the first size only: the rate limit
honoured; redis-dump-load (--peer-bin), the PyPI tool for the job, dumping db 1 and loading
db 0 with EXPIREAT; the old script's way, a round trip per step per key (unless
--skip-baseline).

Replicated: a primary with one healthy replica attached holds N sessions (1M by default). The
engine as it runs by default there, each call's writes acknowledged by the replica (WAIT), runs
in turn with the same engine told to wait for no replica (min_replicas 0), three times each
(--rounds), median kept: what the high-availability safety costs, until the engine ends and
until the replica holds every session (a run that waits for no replica may end before it does).

The link: --link-sessions sessions (100,000 by default) and their index migrated direct, then
through a proxy adding --link-delay (20 ms) each way, as a Redis in another zone or the
controller's mode does: the wall time and the request round trips of each (tests/helpers/
latency.py counts them). `--only link` runs this section alone.

Commands: --commands-sessions sessions (1M by default) migrated by the floor, by the
guarantees' floor (the floor's commands and those the guarantees add, bare, through
redis-cli --pipe) and by the engine, --rounds times in turn, with INFO commandstats reset
before each: each command's server time per session, those the scripts ran included (and
counted again in EVALSHA's own), for the median run by server CPU. `--only commands` runs
this section alone.

Large sessions: 100 KB to 2 MB of incompressible bytes, with COPY and DUMP/RESTORE, with the
byte budget and without: the longest server call and the latency another client sees.

Pacing: at each rate (--pacing; 100, 500, 5,000 and 100,000 keys and index entries a second
by default), as many sessions as take --pacing-seconds at that rate, migrated with full_verify
as the role does: the rate asked against the rate achieved (every key and index entry of each
pass, over the run's wall time), and the time preflight announced against the time it took.

The fleet: for 20 and 100 inventory hosts on local connections, each with its own small
redis-server, the controller's CPU seconds per host (ansible-playbook and every process it
starts) for playbooks/migrate_sessions.yml against a minimal playbook making the same single
module call per host; and 10 hosts sharing one endpoint, migrated once.

Results print as JSON and go to a file. Run it with scripts/bench.sh; it is not a test.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import itertools
import json
import os
import random
import resource
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

# The tests' own throwaway server and latency proxy, and the engine as the tests import it.
from helpers import LatencyProxy, RedisServer, engine  # noqa: E402

SESSION = b"storyart:session:%d"
INDEX = b"storyart:sessions:index"
START = 1704067200000
TTL = 604800
# Index entries a ZADD NX of the floor adds.
FLOOR_BATCH = 1000
# The engine's own batch_size: the most keys a call takes, each sized by its server time.
ENGINE_BATCH = {item.name: item.default for item in dataclasses.fields(engine.MigrationOptions)}[
    "batch_size"
]
_servers = itertools.count()


# Every redis-server the benchmark has started and not stopped.
RUNNING = []


def start_server(workdir):
    """A throwaway redis-server with no persistence and no memory limit, in ``workdir``."""
    server = RedisServer(Path(workdir) / f"redis-{next(_servers)}").start()
    RUNNING.append(server)
    return server


def stop_server(server):
    server.stop()
    RUNNING.remove(server)


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


def index_pages(count, batch):
    """The seeded index, ``batch`` entries at a time: each page's first rank and its
    (score, member) pairs, in score order."""
    for first in range(0, count, batch):
        yield (
            first,
            [(START + n, SESSION % (START + n)) for n in range(first, min(count, first + batch))],
        )


def piped(server, commands):
    """Seconds redis-cli --pipe takes to send ``commands`` (RESP, resp()) and read every reply."""
    payload = b"".join(commands)
    started = time.monotonic()
    subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"], input=payload,
                   stdout=subprocess.DEVNULL, check=True)  # fmt: skip
    return time.monotonic() - started


def floor(server, count, batch):
    """redis-cli --pipe with the bare commands of the job; the server's own cost: ZADD NX of
    ``batch`` index entries a command."""
    commands = [resp("SELECT", 1)]
    commands += [resp("COPY", SESSION % (START + n), SESSION % (START + n), "DB", 0)
                 for n in range(count)]  # fmt: skip
    commands.append(resp("SELECT", 0))
    for _first, entries in index_pages(count, batch):
        commands.append(resp("ZADD", INDEX, "NX", *itertools.chain.from_iterable(entries)))
    return piped(server, commands)


def guarantees_floor(server, count, batch):
    """redis-cli --pipe with the floor's commands and every command the engine's guarantees
    add, bare, each where the engine sends it: SCAN pages of the pattern (their cursors found
    beforehand), MEMORY USAGE then COPY of each key (the memory guard and the byte budget), the
    EXISTS of each page's keys in the target (the read-back); then for each page of ``batch``
    index entries, ZRANGE by rank, ZADD NX, the EXISTS of its sessions in the target (orphans)
    and ZMSCORE of its members (the read-back). What any engine with these guarantees asks of
    the server, without the scripts that make each call atomic and sized."""
    source, pattern = server.client(1), b"storyart:session:*"
    pages, cursor = [], 0
    while True:
        after, keys = source.scan(cursor, match=pattern, count=batch)
        pages.append((cursor, keys))
        cursor = after
        if cursor == 0:
            break
    commands = []
    for cursor, keys in pages:
        commands.append(resp("SELECT", 1))
        commands.append(resp("SCAN", cursor, "MATCH", pattern, "COUNT", batch))
        for key in keys:
            commands += [resp("MEMORY", "USAGE", key), resp("COPY", key, key, "DB", 0)]
        if keys:
            commands += [resp("SELECT", 0), resp("EXISTS", *keys)]
    for first, entries in index_pages(count, batch):
        members = [member for _score, member in entries]
        commands += [
            resp("SELECT", 1),
            resp("ZRANGE", INDEX, first, first + len(members), "WITHSCORES"),
            resp("SELECT", 0),
            resp("ZADD", INDEX, "NX", *itertools.chain.from_iterable(entries)),
            resp("EXISTS", *members),
            resp("ZMSCORE", INDEX, *members),
        ]
    return piped(server, commands)


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
        peak_rss_mb=peak_rss_mb(), pace=report.pace,
    )))  # fmt: skip


def run_engine(server, *, probe=False, settings=None, port=None, **options):
    """One engine run in a child process; ``options`` are MigrationOptions fields. ``port``:
    where the engine connects, when not the server's own (a proxy in front of it)."""
    latency = LatencyProbe(server) if probe else None
    admin = server.client(0)
    # Every command of 1 ms or more is logged: the longest shows what a batch blocks the server.
    admin.config_set("slowlog-log-slower-than", 1000)
    admin.config_set("slowlog-max-len", 100000)
    admin.slowlog_reset()
    if latency:
        latency.start()
    out = subprocess.run(
        [sys.executable, __file__, "--engine-child", str(port or server.port),
         json.dumps(settings or {}), json.dumps(options)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    if latency:
        result["latency"] = latency.stop()
    # The benchmark's own SLOWLOG RESET, freeing the entries of the run before, is logged too.
    slow = [
        entry
        for entry in admin.slowlog_get(100000)
        if not entry["command"].upper().startswith(b"SLOWLOG")
    ]
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


def fleet_inventory(servers, workdir, name, shared=0):
    """One inventory host per server, local connections; or ``shared`` hosts on the first."""
    ports = [servers[0].port] * shared if shared else [server.port for server in servers]
    inventory = Path(workdir) / f"{name}.json"
    inventory.write_text(json.dumps({"storyart": {
        "hosts": {f"{name}-{n:03d}": {"storyart_session_migration_login_port": port}
                  for n, port in enumerate(ports)},
        "vars": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "storyart_session_migration_run_on": "controller",
            "storyart_session_migration_login_host": "127.0.0.1",
            "storyart_session_migration_report_dir": str(Path(workdir) / f"reports-{name}"),
        },
    }}))  # fmt: skip
    return inventory


def minimal_playbook(workdir):
    """The least a playbook can do for the job: the same single module call per host."""
    playbook = Path(workdir) / "minimal.yml"
    playbook.write_text(json.dumps([{
        "name": "One module call per host", "hosts": "storyart", "gather_facts": False,
        "tasks": [{"name": "Migrate", "redis_db_migrate": {
            "login_host": "127.0.0.1", "login_port": "{{ storyart_session_migration_login_port }}",
            "source_db": 1, "target_db": 0, "patterns": ["storyart:session:*"],
            "indexes": [INDEX.decode()]}}],
    }]))  # fmt: skip
    return playbook


def become_subreaper():
    """Orphans of this process's children become its own: the background job of an async task
    (which Ansible detaches) is then reaped here, and its CPU time counted."""
    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def reap_orphans():
    """Wait for every child of this process but the redis-servers: the orphans it took in."""
    servers = {str(server.process.pid) for server in RUNNING}
    while True:
        children = [
            int(stat.parent.name)
            for stat in Path("/proc").glob("[0-9]*/stat")
            if stat.parent.name not in servers and parent_pid(stat) == os.getpid()
        ]
        if not children:
            return
        for pid in children:
            os.waitpid(pid, 0)


def parent_pid(stat):
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return None  # gone meanwhile


def controller_cpu(workdir, inventory, playbook, forks):
    """CPU seconds (user + system) of ansible-playbook and every process it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed_playbook(workdir, "-f", str(forks), "-i", str(inventory), str(playbook))
    reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def reset_target(server):
    server.client(0).flushdb()


def server_cpu(server):
    """CPU seconds (user + system) the redis-server process has used so far."""
    stat = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def measured(server, count, func):
    """``func()`` into an empty db 0, checked complete afterwards: (seconds, the server's CPU
    seconds, what ``func`` returned). ``func`` may return its own seconds, as the engine's
    child process does, measured without Python's start-up."""
    reset_target(server)
    cpu, started = server_cpu(server), time.monotonic()
    out = func()
    seconds = time.monotonic() - started
    cpu = server_cpu(server) - cpu
    check_migrated(server, count)
    if isinstance(out, dict):
        seconds = out["seconds"]
    return seconds, cpu, out


def peer(server, workdir, bin_dir):
    """redis-dump-load, the PyPI tool for the job: dump db 1 to JSON, load it into db 0 with
    EXPIREAT. It overwrites what db 0 has rather than skip it; db 0 is empty here."""
    dump = Path(workdir) / "dump.json"
    port = str(server.port)
    subprocess.run([str(Path(bin_dir) / "redis-dump"), "-p", port, "-d", "1", "-k",
                    "storyart:*", "-o", str(dump)], check=True)  # fmt: skip
    subprocess.run([str(Path(bin_dir) / "redis-load"), "-p", port, "-d", "0", "-A",
                    str(dump)], check=True)  # fmt: skip
    dump.unlink()


def one_size(args, workdir, count, first):
    """Every method on ``count`` sessions, in one server. The slow methods (the old script's
    way, redis-dump-load) and the rate run go only with the first size."""
    server = start_server(workdir)
    t, cpu, size = {}, {}, {"sessions": count}
    batch = args.batch_size

    def method(name, func):
        t[name], cpu[name], out = measured(server, count, func)
        return out

    def medians(methods):
        """The methods the targets compare, ``args.rounds`` times in turn: each keeps its
        median run, so a moment's noise on the machine moves no ratio."""
        runs = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, func in methods.items():
                runs[name].append(measured(server, count, func))
        outs = {}
        for name, results in runs.items():
            t[name], cpu[name], outs[name] = sorted(results, key=lambda r: r[0])[len(results) // 2]
        return outs

    try:
        print(f"Seeding {count} sessions...", flush=True)
        seed(server, count)
        unguarded = unguarded_user(server)
        run = medians({
            "floor": lambda: floor(server, count, FLOOR_BATCH),
            "engine": lambda: run_engine(server, batch_size=batch, probe=True),
            "engine_unguarded": lambda: run_engine(
                server, settings=unguarded, batch_size=batch, memory_check=False
            ),
        })["engine"]  # fmt: skip
        size["engine_peak_rss_mb"] = run["peak_rss_mb"]
        size["latency"] = run["latency"]
        size["server_blocked"] = run["server_blocked"]
        method("engine_dump_restore", lambda: run_engine(server, strategy="dump-restore",
                                                         batch_size=batch))  # fmt: skip
        method("module", lambda: run_module(server, workdir, batch))
        # A dry run into a full db 0, as before a rerun: everything is classified present.
        reset_target(server)
        floor(server, count, FLOOR_BATCH)
        t["engine_dry_run"] = run_engine(server, dry_run=True, batch_size=batch)["seconds"]
        if first and args.rate:
            limited = method("rate", lambda: run_engine(
                server, batch_size=batch, max_keys_per_second=args.rate
            ))  # fmt: skip
            # The limit counts keys and index entries: 2 items a session.
            achieved = 2 * count / limited["seconds"]
            size["rate_limit"] = dict(
                limit_items_per_second=args.rate, achieved=round(achieved),
                honoured=achieved <= args.rate * 1.05,
            )  # fmt: skip
        if first and args.peer_bin:
            method("redis-dump-load", lambda: peer(server, workdir, args.peer_bin))
        if first and not args.skip_baseline:
            method("baseline", lambda: baseline(server, count))
    finally:
        stop_server(server)
    size["seconds"] = {name: round(seconds, 3) for name, seconds in t.items()}
    size["server_cpu_seconds"] = {name: round(seconds, 3) for name, seconds in cpu.items()}
    size["microseconds_per_session"] = {
        name: round(seconds / count * 1e6, 2) for name, seconds in t.items()
    }
    ratios = {
        "engine / floor": t["engine"] / t["floor"],
        "module / floor": t["module"] / t["floor"],
        "dump-restore / floor": t["engine_dump_restore"] / t["floor"],
        "engine / unguarded engine": t["engine"] / t["engine_unguarded"],
        "dry run / engine": t["engine_dry_run"] / t["engine"],
    }
    if "redis-dump-load" in t:
        ratios["redis-dump-load / engine"] = t["redis-dump-load"] / t["engine"]
    if "baseline" in t:
        ratios["baseline / engine"] = t["baseline"] / t["engine"]
    size["ratios"] = {name: round(ratio, 2) for name, ratio in ratios.items()}
    return size


def every_size(args, workdir, results):
    sizes = results["sizes"] = [
        one_size(args, workdir, count, first=n == 0) for n, count in enumerate(args.sessions)
    ]
    # Linear cost: the time per session at each size against the smallest, the engine's and,
    # to tell the server's own growth from the engine's, the floor's.
    for method in ("engine", "floor"):
        smallest = sizes[0]["microseconds_per_session"][method]
        results[f"{method}_time_per_session_vs_smallest"] = {
            str(size["sessions"]): round(size["microseconds_per_session"][method] / smallest, 2)
            for size in sizes
        }
    results["engine_peak_rss_mb"] = max(size["engine_peak_rss_mb"] for size in sizes)


def wait_for_replica(primary, replica, every=0.05):
    """Until the replica has applied all the primary has written, looking ``every`` seconds."""
    offset = primary.client(0).info("replication")["master_repl_offset"]
    while replica.client(0).info("replication").get("slave_repl_offset", -1) < offset:
        time.sleep(every)


PACING_RATES = [100, 500, 5000, 100_000]


def pacing(args, workdir, results):
    """At each rate, the rate achieved against the rate asked, and the time preflight
    announced against the time the run took. Each run goes through 4 items a session: the key
    and its index entry, read again by full_verify."""
    rows = results["pacing"] = []
    server = start_server(workdir)
    try:
        for rate in args.pacing:
            count = max(1, round(rate * args.pacing_seconds / 4))
            print(f"Pacing at {rate} keys and index entries a second, {count} sessions...",
                  flush=True)  # fmt: skip
            server.client(1).flushdb()
            reset_target(server)
            seed(server, count)
            options = dict(max_keys_per_second=rate, full_verify=True, batch_size=args.batch_size)
            announced = engine.preflight(
                engine.ConnectionSettings(port=server.port),
                engine.MigrationOptions(
                    source_db=1, target_db=0, patterns=("storyart:session:*",),
                    indexes=(INDEX,), **options,
                ),
            )  # fmt: skip
            run = run_engine(server, **options)
            check_migrated(server, count)
            items = run["pace"]["keys_and_entries"]
            achieved = items / run["seconds"]
            rows.append(dict(
                asked_per_second=rate, sessions=count, keys_and_entries=items,
                call_size=engine.Pacer(rate).call_size(args.batch_size),
                achieved_per_second=round(achieved), achieved_over_asked=round(achieved / rate, 3),
                announced_seconds=announced["pace"]["seconds"], seconds=round(run["seconds"], 2),
                announced_over_actual=round(announced["pace"]["seconds"] / run["seconds"], 3),
                longest_call_ms=run["server_blocked"]["longest_ms"],
            ))  # fmt: skip
    finally:
        stop_server(server)
    print("asked/s  sessions  items  call  achieved/s  ratio  announced  took  longest call")
    for row in rows:
        print(f"{row['asked_per_second']:>7}  {row['sessions']:>8}  {row['keys_and_entries']:>5}  "
              f"{row['call_size']:>4}  {row['achieved_per_second']:>10}  "
              f"{row['achieved_over_asked']:>5}  {row['announced_seconds']:>8} s  "
              f"{row['seconds']:>5} s  {row['longest_call_ms']} ms")  # fmt: skip


def medians(runs):
    """Each method's median of its runs' seconds."""
    return {name: round(statistics.median(seconds), 3) for name, seconds in runs.items()}


def replicated(args, workdir, results):
    """The engine with its replica's acknowledgements against the same engine without them."""
    count = args.replicated
    primary = start_server(workdir)
    replica = RedisServer(
        Path(workdir) / f"redis-{next(_servers)}", [f"replicaof 127.0.0.1 {primary.port}"]
    ).start()
    RUNNING.append(replica)
    names = ("acknowledged", "min_replicas 0")
    t = {name: [] for name in names}
    replicated_t = {name: [] for name in names}
    try:
        print(f"Seeding {count} sessions on a primary with a replica...", flush=True)
        seed(primary, count)
        for _ in range(args.rounds):
            for name, waits in zip(names, (None, 0)):
                reset_target(primary)
                wait_for_replica(primary, replica)
                run = run_engine(primary, batch_size=args.batch_size, min_replicas=waits)
                catching_up = time.monotonic()
                wait_for_replica(primary, replica, every=0.005)
                if replica.client(0).dbsize() != count + 1:
                    raise SystemExit("the replica does not hold every migrated session")
                check_migrated(primary, count)
                t[name].append(run["seconds"])
                replicated_t[name].append(run["seconds"] + time.monotonic() - catching_up)
    finally:
        stop_server(replica)
        stop_server(primary)
    median, replicated_median = medians(t), medians(replicated_t)
    results["replicated"] = dict(
        sessions=count,
        replicas=1,
        seconds=median,
        runs=t,
        ratio=round(median["acknowledged"] / median["min_replicas 0"], 3),
        seconds_until_replicated=replicated_median,
        runs_until_replicated=replicated_t,
        ratio_until_replicated=round(
            replicated_median["acknowledged"] / replicated_median["min_replicas 0"], 3
        ),
    )


def link(args, workdir, results):
    """The engine over a long link, as a Redis in another zone or the controller's mode puts
    one: --link-sessions sessions and their index migrated direct, then through a proxy that
    delivers every chunk --link-delay seconds late each way, with the request round trips each
    took (counted by the proxy; the direct run's in a second run through it with no delay)."""
    count = args.link_sessions
    server = start_server(workdir)
    rows = results["link"] = {}
    try:
        print(f"Seeding {count} sessions for the link...", flush=True)
        seed(server, count)
        reset_target(server)
        direct = run_engine(server, batch_size=args.batch_size)
        check_migrated(server, count)
        for name, delay in (("direct", 0.0), ("slow link", args.link_delay)):
            proxy = LatencyProxy(server.port, delay)
            try:
                reset_target(server)
                run = run_engine(server, port=proxy.port, batch_size=args.batch_size)
                check_migrated(server, count)
            finally:
                proxy.close()
            rows[name] = dict(
                delay_ms_each_way=round(delay * 1000),
                seconds=round((direct if delay == 0 else run)["seconds"], 2),
                round_trips=proxy.round_trips,
                longest_call_ms=run["server_blocked"]["longest_ms"],
            )
    finally:
        stop_server(server)
    print(f"{count} sessions and their index, over a link adding:")
    print("each way   wall time   request round trips   longest call")
    for row in rows.values():
        print(f"{row['delay_ms_each_way']:>5} ms  {row['seconds']:>8} s  {row['round_trips']:>20}"
              f"   {row['longest_call_ms']} ms")  # fmt: skip


def command_times(client):
    """INFO commandstats: each command's calls and server microseconds, those a script ran
    counted too (inside the script's own EVALSHA time)."""
    return {
        name.removeprefix("cmdstat_"): (stats["calls"], stats["usec"])
        for name, stats in client.info("commandstats").items()
    }


def commands(args, workdir, results):
    """Where the server's time goes: --commands-sessions sessions migrated by the floor, then
    by the engine, each --rounds times in turn, with INFO commandstats reset before each run;
    per command, the server's microseconds per session of the median run (by server CPU)."""
    count = args.commands_sessions
    server = start_server(workdir)
    admin = server.client(0)
    methods = {
        "floor": lambda: floor(server, count, FLOOR_BATCH),
        "guarantees' floor": lambda: guarantees_floor(server, count, FLOOR_BATCH),
        "engine": lambda: run_engine(server, batch_size=args.batch_size),
    }
    runs = {name: [] for name in methods}
    try:
        print(f"Seeding {count} sessions for the commands' server time...", flush=True)
        seed(server, count)
        for _ in range(args.rounds):
            for name, func in methods.items():
                reset_target(server)
                admin.config_resetstat()
                seconds, cpu, _out = measured(server, count, func)
                runs[name].append((cpu, seconds, command_times(admin)))
    finally:
        stop_server(server)
    rows = results["commands"] = {"sessions": count}
    for name, measures in runs.items():
        cpu, seconds, times = sorted(measures, key=lambda run: run[0])[len(measures) // 2]
        rows[name] = dict(
            seconds=round(seconds, 2),
            server_cpu_seconds=round(cpu, 2),
            microseconds_per_session={
                command: round(usec / count, 2)
                for command, (calls, usec) in sorted(times.items(), key=lambda kv: -kv[1][1])
                if usec / count >= 0.01
            },
        )
    for above, below in (
        ("engine", "floor"),
        ("guarantees' floor", "floor"),
        ("engine", "guarantees' floor"),
    ):
        rows[f"{above} / {below}, server CPU"] = round(
            rows[above]["server_cpu_seconds"] / rows[below]["server_cpu_seconds"], 2
        )
    print(f"Server microseconds per session, {count} sessions (EVALSHA holds its scripts' calls):")
    for name in methods:
        print(f"  {name}: " + ", ".join(
            f"{command} {usec}" for command, usec in rows[name]["microseconds_per_session"].items()
        ))  # fmt: skip


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
        stop_server(server)


def fleet(args, workdir, results):
    """The controller's CPU per host, the role against the minimal playbook, for each fleet
    size; then hosts sharing one endpoint, which the role migrates once."""
    become_subreaper()
    rows = results["fleet"] = {}
    role = ROOT / "playbooks" / "migrate_sessions.yml"
    for count in args.fleet_hosts:
        servers = [start_server(workdir) for _ in range(count)]
        try:
            print(f"Fleet of {count} hosts, {args.fleet_sessions} sessions each...", flush=True)
            for server in servers:
                seed(server, args.fleet_sessions)
            inventory = fleet_inventory(servers, workdir, f"fleet{count}")
            minimal = controller_cpu(workdir, inventory, minimal_playbook(workdir), args.forks)
            for server in servers:
                check_migrated(server, args.fleet_sessions)
                reset_target(server)
            full = controller_cpu(workdir, inventory, role, args.forks)
            for server in servers:
                check_migrated(server, args.fleet_sessions)
        finally:
            for server in servers:
                stop_server(server)
        rows[f"{count} hosts"] = dict(
            minimal_cpu_s_per_host=round(minimal / count, 3),
            role_cpu_s_per_host=round(full / count, 3),
            role_over_minimal=round(full / minimal, 2),
        )
    server = start_server(workdir)
    try:
        seed(server, args.fleet_sessions)
        inventory = fleet_inventory([server], workdir, "shared", shared=10)
        cpu = controller_cpu(workdir, inventory, role, args.forks)
        check_migrated(server, args.fleet_sessions)
    finally:
        stop_server(server)
    (report,) = (Path(workdir) / "reports-shared").glob("*/report.json")
    handled_by = {record["handled_by"] for record in json.loads(report.read_text()).values()}
    if handled_by != {"shared-000"}:
        raise SystemExit(f"10 hosts sharing one endpoint: handled by {handled_by}, not once")
    rows["10 hosts sharing one endpoint"] = dict(
        role_cpu_s_per_host=round(cpu / 10, 3), module_runs=len(handled_by)
    )


def machine():
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), "unknown")  # fmt: skip
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    )
    return dict(
        cpu=model, cpus=os.cpu_count(), memory_gb=round(memory_kb / 1024**2),
        redis_server=server.stdout.split()[2], python=sys.version.split()[0],
        redis_py=redis.__version__,
    )  # fmt: skip


# Each section of the benchmark, in the order a full run goes through them.
SECTIONS = {
    "sizes": every_size,
    "link": link,
    "commands": commands,
    "replicated": replicated,
    "large-sessions": large_sessions,
    "pacing": pacing,
    "fleet": fleet,
}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--engine-child":
        port, settings, options = sys.argv[2:5]
        engine_child(int(port), json.loads(settings), json.loads(options))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sessions", type=int, nargs="*", default=[200_000, 1_000_000, 3_000_000],
        help="sizes to measure, smallest first; none: skip",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=ENGINE_BATCH, help="the engine's (the most keys a call)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="runs of the floor, the engine and the unguarded engine, in turn; the median counts",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=int, default=100_000, help="keys/s for the rate run; 0: skip"
    )
    parser.add_argument("--peer-bin", help="bin directory of a virtualenv with redis-dump-load")
    parser.add_argument("--skip-baseline", action="store_true", help="(it takes minutes at 1M)")
    parser.add_argument("--fleet-hosts", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--fleet-sessions", type=int, default=200)
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument(
        "--large-sessions", type=int, default=100, help="sessions of 100 KB-2 MB; 0: skip"
    )
    parser.add_argument(
        "--replicated", type=int, default=1_000_000,
        help="sessions on a primary with a replica, acknowledged or not; 0: skip",
    )  # fmt: skip
    parser.add_argument(
        "--pacing", type=int, nargs="*", metavar="RATE", default=PACING_RATES,
        help="rates of the paced runs, keys and index entries a second; none: skip",
    )  # fmt: skip
    parser.add_argument(
        "--pacing-seconds", type=float, default=8, help="what each paced run should take"
    )
    parser.add_argument("--link-sessions", type=int, default=100_000, help="0: skip the link")
    parser.add_argument("--link-delay", type=float, default=0.02, help="seconds, each way")
    parser.add_argument(
        "--commands-sessions", type=int, default=1_000_000,
        help="sessions for each command's server time, floor and engine; 0: skip",
    )  # fmt: skip
    parser.add_argument(
        "--only", choices=SECTIONS, help="run this section alone, with its own options"
    )
    parser.add_argument(
        "--output", help="default: reports/bench.json, or reports/bench-SECTION.json with --only"
    )
    args = parser.parse_args()
    output = Path(
        args.output or ROOT / "reports" / f"bench{'-' + args.only if args.only else ''}.json"
    )
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    results = dict(machine=machine(), batch_size=args.batch_size)
    wanted = {
        "sizes": bool(args.sessions),
        "link": bool(args.link_sessions),
        "commands": bool(args.commands_sessions),
        "replicated": bool(args.replicated),
        "large-sessions": bool(args.large_sessions),
        "pacing": bool(args.pacing),
        "fleet": not args.skip_fleet,
    }
    with tempfile.TemporaryDirectory() as workdir:
        for name, section in SECTIONS.items():
            if wanted[name] if args.only is None else name == args.only:
                section(args, workdir, results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"Written to {output}")


if __name__ == "__main__":
    main()
