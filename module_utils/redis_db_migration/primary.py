"""The primary watch: a run writes to one primary, and speaks of its writes only while that holds.

At the start it records who the primary is: its run_id and replication ID, the Sentinels'
answer when they are used, and the replicas connected. Then, through the run:

* every connection the run opens, and any that redis-py reopens on its own after the server
  closed one (as Sentinel does when it demotes a primary), must reach that same node, still a
  primary with the same replication history: no silent reconnect carries a run to another node;
* what the run writes is acknowledged by ``min_replicas`` replicas (WAIT, or WAITAOF) every
  ACK_INTERVAL seconds, the wait travelling ahead of the next call in its round trip, and the
  last writes are waited for on their own before the verdict; a run that stops counts the
  writes not acknowledged;
* a READONLY, LOADING or MASTERDOWN reply stops the run, and so does a Sentinel announcing a
  new primary (+switch-master, read from a subscription with no round trip of its own);
* before the verdict, the node and the Sentinels are asked once more.

Whatever breaks these stops the run at once with what happened, in words: "failover: the primary
moved from A to B", "this node was demoted to a replica of C".
"""

from __future__ import annotations

import re
import time

from .errors import FailoverStop, MigrationError
from .keys import display
from .redis_py import redis_errors
from .sentinel import address_text

# Replies that say the node is no longer a primary that can take the run's writes: at the
# start of an error, or inside a script's error, after its '-' (Redis 6.2: "@user_script: 97:
# -READONLY You can't write against a read only replica.").
NODE_ERRORS = re.compile(r"(?:^|-)(?:READONLY|LOADING|MASTERDOWN)\b")

# Seconds between two waits for the replicas during a run; the last writes are always waited
# for before the verdict. A wait holds the run until the replica has applied everything before
# it, the last call's writes at least, while the primary idles: at 1M sessions on 2 cores a
# wait ahead of every call made the run 1.51 times as long as without waits, one every 50 ms
# 1.24 times, one every 200 ms 1.03 times (README, Performance). What a failover could take
# away is still counted (unacknowledged) and copied again by the next run; a failover itself
# takes seconds to be announced.
ACK_INTERVAL = 0.2

_ConnectionError = redis_errors.ConnectionError if redis_errors else Exception


class NodeChanged(_ConnectionError):
    """A connection the run opened reached a node that is not the primary it started on. A
    redis-py error, so that redis-py closes the connection before it is raised."""


def is_node_error(error):
    """Whether a reply or exception says the node stopped being a writable primary."""
    if redis_errors and isinstance(
        error, (NodeChanged, redis_errors.ReadOnlyError, redis_errors.BusyLoadingError)
    ):
        return True
    return NODE_ERRORS.search(display(error)) is not None


def parse_info(text):
    """INFO's reply as a dict of text: what a connection being opened reads, before redis-py's
    reply parsing."""
    found = {}
    for line in display(text).splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            found[name] = value.strip()
    return found


class PrimaryWatch:
    """Watches the primary of one session; see the module's docstring."""

    def __init__(self, session, sentinel=None):
        facts, options = session.facts, session.options
        self.session = session
        self.sentinel = sentinel
        self.endpoint = session.settings.endpoint
        self.run_id = facts.run_id
        self.replication_id = facts.replication_id
        self.replicas = [address for address, _offset in facts.replicas]
        self.min_replicas = (
            len(self.replicas) if options.min_replicas is None else options.min_replicas
        )
        self.wait_aof = options.wait_aof
        self.timeout_ms = max(1, round(options.replica_timeout * 1000))
        self.acknowledged_waits = 0
        # Items written on this node that the replicas have not acknowledged yet, and when the
        # last wait for them was sent.
        self.pending = 0
        self.waited = time.monotonic()
        self.confirmed = None
        self.subscribed = bool(sentinel) and sentinel.watch()

    @property
    def waits(self):
        """Whether the run waits for acknowledgements of its writes."""
        return self.min_replicas > 0 or self.wait_aof

    def refusal(self):
        """Why this run cannot be watched as asked, before anything is written; or None."""
        facts, endpoint = self.session.facts, self.endpoint
        connected = len(self.replicas)
        socket_timeout = self.session.settings.socket_timeout
        if self.waits and self.timeout_ms >= socket_timeout * 1000:
            return (
                f"replica_timeout ({self.timeout_ms / 1000:g} s) must be below socket_timeout "
                f"({socket_timeout:g} s): a call and its wait for the replicas are one reply. "
                f"Nothing was written. Lower replica_timeout or raise socket_timeout."
            )
        if self.min_replicas > connected:
            return (
                f"min_replicas is {self.min_replicas} but {connected} replica"
                f"{'' if connected == 1 else 's'} of Redis at {endpoint} "
                f"{'is' if connected == 1 else 'are'} connected and online: no write could be "
                f"acknowledged. Nothing was written. Lower min_replicas, or bring the replicas "
                f"back first."
            )
        if self.wait_aof and facts.version < (7, 2):
            return (
                f"wait_aof needs WAITAOF, which Redis {facts.version_text} at {endpoint} lacks "
                f"(it came with 7.2). Nothing was written. Set wait_aof: false."
            )
        if self.wait_aof and facts.aof_enabled is False:
            return (
                f"wait_aof waits for the primary's own AOF, but Redis at {endpoint} has "
                f"appendonly no. Nothing was written. Set wait_aof: false, or appendonly yes."
            )
        return None

    def checks_not_run(self):
        if self.run_id is not None:
            return []
        return [
            "primary identity: without INFO the node's run_id and replication ID are unknown, "
            "so a connection that reopens stops the run, and the node is not asked again "
            "before the verdict"
        ]

    def on_writer_connect(self, connection):
        """on_connect for the one connection that writes. WAIT acknowledges the writes of the
        connection that sends it: once that connection is reopened, writes made before cannot
        be waited for."""
        if getattr(connection, "storyart_opened", False) and self.pending:
            connection.on_connect()
            raise NodeChanged(
                f"the connection to {self.endpoint} that wrote {self.pending} keys or index "
                f"entries closed before the replicas acknowledged them"
            )
        self.on_connect(connection)

    def on_connect(self, connection):
        """redis-py's ``redis_connect_func``: the handshake, then the node's identity, on every
        connection the run's clients open, first or reopened. The SELECT of the connection's
        db, which redis-py would send in a round trip of its own, travels with the INFO."""
        db, connection.db = connection.db, 0
        try:
            connection.on_connect()
        finally:
            connection.db = db
        reopened = getattr(connection, "storyart_opened", False)
        connection.storyart_opened = True
        if self.run_id is None and reopened:
            raise NodeChanged(
                f"the connection to {self.endpoint} was closed and reopened during the run, "
                f"and without INFO the module cannot tell whether it reached the same primary"
            )
        commands = [("SELECT", db)] if db else []
        if self.run_id is not None:
            commands += [("INFO", "server"), ("INFO", "replication")]
        for command in commands:
            connection.send_command(*command)
        replies = [connection.read_response() for _command in commands]
        if self.run_id is None:
            return
        problem = self.difference({**parse_info(replies[-2]), **parse_info(replies[-1])})
        if problem:
            raise NodeChanged(problem)

    def difference(self, info):
        """How the node that answered ``info`` differs from the primary the run started on,
        in words; None when it is the same."""
        endpoint = self.endpoint
        if info.get("role") not in ("master", "primary"):
            master = address_text(info.get("master_host", "?"), info.get("master_port", "?"))
            return f"this node ({endpoint}) was demoted to a replica of {master}"
        if info.get("run_id") != self.run_id:
            return (
                f"Redis at {endpoint} restarted during the run (its run_id changed): what it "
                f"held may have been reloaded from disk or lost"
            )
        if info.get("master_replid") != self.replication_id:
            return (
                f"the replication history of {endpoint} changed during the run (replication ID "
                f"{self.replication_id} -> {info.get('master_replid')}): it was a replica, then "
                f"a primary again"
            )
        return None

    def wrote(self, count):
        """A call wrote ``count`` keys or index entries, to be acknowledged."""
        if self.waits and not self.session.options.dry_run:
            self.pending += count

    def queue_wait(self, pipe, due=True):
        """Queue, in ``pipe``, the wait for what the writer has written so far; False when
        nothing waits to be acknowledged, or (unless ``due``) the last wait is too recent."""
        if not self.pending or not (due or time.monotonic() - self.waited >= ACK_INTERVAL):
            return False
        self.waited = time.monotonic()
        if self.wait_aof:
            pipe.execute_command("WAITAOF", 1, self.min_replicas, self.timeout_ms)
        else:
            pipe.execute_command("WAIT", self.min_replicas, self.timeout_ms)
        return True

    def acknowledged(self, reply):
        """None when the wait's ``reply`` has every acknowledgement asked for, else the
        FailoverStop that says what happened."""
        local, replicas = reply if self.wait_aof else (1, reply)
        if int(local) >= 1 and int(replicas) >= self.min_replicas:
            self.acknowledged_waits += 1
            self.pending = 0
            return None
        return FailoverStop(self.diagnose() or self._unacknowledged(int(local), int(replicas)))

    def _unacknowledged(self, local, replicas):
        timeout = f"{self.timeout_ms / 1000:g} s (replica_timeout)"
        if self.wait_aof and local < 1:
            return (
                f"Redis at {self.endpoint} did not write its own AOF within {timeout}: the last "
                f"writes are not yet durable on it"
            )
        return (
            f"{replicas} of the {self.min_replicas} replicas required (min_replicas) "
            f"acknowledged the last writes within {timeout}: {self._lagging()}. Those writes "
            f"are on {self.endpoint}, but a failover now could lose them"
        )

    def _lagging(self):
        """Which replicas are behind, and by how much, as the primary sees them now."""
        try:
            info = self.session.source.info("replication")
        except redis_errors.RedisError as exc:
            return f"the replicas cannot be listed ({self.session.settings.scrub(exc)})"
        offset = int(info.get("master_repl_offset", 0))
        seen, parts = set(), []
        for name, value in info.items():
            if str(name).startswith(("slave", "replica")) and isinstance(value, dict):
                address = address_text(display(value.get("ip")), value.get("port"))
                seen.add(address)
                behind = offset - int(value.get("offset", 0))
                parts.append(
                    f"replica {address} did not acknowledge: {behind} bytes behind, state "
                    f"{display(value.get('state'))}, last heard from {value.get('lag')} s ago"
                )
        gone = [address for address in self.replicas if address not in seen]
        parts += [f"replica {address} is no longer connected" for address in gone]
        return "; ".join(parts) or "no replica is connected"

    def check(self):
        """Between calls: stop when a Sentinel has announced a new primary."""
        if not self.sentinel:
            return
        moved = self.sentinel.announced_switch() if self.subscribed else None
        if moved is None:
            # No subscription (lost, or none could be made): ask the Sentinels instead.
            moved = self._sentinel_primary()
        if moved and moved != self.endpoint:
            raise FailoverStop(self._moved(moved))

    def _moved(self, now):
        return f"failover: the primary moved from {self.endpoint} to {now}"

    def _sentinel_primary(self):
        """The primary the Sentinels name now, as host:port; None when none answers."""
        try:
            return address_text(*self.sentinel.primary())
        except MigrationError:
            return None

    def diagnose(self):
        """What has happened to the primary, in words: the Sentinels' answer, then the node's
        own. None when it is still the same writable primary."""
        if self.sentinel:
            now = self._sentinel_primary()
            if now and now != self.endpoint:
                return self._moved(now)
        if self.run_id is None:
            return None
        probe = self.session.settings.client(db=0)
        try:
            server, replication = (
                probe.pipeline(transaction=False).info("server").info("replication").execute()
            )
            info = {**server, **replication}
        except redis_errors.RedisError as exc:
            error = self.session.settings.scrub(exc)
            return f"Redis at {self.endpoint} no longer answers ({error})"
        finally:
            probe.close()
        return self.difference({name: display(value) for name, value in info.items()})

    def confirm(self):
        """Before the verdict: the node and the Sentinels still name the primary the run
        started on, and nothing announced a failover meanwhile."""
        self.check()
        problem = self.diagnose()
        if problem:
            raise FailoverStop(problem)
        self.confirmed = True

    def stop_for(self, error):
        """The FailoverStop for a reply or exception ``error`` that is_node_error()."""
        seen = self.session.settings.scrub(error)
        if isinstance(error, NodeChanged):
            return FailoverStop(self.diagnose() or seen)
        found = self.diagnose()
        if found:
            return FailoverStop(f"{found} (Redis answered: {seen})")
        return FailoverStop(f"Redis at {self.endpoint} answered {seen}")

    def as_dict(self):
        return dict(
            primary=self.endpoint,
            sentinel_service=self.sentinel.name if self.sentinel else None,
            run_id=self.run_id,
            replication_id=self.replication_id,
            replicas=list(self.replicas),
            min_replicas=self.min_replicas,
            wait_aof=self.wait_aof,
            acknowledged_waits=self.acknowledged_waits,
            confirmed=self.confirmed,
        )
