#!/bin/sh
# Runs the integrity audit benchmark (bench/audit) and prints its markdown
# section: the identity and content checks of a release of the Moodle 3.5
# tree x3 (52,275 files) against find and sha256sum -c, and the throttled
# background audit.
#
#   bench/audit/run.sh [-scale 3] [-runs 3] [-throttle 5m] [-window 60s] [-out docs/benchmarks.md]
#
# The tree description defaults to ../shared/corpus/moodle-3.5-tree.tsv
# (relative to the repository); -tsv FILE to change it.
set -eu

cd "$(dirname "$0")/../.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench-audit" ./bench/audit
"$tmp/bench-audit" -command "bench/audit/run.sh $*" "$@"
