#!/bin/sh
# Runs the peer distribution benchmark (bench/peers) and prints its
# markdown section: one controller and 10 new web nodes joining at once,
# as agent processes in network namespaces, every link shaped with tc.
#
#   bench/peers/run.sh [-web 10] [-rate 50mbit] [-runs 3] [-out docs/benchmarks.md]
#
# Needs root (network namespaces) and iproute2 (ip, tc); the tree is the
# Moodle 3.5 shape of ../shared/corpus (see -tsv).
set -eu

cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/peers needs root for its network namespaces: sudo $0 $*" >&2
	exit 1
fi
exec bench/internal/runbench.sh ./bench/peers "bench/peers/run.sh $*" "$@"
