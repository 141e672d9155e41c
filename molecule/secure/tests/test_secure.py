"""The migration over TLS as a least-privilege ACL user, and how it fails when it must.

The data tests are every scenario's. Then the playbook runs three more times from here, as an
operator would (ansible-playbook -vvv with this scenario's inventory): with the right CA (a
rerun: nothing left to do), with a CA that did not sign the server certificate, and with a
wrong password. Each failure must say what is wrong and write nothing, and the password must
appear in no output and in no report file.
"""

import secrets

import pytest
from storyart_testinfra import (
    MigratedDataChecks,
    check_report_files,
    expectation,
    rdb_changes,
    redis_cli,
    report_dir,
    report_runs,
    run_playbook,
)

testinfra_hosts = ["ansible://storyart"]
HOST = "storyart-secure"
# Made up for this run: not the password, and nowhere in the scenario's configuration.
WRONG_PASSWORD = f"wrong-{secrets.token_hex(12)}"
WRONG_CA = "/etc/storyart-molecule/tls/wrong-ca.pem"
ENDPOINT = "127.0.0.1:6379"


class TestMigratedData(MigratedDataChecks):
    """Values, TTLs (PEXPIRETIME), db 1 untouched, db 0's own keys, index, over TLS."""


@pytest.fixture(scope="module")
def password(host):
    """The migration user's password, as the inventory gives it to the playbook."""
    return host.ansible.get_variables()["storyart_session_migration_login_password"]


@pytest.fixture(scope="module")
def runs(host, tmp_path_factory):
    """The playbook run three more times, in order, with Redis' write counter around each."""
    wrong_password = tmp_path_factory.mktemp("vars") / "wrong-password.yml"
    # In a vars file, so the wrong password is not on the command line either.
    wrong_password.write_text(f"storyart_session_migration_login_password: {WRONG_PASSWORD}\n")
    variants = {
        "right": [],
        "wrong CA": ["-e", f"storyart_session_migration_ca_certs={WRONG_CA}"],
        "wrong password": ["-e", f"@{wrong_password}"],
    }
    done = {}
    for name, args in variants.items():
        writes_before = rdb_changes(host)
        run = run_playbook("migrate_sessions.yml", "-vvv", *args)
        done[name] = (run, rdb_changes(host) - writes_before)
    return done


def test_redis_speaks_tls_only_and_knows_no_default_user(host):
    assert redis_cli(host, "CONFIG", "GET", "port").splitlines() == ["port", "0"]
    assert redis_cli(host, "CONFIG", "GET", "tls-port").splitlines() == ["tls-port", "6379"]
    assert "off" in redis_cli(host, "ACL", "GETUSER", "default").splitlines()
    plain = host.run("redis-cli -h 127.0.0.1 -p 6379 PING")
    assert "PONG" not in plain.stdout


def test_migration_ran_on_the_host_over_tls_as_the_acl_user():
    migration = report_runs()[1].records[HOST]
    expected = expectation(HOST)
    assert migration["status"] == "ok", migration["failure"]
    assert migration["endpoint"] == f"{HOST} {ENDPOINT} db 1 -> db 0"
    assert migration["migrate"]["strategy"] == "copy"
    assert migration["migrate"]["counts"]["migrated"] == len(expected.migrated)
    assert migration["migrate"]["verified"] is True


def test_rerun_with_the_right_ca_has_nothing_left_to_do(runs):
    run, writes = runs["right"]
    assert run.returncode == 0, run.output[-3000:]
    assert "migrated 0" in run.output
    assert writes == 0


def test_wrong_ca_fails_on_the_certificate_and_writes_nothing(runs):
    run, writes = runs["wrong CA"]
    assert run.returncode != 0
    assert f"TLS handshake with Redis at {ENDPOINT} failed" in run.output
    assert "certificate verify failed" in run.output
    assert writes == 0


def test_wrong_password_fails_on_authentication_and_writes_nothing(runs):
    run, writes = runs["wrong password"]
    assert run.returncode != 0
    assert f"Authentication to Redis at {ENDPOINT} as user 'storyart-migrator' failed" in (
        run.output
    )
    assert "WRONGPASS" in run.output
    assert writes == 0


def test_failed_runs_left_a_report_saying_why(runs):
    assert runs
    # check, converge, idempotence, then the three runs above.
    folders = report_runs()
    assert [run.dry_run for run in folders] == [True] + [False] * 5
    for folder in folders:
        check_report_files(folder, [HOST])
    right, wrong_ca, wrong_password = (folder.records[HOST] for folder in folders[3:])
    assert right["status"] == "ok"
    assert wrong_ca["status"] == "failed"
    assert "TLS handshake" in wrong_ca["failure"]
    assert wrong_password["status"] == "failed"
    assert "Authentication" in wrong_password["failure"]


@pytest.mark.parametrize("run_name", ["right", "wrong CA", "wrong password"])
def test_password_is_in_no_output(runs, run_name, password):
    run, _ = runs[run_name]
    assert "storyart-migrator" in run.output  # the output is verbose: it names the user
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.output  # -vvv shows the arguments
    assert password not in run.output
    assert WRONG_PASSWORD not in run.output


def test_password_is_in_no_report_file(runs, password):
    assert runs
    files = [path for path in report_dir().rglob("*") if path.is_file()]
    assert len(files) == 6 * 2  # one JSON and one summary.txt per run
    for path in files:
        text = path.read_text()
        assert password not in text, path
        assert WRONG_PASSWORD not in text, path
