#!/bin/sh
# Runs the gossip benchmark (bench/gossip) and prints its markdown section.
#
#   bench/gossip/run.sh [-nodes 50,100,200] [-procs 4] [-ops 20] [-restarts 5] [-out docs/benchmarks.md]
#
# Builds the benchmark (it re-executes itself as its worker processes) and
# runs it with the arguments given; -out FILE appends the section to FILE as
# well. About an hour for the defaults on 2 cores.
set -eu

cd "$(dirname "$0")/../.."

out=""
args=""
while [ $# -gt 0 ]; do
	case "$1" in
	-out) out="$2"; shift 2 ;;
	*) args="$args $1"; shift ;;
	esac
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench-gossip" ./bench/gossip

# The benchmark stops its workers and removes its files when signalled:
# forward INT/TERM to it and wait until it has cleaned up.
# shellcheck disable=SC2086 # $args are the benchmark's flags, split on purpose
"$tmp/bench-gossip" -command "bench/gossip/run.sh$args" $args >"$tmp/section.md" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid" || status=$?
done
cat "$tmp/section.md"
if [ "$status" -eq 0 ] && [ -n "$out" ]; then
	printf '\n' >>"$out"
	cat "$tmp/section.md" >>"$out"
fi
exit "$status"
