#!/usr/bin/env bash
# Runs galaxy-importer, what Galaxy and Automation Hub run on every upload, on the collection
# tarball as scripts/build_collection.sh builds it. Fails on any error, and on any warning but
# the one no change here can fix: the note that the sanity ignore files exist (the module is
# MIT-licensed, and ansible-test asks every module for a GPLv3 header).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_dev_venv

IMPORTER_VENV="$VENV/galaxy-importer"
ensure_venv "$IMPORTER_VENV" "$ROOT/requirements-importer.txt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$(bash "$ROOT/scripts/build_collection.sh" "$work/dist" | tail -n 1)

# The importer runs ansible-doc and ansible-lint from PATH: its own, not this repository's
# (whose ansible.cfg would find the module through library/ instead of the collection).
cd "$work"
log="$work/import.log"
status=0
env -u ANSIBLE_CONFIG PATH="$IMPORTER_VENV/bin:$PATH" \
    "$IMPORTER_VENV/bin/python" -m galaxy_importer.main "$tarball" >"$log" 2>&1 || status=$?
grep -v '^Loading ' "$log"
if [ "$status" != 0 ] || ! grep -q '^Importer processing completed successfully' "$log"; then
    echo "galaxy-importer failed on $tarball" >&2
    exit 1
fi
unexpected=$(grep -E '^(WARNING|ERROR)' "$log" |
    grep -v '^WARNING: Ignore files skip ansible-test sanity tests' || true)
if [ -n "$unexpected" ]; then
    echo "galaxy-importer warned about what the collection can fix:" >&2
    echo "$unexpected" >&2
    exit 1
fi
