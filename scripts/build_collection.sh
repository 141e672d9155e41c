#!/usr/bin/env bash
# Builds the collection storyart.session_migration from this repository's tree:
#   ./scripts/build_collection.sh [OUTPUT_DIR]   (default: dist/)
# writes OUTPUT_DIR/storyart-session_migration-<version>.tar.gz and prints its path.
# Install it with: ansible-galaxy collection install <that file>
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_dev_venv
source "$ROOT/scripts/collection_tree.sh"

output=$(realpath -m "${1:-$ROOT/dist}")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

stage_collection "$stage/ansible_collections/storyart/session_migration"
mkdir -p "$output"
ansible-galaxy collection build --force --output-path "$output" \
    "$stage/ansible_collections/storyart/session_migration" >/dev/null
echo "$output/storyart-session_migration-$(collection_version).tar.gz"
