#!/bin/sh
# Runs the mirror benchmark (bench/mirror) and prints its markdown section.
#
#   bench/run.sh [-scale 1,3] [-runs 5] [-changes 10] [-out docs/benchmarks.md]
#
# Installs rsync (the anchor) with apt-get if it is missing, builds nodeagent,
# then runs `go run ./bench/mirror` with the arguments given; -out FILE
# appends the section to FILE as well.
set -eu

cd "$(dirname "$0")/.."

if ! command -v rsync >/dev/null 2>&1; then
	echo "rsync not found: installing it with apt-get" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update
	$sudo apt-get install -y rsync
fi

exec bench/internal/runbench.sh ./bench/mirror "bench/run.sh $*" "$@"
