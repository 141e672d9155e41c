#!/usr/bin/env bash
# The benchmark (not part of the tests): the engine, the module and redis-dump-load against the
# server's floor at 200k, 1M and 3M sessions, latency, large sessions, the rate asked against
# the rate achieved, and the controller's CPU per host across a fleet. It writes
# reports/bench.json. Arguments go to scripts/bench.py, e.g.
#   scripts/bench.sh --sessions 200000 --skip-baseline --fleet-hosts 20
# or the pacing alone:
#   scripts/bench.sh --sessions --replicated 0 --large-sessions 0 --skip-fleet
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_redis
ensure_dev_venv
# redis-dump-load needs redis-py 2.x: it gets a virtualenv of its own.
PEER_VENV="$VENV/redis-dump-load"
ensure_venv "$PEER_VENV" "$ROOT/requirements-peer.txt"
python scripts/bench.py --peer-bin "$PEER_VENV/bin" "$@"
