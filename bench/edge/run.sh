#!/bin/sh
# Runs the edge benchmark (bench/edge): nodeagent's edge against Caddy's
# reverse_proxy and nginx's TLS proxy, same nginx backend, wrk, this machine.
#
#   bench/edge/run.sh [-rounds 3] [-d 10s] [-out docs/benchmarks.md] [-cpuprofile edge.prof]
#
# Installs nginx-light, caddy and wrk with apt-get when missing; a service
# the package starts on its own (nginx, caddy on :80) is stopped and
# disabled again, because the benchmark runs its own instances.
set -eu

cd "$(dirname "$0")/../.."

missing=""
for tool in nginx:nginx-light caddy:caddy wrk:wrk; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}"
done
if [ -n "$missing" ]; then
	echo "installing$missing with apt-get" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update
	$sudo apt-get install -y $missing
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now nginx caddy 2>/dev/null || true
	fi
fi

# The benchmark re-runs its own binary as the edge server and stops every
# server it started when interrupted.
exec go run ./bench/edge -command "bench/edge/run.sh $*" "$@"
