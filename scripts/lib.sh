# Sourced by the other scripts, which run with set -euo pipefail: the places and the set-up
# functions they share. Sourcing it installs and changes nothing; each script calls the
# functions for what it needs, e.g.
#   source "$(dirname "$0")/lib.sh"
#   ensure_redis       # redis-server and redis-cli, with apt when missing
#   ensure_dev_venv    # .venv/ in step with requirements-dev.txt, on PATH, from the root

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
# The virtualenvs of scripts/test.sh's other rounds, each built by ensure_venv when used.
COMPAT_VENV="$VENV/redis-py-4.3"
OLDEST_ANSIBLE_VENV="$VENV/ansible-2.16"
SERVERS_VENV="$VENV/servers"
DOCS_VENV="$VENV/docs"

# stage TITLE: a stage's heading in the suite's output, with the time since the suite started
# (SUITE_STARTED, seconds since the epoch, which scripts/test.sh sets), which CI's budget
# bounds.
stage() {
    local taken=$(($(date +%s) - ${SUITE_STARTED:-$(date +%s)}))
    echo "== $* (at $((taken / 60))m$((taken % 60))s)"
}

# run_pytest COMMAND...: pytest exits 5 when it collects nothing, which must fail here.
run_pytest() {
    local status=0
    "$@" || status=$?
    if [ "$status" = 5 ]; then
        echo "pytest collected no tests: that is a failure here, the suite must never be empty" >&2
        exit 1
    fi
    [ "$status" = 0 ] || exit "$status"
}

# apt_install PACKAGE...: as root, or through sudo.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "Please install as root: $*" >&2; exit 1; }
        sudo=sudo
    fi
    echo "Installing with apt: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# ensure_redis: redis-server and redis-cli, which the tests, the demo and the benchmark start.
ensure_redis() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# ensure_venv DIR REQUIREMENTS: (re)build the venv in DIR when a requirements file changed,
# first installing python3-venv when Python cannot make one.
ensure_venv() {
    local dir=$1 requirements=$2 want
    want=$(cat "$ROOT/requirements"*.txt "$ROOT/collection/requirements.txt" | sha256sum | cut -d' ' -f1)
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
        return
    fi
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    echo "Setting up $dir"
    python3 -m venv "$dir"
    # Some machines' package mirrors warn about every index they lack: hide only those lines.
    # pipefail still stops here when pip fails.
    "$dir/bin/pip" install -q -r "$requirements" 2>&1 | { grep -v '^WARNING: Location' || true; }
    echo "$want" >"$dir/.requirements.sha256"
}

# ensure_dev_venv: .venv/ (ansible-core, pytest, ruff, the linters) in step with
# requirements-dev.txt and first on PATH, the repository's ansible.cfg, and the repository
# root as the working directory, where the scripts' relative paths start.
ensure_dev_venv() {
    ensure_venv "$VENV" "$ROOT/requirements-dev.txt"
    # Once: the scripts test.sh starts (test_beside.sh, sanity.sh...) call this again.
    [ "${PATH%%:*}" = "$VENV/bin" ] || export PATH="$VENV/bin:$PATH"
    export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
    cd "$ROOT"
}

# ensure_docker: a Docker engine that answers, for Molecule. Installs docker.io and mmdebstrap
# when missing and starts dockerd when none answers (its log: /var/log/storyart-dockerd.log).
ensure_docker() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    docker info >/dev/null 2>&1 && return
    echo "Starting dockerd"
    if [ "$(id -u)" = 0 ]; then
        nohup dockerd >/var/log/storyart-dockerd.log 2>&1 &
    else
        sudo sh -c 'nohup dockerd >/var/log/storyart-dockerd.log 2>&1 &'
    fi
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    echo "dockerd did not answer within 60 s; see /var/log/storyart-dockerd.log" >&2
    exit 1
}
