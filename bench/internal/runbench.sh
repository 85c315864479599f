#!/bin/sh
# Builds nodeagent and the benchmark command PKG, then runs it with -bin
# (the built agent), -command SHOWN (the command line its report shows) and
# ARGS, forwarding INT/TERM to it and waiting until it has cleaned up.
#
#   bench/internal/runbench.sh PKG SHOWN [ARGS...]
set -eu

cd "$(dirname "$0")/../.."
pkg=$1
shown=$2
shift 2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/nodeagent" ./cmd/nodeagent
go build -o "$tmp/bench" "$pkg"

# The benchmark stops its agents and removes what it made when signalled:
# forward INT/TERM to it and wait until it has cleaned up.
"$tmp/bench" -bin "$tmp/nodeagent" -command "$shown" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid" || status=$?
done
exit "$status"
