"""Where and how to reach Redis: the connection options and the clients built from them."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, replace

from .errors import MigrationError
from .options import option
from .redis_py import redis
from .sentinel import parse_address

try:
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # no redis-py, or one before 4.0: refused by redis_py_problem()
    NoBackoff = Retry = None
try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # redis-py before 8.0, which sends no such handshake
    MaintNotificationsConfig = None


def _quiet_handshake():
    """The client options that leave out what newer redis-py sends, a round trip each, when it
    opens a connection and the run never reads: CLIENT SETINFO of its name and its version
    (5.0+), and the handshake of maintenance notifications (8.0+, which only managed clusters
    send). Over a long link three round trips a connection."""
    if redis is None:
        return {}
    known = inspect.signature(redis.Redis.__init__).parameters
    quiet = {}
    if "driver_info" in known:
        quiet["driver_info"] = None
    elif "lib_name" in known:
        quiet.update(lib_name=None, lib_version=None)
    if MaintNotificationsConfig is not None and "maint_notifications_config" in known:
        quiet["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return quiet


QUIET_HANDSHAKE = _quiet_handshake()


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to reach Redis. The password never appears in repr() or messages."""

    host: str = option("str", "localhost", name="login_host")
    port: int = option("int", 6379, name="login_port")
    unix_socket: str | None = option("path", None, name="login_unix_socket")
    username: str | None = option("str", None, name="login_user")
    password: str | None = option("str", None, name="login_password", no_log=True, shown=False)
    tls: bool = option("bool", False)
    validate_certs: bool = option("bool", True)
    ca_certs: str | None = option("path", None)
    client_cert_file: str | None = option("path", None)
    client_key_file: str | None = option("path", None)
    connect_timeout: float = option("float", 5.0)
    socket_timeout: float = option("float", 30.0)
    # Sentinel: with these the primary is asked of the Sentinels, and host and port are theirs.
    sentinel_hosts: tuple = option("list", (), elements="str")
    sentinel_service_name: str | None = option("str", None)
    sentinel_username: str | None = option("str", None)
    sentinel_password: str | None = option("str", None, no_log=True, shown=False)

    @property
    def endpoint(self):
        if self.unix_socket:
            return f"unix:{self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def validate(self):
        if "://" in self.host or "@" in self.host:
            # Not echoed: a pasted redis:// URL carries the password.
            raise MigrationError(
                "login_host looks like a URL, which may carry credentials: give only the host "
                "name or address, the user in login_user and the password in login_password."
            )
        if self.unix_socket and self.tls:
            raise MigrationError(
                "tls cannot be used with login_unix_socket: a unix socket is local and "
                "unencrypted. Drop one of the two options."
            )
        for name in ("ca_certs", "client_cert_file", "client_key_file"):
            path = getattr(self, name)
            if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
                raise MigrationError(
                    f"{name} {path!r} is not a readable file on the host running the module. "
                    f"Give the path of a readable PEM file."
                )
        if self.client_key_file and not self.client_cert_file:
            raise MigrationError(
                "client_key_file is set without client_cert_file: give the client certificate "
                "too, or neither."
            )
        if not self.unix_socket and not 1 <= self.port <= 65535:
            raise MigrationError(f"login_port must be a TCP port from 1 to 65535, not {self.port}.")
        for name in ("connect_timeout", "socket_timeout"):
            if getattr(self, name) <= 0:
                raise MigrationError(f"{name} must be a positive number of seconds.")
        self._validate_sentinel()

    def _validate_sentinel(self):
        if bool(self.sentinel_hosts) != bool(self.sentinel_service_name):
            raise MigrationError(
                "sentinel_hosts and sentinel_service_name go together: give the Sentinels "
                "as host:port and the name of the service they monitor, or neither."
            )
        wrong = [text for text in self.sentinel_hosts if parse_address(text) is None]
        if wrong:
            raise MigrationError(
                f"sentinel_hosts must be host:port entries with a port from 1 to 65535, not "
                f"{', '.join(repr(text) for text in wrong)}. Write e.g. 10.0.0.5:26379."
            )
        if self.sentinel_hosts and self.unix_socket:
            raise MigrationError(
                "login_unix_socket cannot be used with sentinel_hosts: Sentinel names the "
                "primary by host and port. Drop one of the two."
            )

    def at(self, host, port):
        """These settings, aimed at ``host``:``port`` (the primary a Sentinel named)."""
        return replace(self, host=host, port=port)

    def tls_kwargs(self):
        """redis-py's TLS arguments, for the server and the Sentinels alike."""
        if not self.tls:
            return {}
        return dict(
            ssl=True,
            ssl_cert_reqs="required" if self.validate_certs else "none",
            ssl_check_hostname=self.validate_certs,
            ssl_ca_certs=self.ca_certs,
            ssl_certfile=self.client_cert_file,
            ssl_keyfile=self.client_key_file,
        )

    def client(self, db, **extra):
        """A redis-py client on ``db`` that returns bytes and never retries on its own. Pass
        ``redis_connect_func`` to check each connection it opens (primary.PrimaryWatch)."""
        kwargs = dict(
            extra,
            **QUIET_HANDSHAKE,
            db=db,
            username=self.username,
            password=self.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            # A retried script could have run once already: fail instead, a rerun is safe.
            retry=Retry(NoBackoff(), 0),
        )
        if self.unix_socket:
            kwargs["unix_socket_path"] = self.unix_socket
        else:
            kwargs.update(host=self.host, port=self.port)
        kwargs.update(self.tls_kwargs())
        return redis.Redis(**kwargs)

    def scrub(self, text):
        """Remove the passwords from ``text``, whatever produced it."""
        text = str(text)
        for secret in (self.password, self.sentinel_password):
            if secret:
                text = text.replace(secret, "********")
        return text
