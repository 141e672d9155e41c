"""Errors the operator reads, and their wording: what failed, where, and what to do.

Every sentence that reaches the operator is scrubbed of the password, which may hide in the
server's reply, the user name or the host name as well as in the settings.
"""

from __future__ import annotations

import ssl

from .redis_py import redis_errors


class MigrationError(Exception):
    """A problem the operator must fix. The message says what is wrong and what to do.

    ``report`` holds the counts so far when the run stopped part-way.
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


class GuardStop(Exception):
    """The memory guard stopped the run; the message says why and what to do."""


class FailoverStop(Exception):
    """The primary watch stopped the run: the node is no longer the primary it started on, or
    the replicas did not acknowledge its writes. The message says what happened."""


def describe_error(exc, settings, action):
    """An operator-facing sentence for a redis-py exception: what failed, where, what to do.

    The whole sentence is scrubbed: the password may hide in the user or host name too.
    """
    return settings.scrub(_describe(exc, settings, action))


def _describe(exc, settings, action):
    endpoint = settings.endpoint
    text = settings.scrub(exc).rstrip(".")
    if is_auth_failure(exc):
        return _authentication_failure(settings, text)
    if isinstance(exc, redis_errors.TimeoutError):
        return (
            f"Redis at {endpoint} did not answer within the timeout while {action}: {text}. "
            f"The server may be busy, paused or unreachable; retry later or raise "
            f"socket_timeout (now {settings.socket_timeout}s) and connect_timeout "
            f"(now {settings.connect_timeout}s)."
        )
    if isinstance(exc, redis_errors.ConnectionError):
        if _is_tls_failure(exc):
            return (
                f"TLS handshake with Redis at {endpoint} failed: {text}. Check that ca_certs "
                f"is the CA that signed the server certificate, that the certificate names "
                f"{settings.host}, and client_cert_file/client_key_file if the server asks "
                f"for a client certificate. validate_certs: false turns checking off (unsafe)."
            )
        hint = "" if settings.tls else " If the server only accepts TLS, set tls: true."
        return (
            f"Cannot connect to Redis at {endpoint} while {action}: {text}. Check that "
            f"redis-server is running there and that login_host/login_port (or "
            f"login_unix_socket) are right.{hint}"
        )
    if isinstance(exc, redis_errors.ResponseError) and is_noperm(exc):
        user = settings.username or "default"
        return (
            f"User '{user}' on Redis at {endpoint} lacks a permission needed while {action}: "
            f"{text}. Grant it with ACL SETUSER or use another login_user."
        )
    return f"Redis at {endpoint} refused while {action}: {text}"


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


def is_refusal(text):
    """Whether a probe's error says the command may not run here, as opposed to an error
    the command itself gave for the probe's arguments."""
    return bool(text) and (is_noperm(text) or is_unknown_command(text))


def _is_tls_failure(exc):
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "SSL" in text or "certificate" in text.lower()
