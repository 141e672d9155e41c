#!/usr/bin/env bash
# Builds the Molecule base images from Debian's archive with mmdebstrap and `docker import`:
# nothing is pulled from a registry. An image that already exists is kept.
#   storyart-molecule/redis:7   bookworm: Redis 7.0, python3, python3-redis (hosts that run the module)
#   storyart-molecule/redis:6   bullseye: Redis 6.0, which has no COPY (the DUMP/RESTORE path)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_docker

build() {
    local image=$1 suite=$2 packages=$3
    if docker image inspect "$image" >/dev/null 2>&1; then
        echo "$image exists, kept"
        return
    fi
    echo "Building $image from Debian $suite"
    mmdebstrap --quiet --variant=minbase --include="$packages" "$suite" - |
        docker import \
            --change 'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]' \
            - "$image"
}

build storyart-molecule/redis:7 bookworm redis-server,python3,python3-redis,procps,openssl
build storyart-molecule/redis:6 bullseye redis-server,python3,procps
