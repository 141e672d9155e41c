"""Where and how to reach Redis: the connection options and the clients built from them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import MigrationError
from .options import option
from .redis_py import redis

try:
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # no redis-py, or one before 4.0: refused by redis_py_problem()
    NoBackoff = Retry = None


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

    def client(self, db, **extra):
        """A redis-py client on ``db`` that returns bytes and never retries on its own."""
        kwargs = dict(
            extra,
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
        if self.tls:
            kwargs.update(
                ssl=True,
                ssl_cert_reqs="required" if self.validate_certs else "none",
                ssl_check_hostname=self.validate_certs,
                ssl_ca_certs=self.ca_certs,
                ssl_certfile=self.client_cert_file,
                ssl_keyfile=self.client_key_file,
            )
        return redis.Redis(**kwargs)

    def scrub(self, text):
        """Remove the password from ``text``, whatever produced it."""
        text = str(text)
        if self.password:
            text = text.replace(self.password, "********")
        return text
