#!/bin/sh
# redis-cli against the node a Sentinel names as the primary right now: the StoryArt host's
# Redis, for the scenario's prepare, side effect and tests. The Sentinel (host:port) and the
# service come from the environment; the arguments are redis-cli's.
set -eu
sentinel=${STORYART_SENTINEL:?host:port of a Sentinel}
primary=$(redis-cli -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
    SENTINEL get-master-addr-by-name "${STORYART_SENTINEL_SERVICE:?service name}" | paste -sd ' ')
case $primary in
    *' '*) ;;
    *) echo "Sentinel $sentinel names no primary for $STORYART_SENTINEL_SERVICE: $primary" >&2; exit 1 ;;
esac
exec redis-cli -h "${primary% *}" -p "${primary#* }" "$@"
