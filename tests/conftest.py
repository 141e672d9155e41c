"""Fixtures: throwaway servers, started on demand and stopped after each test (or module), and
test certificates. Everything else the tests share is in helpers/."""

from __future__ import annotations

import pytest
from helpers import (
    DEBUG_CONFIG,
    REDIS_SERVER,
    HaTopology,
    LatencyProxy,
    Proxy,
    RedisServer,
    make_certificates,
)


def servers_under(folder):
    """The server factory of the fixtures below: yields ``start``, which starts a server in
    ``folder``, then, once the fixture's scope ends, stops every server it started."""
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    servers = []

    def start(*config, password=None, debug=False):
        if debug and DEBUG_CONFIG:
            config = (*config, DEBUG_CONFIG)
        server = RedisServer(folder / f"redis{len(servers)}", config, password).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path):
    """Start servers with extra config lines: ``redis_factory("rename-command COPY \\"\\"")``.

    ``debug=True`` allows the DEBUG command on any version.
    """
    yield from servers_under(tmp_path)


@pytest.fixture(scope="module")
def module_redis_factory(tmp_path_factory):
    """redis_factory for a module-scoped fixture: its servers run until the module's last test."""
    yield from servers_under(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def redis_server(redis_factory) -> RedisServer:
    return redis_factory()


@pytest.fixture
def proxy():
    """Start TCP proxies in front of servers: ``proxy(server)``; each is closed afterwards."""
    proxies = []

    def start(server):
        proxies.append(Proxy(server.port))
        return proxies[-1]

    yield start
    for each in proxies:
        each.close()


@pytest.fixture
def slow_link():
    """Start latency proxies in front of servers: ``slow_link(server, delay)``, which delivers
    every chunk ``delay`` seconds late each way and counts round trips; each is closed
    afterwards."""
    proxies = []

    def start(server, delay):
        proxies.append(LatencyProxy(server.port, delay))
        return proxies[-1]

    yield start
    for each in proxies:
        each.close()


@pytest.fixture
def ha_topology(tmp_path) -> HaTopology:
    """A primary, its replica and three Sentinels (service "storyart"), settled; every process
    is stopped afterwards, whatever the test did to it."""
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    topology = HaTopology(tmp_path / "ha")
    try:
        yield topology.start()
    finally:
        topology.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, an unrelated CA, and certificates the CA signed for 127.0.0.1 and elsewhere."""
    return make_certificates(tmp_path_factory.mktemp("tls"))
