#!/usr/bin/env bash
# The collection's documentation, as Galaxy users and the Ansible docsite see it:
#   ./scripts/build_docsite.sh [OUTPUT_DIR]   (default: dist/docsite/)
# lints it (antsibull-docs lint-collection-docs --plugin-docs: the guides in docs/docsite/, the
# module's and the role's documentation) on the collection as built, then builds its HTML
# docsite (antsibull-docs sphinx-init, then its build.sh: antsibull-docs and Sphinx, every
# warning an error) into OUTPUT_DIR; open OUTPUT_DIR/index.html. antsibull-docs and Sphinx run
# from .venv/docs (requirements-docs.txt); ansible-doc from .venv. Nothing is fetched: the few
# links to Ansible's own documentation come from scripts/docsite_inventory.py.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_dev_venv
ensure_venv "$DOCS_VENV" "$ROOT/requirements-docs.txt"
source "$ROOT/scripts/collection_tree.sh"

output=$(realpath -m "${1:-$ROOT/dist/docsite}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/collections/ansible_collections/storyart/session_migration"
stage_collection "$tree"

# Ansible finds the collection as built, and nothing of this repository's own layout (its
# ansible.cfg points at library/ and roles/).
: >"$work/ansible.cfg"
export ANSIBLE_CONFIG="$work/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$work/collections"
export PATH="$DOCS_VENV/bin:$PATH"

antsibull-docs lint-collection-docs --plugin-docs "$tree"

site="$work/site"
mkdir -m 700 "$site"
antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
    --project "$COLLECTION_FQCN" --copyright "StoryArt operations" \
    --title "StoryArt session migration" --html-short-title "StoryArt session migration" \
    --dest-dir "$site" "$COLLECTION_FQCN" >/dev/null
python scripts/docsite_inventory.py "$work/ansible.inv"
cat >>"$site/conf.py" <<EOF

# Offline: Ansible's labels from a local inventory, and no other inventory fetched.
intersphinx_mapping = {
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', '$work/ansible.inv'),
}
EOF
"$site/build.sh" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
# antsibull-docs leaves out, with a mere warning, a module or role ansible-doc cannot read.
for page in "$tree"/plugins/modules/*.py "$tree"/roles/*; do
    name=$(basename "$page" .py)
    [ -d "$page" ] && name="${name}_role" || name="${name}_module"
    if [ ! -e "$site/build/html/$name.html" ]; then
        cat "$work/build.log" >&2
        echo "The docsite has no page for $(basename "$page"): see ansible-doc's warning above" >&2
        exit 1
    fi
done

rm -rf "$output"
mkdir -p "$(dirname "$output")"
cp -r "$site/build/html" "$output"
echo "$output/index.html"
