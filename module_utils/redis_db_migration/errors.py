"""Errors the operator reads, and their wording: what failed, where, and what to do.

Every sentence that reaches the operator is scrubbed of the password, which may hide in the
server's reply, the user name or the host name as well as in the settings.
"""

from __future__ import annotations

import socket
import ssl

from .redis_py import redis_errors


class MigrationError(Exception):
    """A problem the operator must fix. The message says what is wrong and what to do.

    ``report`` holds the counts so far when the run stopped part-way; ``fields``, what the
    failed result shows besides, e.g. ``permissions`` when the user lacks commands.
    """

    def __init__(self, message, report=None, fields=None):
        super().__init__(message)
        self.report = report
        self.fields = fields or {}


class GuardStop(Exception):
    """The memory guard stopped the run; the message says why and what to do."""


class FailoverStop(Exception):
    """The primary watch stopped the run: the node is no longer the primary it started on, or
    the replicas did not acknowledge its writes. The message says what happened."""


class OperatorStop(Exception):
    """The operator asked the run to stop; raised between two server calls, never in one."""


class CallExpired(Exception):
    """A call reached the server after its deadline and did not run (in_flight.py). The
    message says so."""


def describe_error(exc, settings, action, answered=True):
    """An operator-facing sentence for a redis-py exception: what failed, where, what to do.

    ``answered``: whether the server has answered this run before. A connection closed before
    Redis ever answered may have met a server that speaks only TLS; one closed after it has
    answered was dropped, and advice about where it listens would mislead.

    The whole sentence is scrubbed: the password may hide in the user or host name too.
    """
    return settings.scrub(_describe(unwrapped(exc), settings, action, answered))


def _describe(exc, settings, action, answered):
    text = settings.scrub(exc).rstrip(".")
    if is_auth_failure(exc):
        return _authentication_failure(settings, text)
    problem = _connection_problem(exc, settings, action, text, answered)
    if problem:
        return problem
    if isinstance(exc, redis_errors.ResponseError) and is_noperm(exc):
        user = settings.username or "default"
        return (
            f"User '{user}' on Redis at {settings.endpoint} lacks a permission needed while "
            f"{action}: {text}. Grant it with ACL SETUSER or use another login_user."
        )
    if isinstance(exc, redis_errors.ResponseError) and is_unknown_hello(exc):
        return (
            f"Redis at {settings.endpoint} does not know HELLO, with which redis-py opens each "
            f"connection ({text}): renamed or disabled, as managed services do, and ACL cannot "
            f"bring it back. Have the provider enable HELLO, or run the module with redis-py "
            f"4, which opens connections with AUTH alone."
        )
    return f"Redis at {settings.endpoint} refused while {action}: {text}"


def _connection_problem(exc, settings, action, text, answered):  # noqa: PLR0911 - one per kind
    """What went wrong with the connection, in words; None when it was not the connection."""
    endpoint = settings.endpoint
    if isinstance(exc, redis_errors.ConnectionError) and _is_tls_failure(exc):
        return (
            f"TLS handshake with Redis at {endpoint} failed: {text}. Check that ca_certs "
            f"is the CA that signed the server certificate, that the certificate names "
            f"{settings.host}, and client_cert_file/client_key_file if the server asks "
            f"for a client certificate. validate_certs: false turns checking off (unsafe)."
        )
    if is_connect_failure(exc):
        slow = (
            f", and that no firewall drops the traffic; on a slow network raise "
            f"connect_timeout (now {settings.connect_timeout}s)"
            if isinstance(exc, redis_errors.TimeoutError)
            else ""
        )
        return (
            f"Cannot connect to Redis at {endpoint} while {action}: {text}. Check that "
            f"redis-server is running there and that login_host/login_port (or "
            f"login_unix_socket) are right{slow}."
        )
    if isinstance(exc, redis_errors.TimeoutError):
        return (
            f"Redis at {endpoint} did not answer within the timeout while {action}: {text}. "
            f"The server may be busy or paused, or the network stalled; retry later or raise "
            f"socket_timeout (now {settings.socket_timeout}s)."
        )
    if isinstance(exc, redis_errors.ConnectionError):
        return _closed(settings, action, text, answered)
    if isinstance(exc, redis_errors.InvalidResponse):
        hint = "" if settings.tls or answered else " If the server only accepts TLS, set tls: true."
        return (
            f"Redis at {endpoint} answered something that is not the Redis protocol while "
            f"{action}: {text}. Check that login_host/login_port point at Redis and that "
            f"nothing in between alters the traffic.{hint}"
        )
    return None


def _closed(settings, action, text, answered):
    """A connection made, then closed or reset before its reply came."""
    endpoint = settings.endpoint
    if answered:
        return (
            f"Lost the connection to Redis at {endpoint} while {action}: {text}. Redis had "
            f"answered this run, so the connection settings are right: it was dropped, by the "
            f"server (a restart, its client timeout or output buffer limits, CLIENT KILL) or "
            f"by the network (a proxy, load balancer or firewall). Retry once the network is "
            f"steady."
        )
    hint = "" if settings.tls else " If the server only accepts TLS, set tls: true."
    return (
        f"Cannot connect to Redis at {endpoint} while {action}: the connection was closed "
        f"before Redis answered ({text}). The server, or a proxy or firewall in between, "
        f"closed it.{hint}"
    )


def _authentication_failure(settings, text):
    if not settings.password:
        return (
            f"Authentication to Redis at {settings.endpoint} failed: the server requires a "
            f"password and login_password is not set. Set login_password (and login_user for "
            f"an ACL user)."
        )
    return (
        f"Authentication to Redis at {settings.endpoint} as user "
        f"'{settings.username or 'default'}' failed: {text}. Check login_user and "
        f"login_password (the password is never shown)."
    )


def is_auth_failure(exc):
    """Whether the server refused the credentials (redis-py 4.x reports some as ResponseError)."""
    if isinstance(exc, redis_errors.AuthenticationError):
        return True
    text = str(exc)
    return isinstance(exc, redis_errors.ResponseError) and (
        text.startswith(("WRONGPASS", "NOAUTH"))
        or "invalid password" in text
        or "without any password configured" in text
    )


def is_connect_failure(exc):
    """Whether no connection was made at all: refused, a host name that does not resolve, no
    answer to the attempt within connect_timeout. Nothing was sent then."""
    context = exc.__context__
    return "connecting to" in str(exc) or isinstance(
        context, (ConnectionRefusedError, socket.gaierror)
    )


def unwrapped(exc):
    """``exc``, or the lost connection behind it: redis-py reports a connection lost while a key
    is WATCHed as a WatchError, as if the key had changed."""
    context = exc.__context__
    lost = (redis_errors.ConnectionError, redis_errors.TimeoutError)
    if isinstance(exc, redis_errors.WatchError) and isinstance(context, lost):
        return context
    return exc


def may_have_run(exc):
    """Whether a call that failed with ``exc`` may still have reached the server and run: its
    connection was lost, or no reply came in time, after it was sent."""
    exc = unwrapped(exc)
    lost = isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError))
    return lost and not (is_connect_failure(exc) or is_auth_failure(exc))


def is_noperm(exc):
    """Whether the server refused for lack of ACL permission (redis-py 8 strips the code)."""
    if getattr(exc, "status_code", None) == "NOPERM":
        return True
    denied = getattr(redis_errors, "NoPermissionError", ())
    text = str(exc).lower()
    # Inside a Lua script Redis says "The user executing the script can't run this command",
    # Valkey "ACL failure in script: User x has no permissions to run the 'copy' command".
    return (
        isinstance(exc, denied)
        or text.startswith("noperm")
        or "can't run this command" in text
        or "no permissions" in text
    )


def is_unknown_command(exc):
    """Whether the server does not know a command: it lacks it, or it was renamed away."""
    text = str(exc).lower()
    return "unknown command" in text or "unknown redis command" in text


def is_unknown_hello(exc):
    """Whether the server does not know HELLO, with which a redis-py that speaks RESP3 (its
    default in recent versions) opens every connection."""
    return is_unknown_command(exc) and "hello" in str(exc).lower()


def _is_tls_failure(exc):
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "SSL" in text or "certificate" in text.lower()
