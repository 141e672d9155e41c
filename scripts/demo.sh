#!/usr/bin/env bash
# The main job on a built-in default: a throwaway redis-server seeded with sample StoryArt
# sessions in db 1 (some already in db 0), the dry run, the migration, then a second run that
# finds nothing left to do. The server and its files are removed at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_redis
ensure_dev_venv

workdir=$(mktemp -d)
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# maxmemory as a production server has it: the memory guard judges the copy against it.
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$workdir" \
    --maxmemory 256mb --logfile "$workdir/redis.log" &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$workdir"' EXIT
for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

python scripts/seed_demo_sessions.py --port "$port"
export REDIS_HOST=127.0.0.1 REDIS_PORT="$port"

echo
echo "=== 1. Dry run: ansible-playbook playbooks/migrate_sessions.yml --check --diff"
ansible-playbook playbooks/migrate_sessions.yml --check --diff
echo
echo "=== 2. Migration: ansible-playbook playbooks/migrate_sessions.yml"
ansible-playbook playbooks/migrate_sessions.yml
echo
echo "=== 3. Run again: nothing left to do (changed=0)"
ansible-playbook playbooks/migrate_sessions.yml
