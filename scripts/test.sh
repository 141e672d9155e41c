#!/usr/bin/env bash
# Every test and lint: ruff, ansible-lint (production profile), ansible-doc, then pytest against
# real redis-server processes. Extra arguments go to pytest, e.g. scripts/test.sh -k index
source "$(dirname "$0")/bootstrap.sh"

echo "== ruff"
ruff check .
ruff format --check .

echo "== ansible-lint (production profile)"
ansible-lint -q

echo "== ansible-doc redis_db_migrate"
ansible-doc redis_db_migrate >/dev/null

echo "== pytest"
status=0
pytest "$@" || status=$?
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure here, the suite must never be empty" >&2
    exit 1
fi
exit "$status"
