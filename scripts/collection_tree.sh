# Sourced by the collection scripts. stage_collection DEST lays out the collection
# storyart.session_migration in DEST (an empty directory) from this repository's tree:
#   library/*.py                 -> plugins/modules/  (imports, doc fragment, seealso by FQCN)
#   module_utils/, doc_fragments/ -> plugins/module_utils/, plugins/doc_fragments/
#   roles/, playbooks/            -> roles/, playbooks/  (the role's module call by FQCN)
#   collection/*, LICENSE         -> galaxy.yml, meta/, README, changelog, EE dependencies
#   docs/docsite/                 -> docs/docsite/  (the guides antsibull-docs renders)
# The repository keeps its own layout, run through ansible.cfg; the collection is a second
# way in, for operators who install it into their own repository.

COLLECTION_FQCN=storyart.session_migration
COLLECTION_UTILS=ansible_collections.storyart.session_migration.plugins.module_utils

# collection_version: the version in collection/galaxy.yml, the one place it is kept.
collection_version() {
    python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' \
        "$ROOT/collection/galaxy.yml"
}

stage_collection() {
    local dest=$1
    mkdir -p "$dest/plugins/modules" "$dest/plugins/module_utils" "$dest/plugins/doc_fragments"
    # Only what git tracks or would track, so nothing ignored (caches, reports) slips in.
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
        collection roles playbooks module_utils doc_fragments docs LICENSE |
        while IFS= read -r -d '' path; do
            [ -e "$ROOT/$path" ] || continue # deleted, not yet committed
            local target=$path
            case $path in
                collection/*) target=${path#collection/} ;;
                module_utils/* | doc_fragments/*) target=plugins/$path ;;
            esac
            mkdir -p "$dest/$(dirname "$target")"
            cp "$ROOT/$path" "$dest/$target"
        done
    local module
    for module in "$ROOT"/library/*.py; do
        sed -e "s/ansible\.module_utils\.redis_db_migration/$COLLECTION_UTILS.redis_db_migration/" \
            -e "s/^  - redis_connection$/  - $COLLECTION_FQCN.redis_connection/" \
            -e "s/^  - module: \(redis_db_migrate\w*\)$/  - module: $COLLECTION_FQCN.\1/" \
            "$module" >"$dest/plugins/modules/$(basename "$module")"
    done
    # Inside the collection the role names its module by FQCN, as Galaxy's import lint asks;
    # the repository's own layout finds it through ansible.cfg's library path.
    find "$dest/roles" -name '*.yml' -exec \
        sed -i -E "s/^( +)(redis_db_migrate(_stop)?):$/\1$COLLECTION_FQCN.\2:/" {} +
    # The fragment directory ships even when empty: antsibull-changelog expects it.
    mkdir -p "$dest/changelogs/fragments"
}
