"""Sentinel: where the primary of a service is now, and whether a failover has moved it.

redis-py's ``Sentinel.discover_master`` finds the primary; the run then connects there and to
nothing else. It never follows a failover: a Sentinel that names another primary, or announces
one on its ``+switch-master`` channel, stops the run (primary.py).
"""

from __future__ import annotations

from .errors import MigrationError
from .redis_py import redis_errors

try:
    from redis.sentinel import MasterNotFoundError, Sentinel
except ImportError:  # no redis-py: refused by redis_py_problem()
    MasterNotFoundError = Sentinel = None

SWITCH_MASTER = "+switch-master"


def parse_address(text):
    """('host', port) of a 'host:port' (or '[v6]:port') string, or None when it is not one."""
    host, sep, port = str(text).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def address_text(host, port):
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class SentinelService:
    """The Sentinels of one service, as the connection settings name them."""

    def __init__(self, settings):
        self.settings = settings
        self.name = settings.sentinel_service_name
        self.addresses = [parse_address(text) for text in settings.sentinel_hosts]
        kwargs = dict(
            username=settings.sentinel_username,
            password=settings.sentinel_password,
            socket_timeout=settings.connect_timeout,
            socket_connect_timeout=settings.connect_timeout,
            **settings.tls_kwargs(),
        )
        self.sentinel = Sentinel(self.addresses, sentinel_kwargs=kwargs)
        self.events = None

    @property
    def where(self):
        hosts = ", ".join(address_text(*address) for address in self.addresses)
        return f"Sentinel service '{self.name}' ({hosts})"

    def primary(self):
        """(host, port) of the service's primary, as the first Sentinel that knows it says."""
        try:
            host, port = self.sentinel.discover_master(self.name)
        except MasterNotFoundError:
            raise MigrationError(self._why_not_found()) from None
        except redis_errors.RedisError as exc:
            raise MigrationError(self._sentinel_error(exc)) from None
        return str(host), int(port)

    def _why_not_found(self):
        """Why no Sentinel named a primary: each Sentinel's own answer, in the message."""
        answers = []
        for address, client in zip(self.addresses, self.sentinel.sentinels):
            try:
                masters = client.sentinel_masters()
                state = masters.get(self.name)
                if state is None:
                    answer = f"does not monitor '{self.name}'"
                else:
                    flags = ", ".join(flag for flag in ("is_sdown", "is_odown") if state.get(flag))
                    answer = f"sees the primary as down ({flags})" if flags else "no primary"
            except redis_errors.RedisError as exc:
                answer = self.settings.scrub(exc).rstrip(".")
            answers.append(f"{address_text(*address)}: {answer}")
        return self.settings.scrub(
            f"No Sentinel of service '{self.name}' named a primary that is up: "
            f"{'; '.join(answers)}. Check sentinel_hosts and sentinel_service_name, the "
            f"Sentinels' auth (sentinel_username, sentinel_password) and that the service "
            f"has a primary (SENTINEL MASTERS)."
        )

    def _sentinel_error(self, exc):
        return self.settings.scrub(
            f"{self.where} refused when asked for its primary: {exc}. Check sentinel_username "
            f"and sentinel_password; a Sentinel ACL user needs +ping, +sentinel|masters, "
            f"+subscribe and &+switch-master (README, High availability)."
        )

    def watch(self):
        """Subscribe to +switch-master on the first Sentinel that answers: a failover is then
        seen as soon as it is announced, with no round trip of its own."""
        for client in self.sentinel.sentinels:
            events = client.pubsub(ignore_subscribe_messages=True)
            try:
                events.subscribe(SWITCH_MASTER)
                events.get_message(timeout=0)
            except redis_errors.RedisError:
                events.close()
                continue
            self.events = events
            return True
        return False

    def announced_switch(self):
        """'new host:port' when a Sentinel has announced this service's primary moved since
        watch(), '' otherwise; None when the subscription was lost (ask primary() then)."""
        if self.events is None:
            return None
        moved = ""
        try:
            while True:
                message = self.events.get_message(timeout=0)
                if message is None:
                    return moved
                words = _text(message.get("data")).split()
                if len(words) == 5 and words[0] == self.name:
                    moved = address_text(words[3], words[4])
        except redis_errors.RedisError:
            self.close()
            return moved or None

    def close(self):
        if self.events is not None:
            self.events.close()
            self.events = None
        for client in self.sentinel.sentinels:
            client.close()


def _text(data):
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")


__all__ = ["SWITCH_MASTER", "SentinelService", "address_text", "parse_address"]
