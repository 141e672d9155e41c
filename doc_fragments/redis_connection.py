"""Documentation fragment: the Redis connection options of redis_db_migrate, documented once.

The options themselves are defined once, in the engine (module_utils/redis_db_migration/
connection.py); their names follow community.general's Redis modules.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description: Host name or address of the Redis server.
    type: str
    default: localhost
  login_port:
    description: TCP port of the Redis server, from 1 to 65535.
    type: int
    default: 6379
  login_unix_socket:
    description:
      - Path of the Redis unix socket. When set, O(login_host) and O(login_port) are ignored.
      - "Not with O(tls=true): a unix socket is local and unencrypted."
    type: path
  login_user:
    description: ACL user name (Redis 6 and newer). Leave unset for the default user.
    type: str
  login_password:
    description: Password of O(login_user), or of the default user. Never shown in any output.
    type: str
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  validate_certs:
    description:
      - Check the server certificate and that it names O(login_host). Only used with O(tls).
      - Turning this off makes the connection open to interception.
    type: bool
    default: true
  ca_certs:
    description:
      - PEM file of the CA that signed the server certificate.
      - The system CAs are used when unset.
    type: path
  client_cert_file:
    description: PEM client certificate, for servers that ask for one.
    type: path
  client_key_file:
    description: PEM private key of O(client_cert_file), which it requires.
    type: path
  connect_timeout:
    description: Seconds to wait for the connection to be established.
    type: float
    default: 5
  socket_timeout:
    description:
      - Seconds to wait for any one reply. A batch is one reply, and so is its wait for the
        replicas, so keep it above O(replica_timeout).
      - Also how long a call that writes may take to reach Redis. Past that, on the server's
        clock, it does nothing, so that no call runs after the module gave up on it.
    type: float
    default: 30
  sentinel_hosts:
    description:
      - Redis Sentinels to ask for the primary of O(sentinel_service_name), each as
        C(host:port). With them the module connects to the primary the Sentinels name now,
        and to nothing else; O(login_host) and O(login_port) are ignored.
      - A failover during the run stops it; a rerun asks the Sentinels again.
      - The Sentinels are reached with the same TLS options as the server.
    type: list
    elements: str
    default: []
  sentinel_service_name:
    description: Name of the service the Sentinels monitor (C(sentinel monitor <name> ...)).
    type: str
  sentinel_username:
    description: ACL user on the Sentinels, when they require one.
    type: str
  sentinel_password:
    description: Password of the Sentinels (of O(sentinel_username)). Never shown in any output.
    type: str
"""
