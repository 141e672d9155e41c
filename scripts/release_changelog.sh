#!/usr/bin/env bash
# Releases the changelog for the version in collection/galaxy.yml: antsibull-changelog folds
# the fragments of collection/changelogs/fragments/ into changelogs/changelog.yaml and
# CHANGELOG.rst, which are kept in collection/, and removes them. Run it once per release,
# after raising the version; commit what it changes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_dev_venv
source "$ROOT/scripts/collection_tree.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections/storyart/session_migration"
stage_collection "$tree"
(cd "$tree" && antsibull-changelog release --date "$(date -u +%F)")
cp "$tree/changelogs/changelog.yaml" "$ROOT/collection/changelogs/changelog.yaml"
cp "$tree/CHANGELOG.rst" "$ROOT/collection/CHANGELOG.rst"
find "$ROOT/collection/changelogs/fragments" \( -name '*.yml' -o -name '*.yaml' \) -delete
echo "Released the changelog of $(collection_version): collection/CHANGELOG.rst"
