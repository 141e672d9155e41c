"""TLS for the tests: a CA and server certificates made with openssl, and servers on TLS only."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import pytest

from .servers import free_port

# The certificates made for the tests: a name, and the names it is valid for.
SERVER_NAMES = {"server": "IP:127.0.0.1,DNS:localhost", "elsewhere": "DNS:redis.example.invalid"}


def _openssl(directory, *args):
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _make_ca(directory, name):
    _openssl(
        directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN=StoryArt test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return str(directory / f"{name}.crt")


def make_certificates(directory):
    """A CA, an unrelated CA, and a certificate and key signed by the CA for each of
    SERVER_NAMES: ``.ca``, ``.wrong_ca``, ``.server`` and ``.elsewhere`` (cert, key)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    ca, wrong_ca = _make_ca(directory, "ca"), _make_ca(directory, "wrong-ca")
    for name, san in SERVER_NAMES.items():
        (directory / f"{name}.ext").write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        )  # fmt: skip
        _openssl(
            directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip
    pairs = {name: (str(directory / f"{name}.crt"), str(directory / f"{name}.key"))
             for name in SERVER_NAMES}  # fmt: skip
    return SimpleNamespace(ca=ca, wrong_ca=wrong_ca, **pairs)


def start_tls_server(redis_factory, cert_and_key, ca, *config, password=None):
    """A server on TLS only (its plain port is 0); skips the test on a server built without
    TLS. Its TLS port is ``.tls_port``."""
    cert, key = cert_and_key
    tls_port = free_port()
    try:
        server = redis_factory(
            *config,
            "port 0",
            f"tls-port {tls_port}",
            f"tls-cert-file {cert}",
            f"tls-key-file {key}",
            f"tls-ca-cert-file {ca}",
            "tls-auth-clients no",
            password=password,
        )
    except RuntimeError as exc:
        # Built without TLS: Valkey says so, Redis 6 does not know the tls-* options.
        if "TLS support" not in str(exc) and "'tls-port" not in str(exc):
            raise
        pytest.skip("this server binary was built without TLS")
    server.tls_port = tls_port
    return server
