#!/usr/bin/env bash
# ansible-test sanity (validate-modules, pylint, compile, import, yamllint, pep8, ansible-doc
# and the rest) on the collection as built, for the controller's Python 3.11. Extra arguments
# go to ansible-test, e.g. scripts/sanity.sh --test validate-modules. With SANITY_VENV set to
# another virtualenv (the oldest ansible-core declared: scripts/test.sh), its ansible-test runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_dev_venv
# Absolute: the run changes directory before it starts ansible-test.
export PATH="$(realpath "${SANITY_VENV:-$VENV}")/bin:$PATH"
source "$ROOT/scripts/collection_tree.sh"

# ansible-test bootstraps pip in its virtualenvs with a script it downloads from a host that
# offline machines cannot reach; it first looks in its cache, where an offline stand-in goes
# (a real download already there is kept).
pip_version=$(python -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3.11"))["pip"])')
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -e "$cache" ]; then
    mkdir -p "$(dirname "$cache")"
    cp "$ROOT/scripts/ansible_test/get_pip.py" "$cache"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections/storyart/session_migration"
stage_collection "$tree"
# ansible-test finds the collection's files through git; its own output (virtualenvs
# included) is not one of them.
git -C "$tree" init -q
echo "tests/output/" >"$tree/.git/info/exclude"
git -C "$tree" add -A
cd "$tree"
ansible-test sanity --venv --requirements --python 3.11 --color no "$@"
