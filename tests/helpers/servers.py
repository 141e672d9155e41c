"""Real Redis-compatible servers for the tests: each on a free port, in a temp dir, never saved.

STORYART_REDIS_SERVER names the server binary (default: redis-server on the PATH), so the same
tests run on Redis 6.2, 7.0 and Valkey (scripts/test.sh runs all three).
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from .engine import engine

REDIS_SERVER = os.environ.get("STORYART_REDIS_SERVER") or shutil.which("redis-server")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listen():
    """A proxy's front: a non-blocking listener on a free loopback port, and a selector that
    watches it. Returns (port, listener, selector)."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    return port, listener, selector


class RedisServer:
    """A throwaway redis-server. ``config`` lines are appended to its redis.conf; a
    ``sentinel`` runs the same binary with ``--sentinel``."""

    def __init__(self, workdir: Path, config=(), password=None, *, sentinel=False):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = list(config)
        self.password = password
        self.sentinel = sentinel
        self.port = None
        self.unix_socket = str(self.dir / "redis.sock")
        self.process = None
        self.version = None

    def start(self):
        for _ in range(5):
            self.port = self.port or free_port()
            conf = self.dir / "redis.conf"
            lines = [
                f"port {self.port}",
                "bind 127.0.0.1",
                'save ""',
                "appendonly no",
                f"dir {self.dir}",
                f"unixsocket {self.unix_socket}",
                "unixsocketperm 700",
                f"logfile {self.dir / 'redis.log'}",
                *self.config,
            ]
            conf.write_text("\n".join(lines) + "\n")
            # A configuration error goes to stderr, before the log file is open.
            with open(self.dir / "stderr.log", "wb") as stderr:
                mode = ["--sentinel"] if self.sentinel else []
                self.process = subprocess.Popen(
                    [REDIS_SERVER, str(conf), *mode], cwd=self.dir, stderr=stderr
                )
            if self._wait_ready():
                self.version = server_version(self.client())
                return self
            self.process.kill()
            self.process.wait()
            self.port = None
        log = "".join(
            (self.dir / name).read_text(errors="replace")[-2000:]
            for name in ("stderr.log", "redis.log")
            if (self.dir / name).exists()
        )
        raise RuntimeError(f"redis-server did not start:\n{log}")

    def _wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if os.path.exists(self.unix_socket):
                try:
                    raw = redis.Redis(unix_socket_path=self.unix_socket, password=self.password)
                    raw.ping()
                    return True
                except redis.exceptions.ConnectionError:
                    pass
                except redis.exceptions.ResponseError:
                    return True  # up, but e.g. the default user is disabled
            time.sleep(0.02)
        return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.resume()  # a paused server would only handle SIGTERM once continued
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self):
        """SIGKILL: the server dies mid-whatever, as in a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def pause(self):
        """SIGSTOP: the server stops answering but keeps its connections, as when it hangs."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def client(self, db=0, **kwargs) -> redis.Redis:
        kwargs.setdefault("password", self.password)
        return redis.Redis(unix_socket_path=self.unix_socket, db=db, **kwargs)

    def settings(self, **kwargs) -> engine.ConnectionSettings:
        """The engine's connection settings for this server, over TCP."""
        kwargs.setdefault("password", self.password)
        return engine.ConnectionSettings(host="127.0.0.1", port=self.port, **kwargs)

    def rdb_changes(self) -> int:
        """Writes the server has applied since start: proves a run wrote nothing."""
        return int(self.client().info("persistence")["rdb_changes_since_last_save"])


def server_version(client):
    """The server's version as a tuple, e.g. (7, 0, 15); Valkey reports its Redis version.
    A server with INFO renamed tells it in HELLO."""
    try:
        text = client.info("server")["redis_version"]
    except redis.exceptions.ResponseError:
        text = hello(client)["version"]
    return tuple(int(part) for part in str(text).split(".")[:3])


def hello(client):
    """HELLO 2's reply as a dict of text. It runs on a client of its own: redis-py reads
    a HELLO as a switch of protocol for the connection that sent it."""
    pool = client.connection_pool
    probe = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
    try:
        reply = probe.execute_command("HELLO", "2")
    finally:
        probe.close()
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2]))
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in reply.items()
    }


def wait_for(predicate, what, timeout=30.0):
    """Poll ``predicate`` until it holds; fail the test, naming ``what``, after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def binary_version():
    """The server binary's own version, before any server runs (Valkey: its own numbering)."""
    if REDIS_SERVER is None:
        return ()
    text = subprocess.run(
        [REDIS_SERVER, "--version"], check=True, capture_output=True, text=True
    ).stdout
    found = re.search(r"v=(\d+)\.(\d+)", text)
    return tuple(int(part) for part in found.groups()) if found else ()


# DEBUG is refused unless enabled, on Redis 7.0 and newer (older servers have no such option).
DEBUG_CONFIG = "enable-debug-command yes" if binary_version() >= (7, 0) else None
