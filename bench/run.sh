#!/bin/sh
# Runs the mirror benchmark (bench/mirror) and prints its markdown section.
#
#   bench/run.sh [-scale 1,3] [-corpus random,real] [-runs 5] [-changes 10] [-out docs/benchmarks.md]
#
# Installs rsync (the anchor) and zstd with apt-get if they are missing,
# builds nodeagent, then runs `go run ./bench/mirror` with the arguments
# given; -out FILE appends the section to FILE as well. The realistic corpus
# downloads Debian's php-* packages once into ~/.cache/nodeagent-corpus.
set -eu

cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
for tool in rsync zstd; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$tool not found: installing it with apt-get" >&2
		$sudo apt-get update
		$sudo apt-get install -y "$tool"
	fi
done
# The realistic corpus lists php-* packages with apt-cache.
if [ -z "$(apt-cache pkgnames php- 2>/dev/null | head -1)" ]; then
	$sudo apt-get update
fi

exec bench/internal/runbench.sh ./bench/mirror "bench/run.sh $*" "$@"
