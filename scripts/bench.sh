#!/usr/bin/env bash
# The throughput benchmark (not part of the tests): engine and module against the server's
# floor, the per-key baseline, memory, latency, rate limit and fleet runs. Arguments go to
# scripts/bench.py, e.g. scripts/bench.sh --sessions 1000000 --skip-baseline --skip-fleet
source "$(dirname "$0")/bootstrap.sh"
python scripts/bench.py "$@"
