"""A throwaway high-availability topology on loopback: a primary, one replica and three
Sentinels watching them, all from the binary REDIS_SERVER names (Redis 6.2, 7.0 or Valkey).

Every wait polls what the servers and Sentinels say, so a test waits only as long as the
topology takes: Sentinels find each other in a second or two, and fail over in a few more.
"""

from __future__ import annotations

from pathlib import Path

import redis

from .servers import RedisServer, wait_for

SERVICE = "storyart"
DOWN_AFTER_MS = 2000
# Also how long a Sentinel waits before it tries the same failover again (twice this).
FAILOVER_TIMEOUT_MS = 6000
SENTINELS = 3
# A full sync starts at once: Redis 7.0 would otherwise wait 5 s for other replicas to join it.
DATA_CONFIG = ("repl-diskless-sync-delay 0",)


class HaTopology:
    """A primary, its replica and three Sentinels monitoring them as ``service``, quorum 2.

    ``start()`` returns once the replica's link is up and every Sentinel knows the replica and
    the other Sentinels; ``stop()`` stops every process it started, by its own PID.
    """

    def __init__(self, workdir: Path, service=SERVICE):
        self.dir = workdir
        self.service = service
        self.primary = None
        self.replica = None
        self.sentinels = []
        self._started = []

    @property
    def servers(self):
        """The two data servers, whichever of them is primary now."""
        return [self.primary, self.replica]

    @property
    def sentinel_hosts(self):
        return [f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels]

    def start(self):
        try:
            self.primary = self._start(RedisServer(self.dir / "primary", DATA_CONFIG))
            replica_of = f"replicaof 127.0.0.1 {self.primary.port}"
            self.replica = self._start(
                RedisServer(self.dir / "replica", (*DATA_CONFIG, replica_of))
            )
            wait_for(lambda: link_up(self.replica), "the replica's link to the primary")
            monitor = (
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 2",
                f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {self.service} {FAILOVER_TIMEOUT_MS}",
            )
            for n in range(SENTINELS):
                sentinel = RedisServer(self.dir / f"sentinel{n}", monitor, sentinel=True)
                self.sentinels.append(self._start(sentinel))
            self.wait_until_settled()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, server):
        self._started.append(server)
        return server.start()

    def stop(self):
        for server in reversed(self._started):
            server.stop()

    # What the Sentinels say ---------------------------------------------------------------

    def sentinel_client(self, sentinel, **kwargs) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=sentinel.port, socket_timeout=2, decode_responses=True, **kwargs
        )

    def _ask(self, sentinel, *command):
        client = self.sentinel_client(sentinel)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def primary_ports(self):
        """The port each answering Sentinel names as the primary's."""
        ports = []
        for sentinel in self.sentinels:
            try:
                reply = self._ask(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            except redis.exceptions.ConnectionError:
                continue  # a Sentinel that is down has no say
            if reply:
                ports.append(int(reply[1]))
        return ports

    def current_primary_port(self):
        """The primary's port as most Sentinels name it."""
        ports = self.primary_ports()
        return max(set(ports), key=ports.count) if ports else None

    def server_at(self, port) -> RedisServer:
        [server] = [server for server in self.servers if server.port == port]
        return server

    def current_primary(self) -> RedisServer:
        return self.server_at(self.current_primary_port())

    def current_replica(self) -> RedisServer:
        return self.server_at(self.other_port(self.current_primary_port()))

    def other_port(self, port):
        return next(server.port for server in self.servers if server.port != port)

    def _knows_everyone(self, sentinel):
        try:
            master = self._ask(sentinel, "SENTINEL", "MASTER", self.service)
            replicas = self._ask(sentinel, "SENTINEL", "REPLICAS", self.service)
        except redis.exceptions.ConnectionError:
            return False
        master = pairs(master)
        replicas = [pairs(replica) for replica in replicas]
        primary = int(master["port"])
        # A replica is a failover candidate only while its link to the primary is up.
        return (
            master["flags"] == "master"
            and int(master["num-other-sentinels"]) == SENTINELS - 1
            and [(int(r["port"]), r["flags"], r["master-link-status"]) for r in replicas]
            == [(self.other_port(primary), "slave", "ok")]
        )

    def wait_until_settled(self, timeout=30.0):
        """Every Sentinel names the same primary, knows the other Sentinels and the replica,
        which is linked to that primary and no longer a master itself."""

        def settled():
            ports = self.primary_ports()
            if len(ports) != SENTINELS or len(set(ports)) != 1:
                return False
            primary = self.server_at(ports[0])
            replica = self.server_at(self.other_port(ports[0]))
            return (
                role(primary) == "master"
                and link_up(replica, ports[0])
                # The primary lists its replica online a moment after the replica sees its
                # link up; a run counts the replicas online when it starts.
                and online_replicas(primary) == [replica.port]
                and all(self._knows_everyone(sentinel) for sentinel in self.sentinels)
            )

        wait_for(settled, "the Sentinels to agree on the primary and know everyone", timeout)

    # Acting on the topology ---------------------------------------------------------------

    def failover(self):
        """SENTINEL FAILOVER: a Sentinel promotes the replica; this returns at once."""
        assert self._ask(self.sentinels[0], "SENTINEL", "FAILOVER", self.service) in ("OK", True)

    def wait_for_new_primary(self, old_port, timeout=30.0) -> RedisServer:
        """Wait until every answering Sentinel names another primary than ``old_port`` and
        that server says it is a master; return it."""

        def promoted():
            ports = self.primary_ports()
            if not ports or old_port in ports or len(set(ports)) != 1:
                return False
            return role(self.server_at(ports[0])) == "master"

        wait_for(promoted, f"a primary other than 127.0.0.1:{old_port}", timeout)
        return self.current_primary()

    def wait_until_reconfigured(self, server, timeout=30.0):
        """Wait until ``server`` (the old primary) is a replica of the current primary with its
        link up: Sentinel has sent it REPLICAOF and it has synced."""
        wait_for(
            lambda: link_up(server, self.current_primary_port()),
            f"127.0.0.1:{server.port} to replicate the new primary",
            timeout,
        )

    def wait_for_sync(self, timeout=30.0):
        """Wait until every replica of the current primary has applied everything the primary
        had written when this was called."""
        primary = self.current_primary()
        offset = int(primary.client().info("replication")["master_repl_offset"])
        for server in self.servers:
            if server is not primary:
                wait_for(
                    lambda server=server: replica_offset(server) >= offset,
                    f"127.0.0.1:{server.port} to reach the primary's offset {offset}",
                    timeout,
                )

    @staticmethod
    def pause(server):
        server.pause()

    @staticmethod
    def resume(server):
        server.resume()


def pairs(reply):
    """A Sentinel reply of alternating names and values, as a dict (redis-py 4.3 and 8 alike,
    since the command is sent raw)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2]))


def info(server, section="replication"):
    client = server.client(socket_timeout=2)
    try:
        return client.info(section)
    except redis.exceptions.RedisError:
        return {}  # down, paused or loading: not what any wait is waiting for
    finally:
        client.close()


def role(server):
    return info(server).get("role")


def link_up(server, primary_port=None):
    """Whether ``server`` is a replica with its link up (to ``primary_port`` if given)."""
    state = info(server)
    return (
        state.get("role") == "slave"
        and state.get("master_link_status") == "up"
        and (primary_port is None or int(state.get("master_port", 0)) == primary_port)
    )


def online_replicas(server):
    """The ports of the replicas ``server`` lists as online."""
    return [
        int(value["port"])
        for name, value in info(server).items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    ]


def replica_offset(server):
    state = info(server)
    return int(state.get("slave_repl_offset", -1)) if state.get("role") == "slave" else -1
