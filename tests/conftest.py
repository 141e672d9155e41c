"""Fixtures: throwaway servers, started on demand and stopped after each test, and test
certificates. Everything else the tests share is in helpers/."""

from __future__ import annotations

import pytest
from helpers import (
    DEBUG_CONFIG,
    REDIS_SERVER,
    HaTopology,
    Proxy,
    RedisServer,
    make_certificates,
)


@pytest.fixture
def redis_factory(tmp_path):
    """Start servers with extra config lines: ``redis_factory("rename-command COPY \\"\\"")``.

    ``debug=True`` allows the DEBUG command on any version.
    """
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    servers = []

    def start(*config, password=None, debug=False):
        if debug and DEBUG_CONFIG:
            config = (*config, DEBUG_CONFIG)
        server = RedisServer(tmp_path / f"redis{len(servers)}", config, password).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


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
