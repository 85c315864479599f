#!/bin/sh
# Runs the fault-injection benchmark (bench/faults) and prints its report.
#
#   bench/faults/run.sh rounds [-rounds 20] [-seed S]   randomized fault rounds
#   bench/faults/run.sh rounds -replay S                replay one round
#   bench/faults/run.sh restarts [-n 50]                 restart recovery times
#
# Needs root (network namespaces, tmpfs). Installs iptables with apt-get if
# it is missing, builds nodeagent and the benchmark, then runs it with the
# arguments given.
set -eu

cd "$(dirname "$0")/../.."

if ! command -v iptables >/dev/null 2>&1; then
	echo "iptables not found: installing it with apt-get" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null
fi

if [ $# -eq 0 ]; then
	echo "usage: bench/faults/run.sh rounds [-rounds 20] [-seed S | -replay S] | restarts [-n 50]" >&2
	exit 2
fi
command="bench/faults/run.sh $*"
sub=$1
shift

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/nodeagent" ./cmd/nodeagent
go build -o "$tmp/bench-faults" ./bench/faults

# The benchmark stops its agents and removes its namespaces when
# signalled: forward INT/TERM to it and wait until it has cleaned up.
"$tmp/bench-faults" "$sub" -bin "$tmp/nodeagent" -command "$command" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid" || status=$?
done
exit "$status"
