# Sourced by the other scripts: installs what a fresh Debian 12 machine lacks (redis-server,
# python3-venv) and keeps .venv/ in step with the requirements files. Safe to run again.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

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

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# ensure_venv DIR REQUIREMENTS: (re)build the venv in DIR when the requirements file changed.
ensure_venv() {
    local dir=$1 requirements=$2 want
    want=$(cat "$ROOT/requirements"*.txt "$ROOT/collection/requirements.txt" | sha256sum | cut -d' ' -f1)
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
        return
    fi
    echo "Setting up $dir"
    python3 -m venv "$dir"
    # Some machines' package mirrors warn about every index they lack: hide only those lines.
    # pipefail still stops here when pip fails.
    "$dir/bin/pip" install -q -r "$requirements" 2>&1 | { grep -v '^WARNING: Location' || true; }
    echo "$want" >"$dir/.requirements.sha256"
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

ensure_venv "$VENV" "$ROOT/requirements-dev.txt"
COMPAT_VENV="$VENV/redis-py-4.3"
OLDEST_ANSIBLE_VENV="$VENV/ansible-2.16"
SERVERS_VENV="$VENV/servers"

export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
cd "$ROOT"
