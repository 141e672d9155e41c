"""A session: what preflight produces for one run against one endpoint, and what its copier,
verifier and cleaner share: the clients, the server's facts, the strategy, the scripts, what
the user may not run, the memory guard, pacing, and how a run stops when it is cut short."""

from __future__ import annotations

import contextlib
import time
from collections import namedtuple

from .deferred import DeferredReads
from .errors import (
    CallExpired,
    FailoverStop,
    GuardStop,
    MigrationError,
    OperatorStop,
    describe_error,
    is_auth_failure,
    may_have_run,
    unwrapped,
)
from .hooks import Hooks
from .in_flight import ServerClock
from .keys import as_bytes, display
from .lua import expired_at
from .lua_cleanup import CLEANUP_SCRIPT, DROP_INDEX_SCRIPT
from .lua_copy import COPY_SCRIPT, INDEX_SCRIPT
from .lua_preflight import ESTIMATE_SCRIPT
from .memory import MemoryGuard
from .pacing import Pacer
from .permissions import Access
from .primary import PrimaryWatch, is_node_error
from .redis_py import redis_errors, redis_py_problem
from .sentinel import SentinelService
from .server import check_index_types, check_server, open_db, read_facts
from .sizing import FIRST_CALL, CallSize
from .wording import unnarrowed_patterns

# Bytes of MEMORY USAGE one server call may work through when max_batch_bytes is 0, by what the
# call does. Measured on Redis 6.2, 7.0 and Valkey 9 (README, Performance): COPY costs up to
# 2 ms per MB, DUMP + RESTORE of incompressible values up to 19 ms per MB, the clean-up's
# comparison up to 5 ms per MB; so a call takes about 20 ms at most, well under the 50 ms at
# which replicas, Sentinel and clients start to notice.
AUTO_BATCH_BYTES = {"copy": 8 << 20, "dump-restore": 1 << 20, "cleanup": 2 << 20}

Scripts = namedtuple("Scripts", "copy index cleanup estimate drop_index")


class Session:
    """One run's connection to one endpoint. ``connect(mode)`` makes every preflight check."""

    def __init__(self, settings, options, hooks=None, stop_requested=None):
        problem = redis_py_problem()
        if problem:
            raise MigrationError(problem)
        settings.validate()
        options.validate()
        self.settings = settings
        self.options = options
        self.hooks = hooks or Hooks()
        self.patterns = [as_bytes(p) for p in options.patterns]
        self.index_names = [as_bytes(i) for i in options.indexes]
        self.pattern_warnings = unnarrowed_patterns(self.patterns, options.source_db)
        self.facts = None
        self.source = None
        self.target = None
        self.writer = None
        self.scripts = None
        self.strategy = "none"
        # What the user may run (permissions.Access), the commands the server has renamed or
        # denies this user, and the checks that cannot run for want of them.
        self.access = None
        self.unavailable = set()
        self.checks_not_run = []
        self.guard = MemoryGuard(self)
        self.pacer = Pacer(options.max_keys_per_second)
        self.sentinel = SentinelService(settings) if settings.sentinel_hosts else None
        self.watch = None
        # The server's clock, for the deadline of each call that writes (a run that writes);
        # and what the last call may have written when its reply was lost (in_flight.InFlight).
        self.clock = None
        self.lost = None
        # What to read in the next round trip (deferred.py): what calls wrote, read back; and
        # the size of each kind of call, which each call's own time adjusts (sizing.py).
        self.deferred = DeferredReads(options.source_db)
        self.sizes = {}
        # Each source index's entries and bytes (MEMORY USAGE) as the run started, for the
        # byte budget of its pages and the memory estimate; none when keys cannot be sized.
        self.index_sizes = {}
        # What the run is doing, for the message when it is cut short.
        self.action = "connecting"
        # Whether the operator has asked the run to stop (running.RunRecord), read between
        # two calls.
        self.stop_requested = stop_requested or (lambda: False)

    def connect(self, mode):
        """Reach the server and check it can take a run of ``mode`` (preflight, migrate,
        verify or cleanup): every command the run will send is probed first. Through
        Sentinel, the server is the primary the Sentinels name now."""
        if self.sentinel:
            self.settings = self.settings.at(*self.sentinel.primary())
        self.facts = read_facts(self)
        check_server(self.facts, self.settings, self.options)
        self.watch = PrimaryWatch(self, self.sentinel)
        writes = mode != "verify"
        refusal = self.watch.refusal() if writes else None
        if refusal:
            raise MigrationError(refusal)
        # Before the run opens its own connections: every command the mode needs is tried,
        # and all that are missing are named at once.
        self.access = Access(self, mode)
        self.unavailable = self.access.unavailable
        self.strategy = self.access.strategy
        checks = self.access.check()
        watched = dict(redis_connect_func=self.watch.on_connect)
        self.source = open_db(self.settings, self.options.source_db, **watched)
        self.target = open_db(self.settings, self.options.target_db, **watched)
        # Every script goes through one connection, which the waits and the deferred reads
        # use too.
        self.writer = self.settings.client(
            db=self.options.source_db,
            max_connections=1,
            redis_connect_func=self.watch.on_writer_connect,
        )
        check_index_types(self)
        if self.index_names and self.sized:
            names = self.index_names
            sizes = [("ZCARD", name) for name in names] + [("MEMORY USAGE", n) for n in names]
            self.defer_read(self.options.source_db, sizes, self._index_sizes)
        self.checks_not_run = checks + self.watch.checks_not_run()
        clocked = mode in ("migrate", "cleanup") and not self.options.dry_run
        self.scripts = Scripts(
            *self._load_scripts(
                clocked,
                COPY_SCRIPT,
                INDEX_SCRIPT,
                CLEANUP_SCRIPT,
                ESTIMATE_SCRIPT,
                DROP_INDEX_SCRIPT,
            )
        )
        return self

    def _load_scripts(self, clocked, *sources):
        """The scripts as callables, loaded into the server first, in one round trip; with
        ``clocked`` (a run that writes), the server's clock is read in the same one, and so are
        the reads deferred so far (the indexes')."""
        scripts = [self.writer.register_script(source) for source in sources]
        pipe = self.writer.pipeline(transaction=False)
        for script in scripts:
            pipe.script_load(script.script)
        action = "loading the Lua scripts it runs (SCRIPT LOAD, then EVALSHA)"
        if clocked:
            pipe.time()
            action += " and reading the server's clock (TIME)"
        reads = self.deferred.queue(pipe)
        replies = self.call(lambda: pipe.execute(raise_on_error=False), action)
        loaded = len(scripts) + (1 if clocked else 0)
        self.call(lambda: self.deferred.answer(reads, replies[loaded:]), "reading the indexes")
        for reply in replies[:loaded]:
            if isinstance(reply, Exception):
                raise MigrationError(describe_error(reply, self.settings, action))
        if clocked:
            reading = replies[loaded - 1]
            self.clock = ServerClock(self.writer, self.settings.socket_timeout, reading)
        return scripts

    def close(self):
        for client in (self.source, self.target, self.writer):
            if client is not None:
                client.close()
        if self.sentinel:
            self.sentinel.close()

    def call(self, func, action, answered=True):
        """``func()``; a Redis error becomes a MigrationError that says what failed where.
        ``answered``: whether the server has answered this run before (describe_error)."""
        try:
            return func()
        except redis_errors.RedisError as exc:
            raise MigrationError(describe_error(exc, self.settings, action, answered)) from None

    def new_report(self, kind, **fields):
        return kind(
            endpoint=self.settings.endpoint,
            source_db=self.options.source_db,
            target_db=self.options.target_db,
            dry_run=self.options.dry_run,
            server_version=self.facts.version_text,
            checks_not_run=list(self.checks_not_run),
            pattern_warnings=list(self.pattern_warnings),
            **fields,
        )

    def write(self, script, keys=(), args=(), in_flight=None):
        """Run a script on the writer's connection, with its deadline as its last argument. In
        the same round trip, ahead of it, wait until the replicas have acknowledged what the
        calls before wrote; after it, the deferred reads (defer_read()). Returns its reply, and
        None or the FailoverStop to raise once the reply is counted (its caller tells the watch
        what it wrote). A failover a Sentinel announced stops the run first. ``in_flight``:
        what the call may write, kept as unknown if its reply is lost (sending())."""
        self.watch.check()
        pipe = self.writer.pipeline(transaction=False)
        waited = self.watch.queue_wait(pipe, due=False)
        not_after = self.not_after()
        pipe.evalsha(script.sha, len(keys), *keys, *args, not_after)
        # After the call: a call held in a stalled network and delivered late answers first.
        reads = self.deferred.queue(pipe)
        replies = self.sending(lambda: pipe.execute(raise_on_error=False), in_flight)
        first = 2 if waited else 1
        self.deferred.answer(reads, replies[first:])
        for answer in replies[:first]:
            if isinstance(answer, Exception):
                raise answer
        reply = replies[first - 1]
        stop = self.watch.acknowledged(replies[0]) if waited else None
        self.check_deadline(reply, not_after)
        return reply, stop

    def defer_read(self, db, commands, then):
        """Read ``commands`` on ``db`` in the round trip of the next call, or in the run's last
        one (settle()); ``then(replies)`` once they are back (deferred.py)."""
        self.deferred.add(db, commands, then)

    def settle(self, wait=True):
        """The last round trip of a run that writes, on the writer's connection: the
        read-backs still waiting and (``wait``) the wait for the replicas' acknowledgement of
        the last writes. Raises the FailoverStop when that falls short."""
        pipe = self.writer.pipeline(transaction=False)
        waited = wait and self.watch.queue_wait(pipe, due=True)
        reads = self.deferred.queue(pipe)
        if not (waited or reads):
            return
        replies = pipe.execute(raise_on_error=False)
        self.deferred.answer(reads, replies[1:] if waited else replies)
        if waited:
            if isinstance(replies[0], Exception):
                raise replies[0]
            stop = self.watch.acknowledged(replies[0])
            if stop:
                raise stop

    def _read_back_before_stop(self):
        """A run stopped by the memory guard or a failover after a call: that call's writes
        are still read back, if the server answers. The stop is what the report says."""
        if self.deferred:
            with contextlib.suppress(redis_errors.RedisError):
                self.settle(wait=False)

    def not_after(self):
        """The deadline of a call that writes, sent now (in_flight.py); 0, none, for a run that
        writes nothing."""
        return self.clock.not_after() if self.clock else 0

    def sending(self, send, in_flight):
        """``send()``: a round trip that may write ``in_flight``. When it fails after the call
        was sent, the call may have run: what it may have written is kept in ``lost``."""
        try:
            return send()
        except redis_errors.RedisError as exc:
            if in_flight and may_have_run(exc) and not is_node_error(exc):
                self.lost = in_flight
            raise

    def check_deadline(self, reply, not_after):
        """Stop when a script's ``reply`` says it reached the server after its deadline."""
        now = expired_at(reply)
        if now is None:
            return
        late = (now - not_after) / 1000
        timeout = self.settings.socket_timeout
        raise CallExpired(
            f"A call reached Redis at {self.settings.endpoint} {late:.3f} s after its deadline "
            f"(socket_timeout, {timeout:g} s, after it was sent) and did not run: it wrote "
            f"nothing. The network, or a server too busy to read it, held it that long; rerun "
            f"once Redis answers promptly, or raise socket_timeout"
        )

    def stop_on_node_errors(self, errors):
        """Stop at the first error of a call that says the node is no longer a writable
        primary: the rest of the keys would only fail the same way."""
        for error in errors:
            if is_node_error(error):
                raise self.watch.stop_for(display(error))

    @property
    def sized(self):
        """Whether keys can be sized (MEMORY USAGE) for the byte budget and the guard."""
        return "MEMORY USAGE" not in self.unavailable

    def budget(self, kind):
        """Bytes one server call may work through; 0 (no budget) when keys cannot be sized."""
        if not self.sized:
            return 0
        return self.options.max_batch_bytes or AUTO_BATCH_BYTES[kind]

    def call_size(self, kind, most=None, first=FIRST_CALL):
        """The CallSize of one ``kind`` of call, kept for the run: each call's own time sizes
        the next of its kind, never over batch_size (nor ``most``), nor, in a paced run, over
        the pacer's call size; ``first``, before any measure."""
        if kind not in self.sizes:
            cap = self.pacer.call_size(self.options.batch_size)
            self.sizes[kind] = CallSize(min(cap, most or cap), first)
        return self.sizes[kind]

    def pace(self, done, *idle):
        """Wait as long as max_keys_per_second asks, keeping the run's connections (and the
        ``idle`` ones) alive meanwhile."""
        self.pacer.wait(done, (self.source, self.target, *idle))
        # Every loop paces after each call, once it is counted (what it wrote is read back with
        # the next call, or in the run's last round trip): the one place a stop lands between
        # two calls, and at once in a paced run, which waits here.
        if self.stop_requested():
            raise OperatorStop(self.action)

    def read_back_scores(self, index, members, then):
        """``then(scores)``: the target index's scores of ``members`` (None where absent), read
        in the round trip of the next call (defer_read())."""
        db = self.options.target_db
        if self.facts.version >= (6, 2):
            self.defer_read(db, [("ZMSCORE", index, *members)], lambda replies: then(replies[0]))
        else:
            self.defer_read(db, [("ZSCORE", index, member) for member in members], then)

    def _index_sizes(self, replies):
        """ZCARD, then MEMORY USAGE, of each index, read in the round trip of the scripts."""
        count = len(self.index_names)
        for name, entries, used in zip(self.index_names, replies[:count], replies[count:]):
            self.index_sizes[name] = (entries, used or 0)

    def page_size(self, name, verb):
        """The CallSize of a page of an index, for ``verb``: fewer entries than batch_size
        when its entries are so large that a page would pass the byte budget."""
        entries, used = self.index_sizes.get(name, (0, 0))
        most = None
        if entries:
            most = max(1, int(self.budget("copy") // max(used / entries, 1)))
        return self.call_size(("index", name, verb), most)

    def timed(self, report, work):
        """Run ``work`` into ``report``, then confirm the primary is the one it started on; a
        failover, a lost connection or the memory guard stops it with the counts so far."""
        self.pacer.start()
        started = time.monotonic()
        rerun, failover = "once Redis answers", False
        stopped = None
        try:
            try:
                work()
            except OperatorStop as exc:
                # The writes so far are read back, acknowledged and the primary confirmed as
                # at any end.
                stopped = str(exc)
            if not self.options.dry_run:
                self.settle()
            self.watch.confirm()
        except GuardStop as exc:
            report.aborted = str(exc)
            rerun = "then"
            self._read_back_before_stop()
        except FailoverStop as exc:
            report.aborted, failover = str(exc), True
            self._read_back_before_stop()
        except CallExpired as exc:
            report.aborted = str(exc)
        except redis_errors.RedisError as exc:
            if is_node_error(exc):
                report.aborted, failover = str(self.watch.stop_for(exc)), True
            else:
                # Under Sentinel a lost primary is a failover under way.
                lost = isinstance(unwrapped(exc), redis_errors.ConnectionError)
                failover = bool(self.sentinel) and lost and not is_auth_failure(exc)
                report.aborted = describe_error(exc, self.settings, self.action).rstrip(".")
        finally:
            if self.lost:
                report.unknown = self.lost.as_dict()
            report.duration = time.monotonic() - started
            report.pace = self.pacer.achieved(report.duration)
            report.replication = self.watch.as_dict()
            report.unacknowledged = self.watch.pending
        if not report.aborted:
            if stopped:
                report.stopped_by_operator(stopped)
            return report
        raise MigrationError(
            f"{report.aborted}. Counts so far: {report.summary()}. "
            f"{self._advice(report, rerun, failover)}",
            report=report,
        )

    def _advice(self, report, rerun, failover):
        """What a run cut short leaves, and what to do: the end of its message."""
        if failover:
            where = "through Sentinel, which finds" if self.sentinel else "against"
            advice = (
                f"The source db was not written. What the counts say was copied was read back "
                f"on {self.settings.endpoint}, but a failover may lose what the replicas did not "
                f"acknowledge: rerun {where} the primary now; it copies only what that primary "
                f"lacks."
            )
        else:
            advice = f"{report.so_far()}; rerun {rerun}: it skips what is already done."
        if not self.lost:
            return advice
        return (
            "The reply of the last call was lost, so more may be done than the counts say "
            "(NOT COUNTED), but nothing this run sent can still run: each call that writes "
            "carries a deadline on the server's clock, now passed. " + advice
        )


def each(client, command, keys, *args):
    """``command`` for each of ``keys``, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        getattr(pipe, command)(*args, key)
    return pipe.execute()
