#!/usr/bin/env bash
# Inspects, installs, reinstalls, removes and purges a nodeagent .deb on this
# machine, checking what the package and its maintainer scripts promise.
# Run as root on Debian 12 (CI does, from .ci/run):
#   packaging/test-deb.sh dist/nodeagent_<version>_<arch>.deb
# It refuses to run where nodeagent is installed or /etc/nodeagent or
# /var/lib/nodeagent exist, and leaves neither behind. Works without
# systemd as PID 1 (containers): the scripts then skip starting the unit.
set -euo pipefail

deb=${1:?usage: test-deb.sh dist/nodeagent_VERSION_ARCH.deb}
etc=/etc/nodeagent
data=/var/lib/nodeagent
unit=/usr/lib/systemd/system/nodeagent.service

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' nodeagent 2>/dev/null)" = installed ]; }
mode() { stat -c %a "$1"; }

[ "$(id -u)" = 0 ] || fail "run as root"
[ -f "$deb" ] || fail "$deb: no such file"
if dpkg-query -W -f='${db:Status-Status}' nodeagent 2>/dev/null | grep -qv '^not-installed$'; then
	fail "nodeagent is installed here (or its config is); this test would replace it"
fi
[ ! -e "$etc" ] && [ ! -e "$data" ] || fail "$etc or $data exists; this test would change it"

# postinst creates /var/www only where it is missing.
www_mode=$(stat -c %a /var/www 2>/dev/null || echo absent)

cleanup() {
	dpkg -P nodeagent >/dev/null 2>&1 || true
	rm -rf "$etc" "$data"
	if [ "$www_mode" = absent ]; then rmdir /var/www 2>/dev/null || true; fi
}
trap cleanup EXIT

step "contents of $deb"
name=$(basename "$deb")
version=$(dpkg-deb -f "$deb" Version)
arch=$(dpkg-deb -f "$deb" Architecture)
[ "$(dpkg-deb -f "$deb" Package)" = nodeagent ] || fail "Package is not nodeagent"
[ "$name" = "nodeagent_${version}_${arch}.deb" ] || fail "file name $name, want nodeagent_${version}_${arch}.deb"
[ "$arch" = "$(dpkg --print-architecture)" ] || fail "built for $arch, this machine is $(dpkg --print-architecture)"
dpkg-deb -c "$deb" | awk '{print $1, $2, $NF}' >/tmp/test-deb.contents.$$
for want in "-rwxr-xr-x root/root ./usr/bin/nodeagent" \
	"-rw-r--r-- root/root .$unit" \
	"-rw-r--r-- root/root ./etc/nodeagent/nodeagent.yaml" \
	"-rw-r--r-- root/root ./usr/share/doc/nodeagent/migrate-from-cron-sync.md" \
	"-rw-r--r-- root/root ./usr/share/doc/nodeagent/examples/cloud-init/web.yaml" \
	"-rw-r--r-- root/root ./usr/share/doc/nodeagent/examples/nginx/moodle-nodeagent.conf"; do
	grep -qxF -- "$want" /tmp/test-deb.contents.$$ || fail "contents lack: $want"
done
rm -f /tmp/test-deb.contents.$$
ctrl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctrl"
[ "$(cat "$ctrl/conffiles")" = "$etc/nodeagent.yaml" ] || fail "conffiles: $(cat "$ctrl/conffiles")"
for s in postinst prerm postrm; do
	[ -x "$ctrl/$s" ] || fail "no executable $s"
	sh -n "$ctrl/$s" || fail "$s: syntax"
done
rm -rf "$ctrl"
echo "ok: $name, conffiles, maintainer scripts"

step "version mapping orders as dpkg does"
v() { packaging/version.sh "$1" 7; }
for pair in "v1.2.3-rc1 v1.2.3" "v1.2.3 v1.2.3-1-gabc1234" "v1.2.3-1-gabc1234 v1.2.3-2-gdef5678" \
	"abc1234 v0.0.1" "v1.2.3-1-gabc1234 v1.2.4-rc1"; do
	read -r lo hi <<<"$pair"
	dpkg --compare-versions "$(v "$lo")" lt "$(v "$hi")" || fail "$(v "$lo") should sort before $(v "$hi")"
done
echo "ok"

step "install over files cloud-init wrote first (--force-confold)"
install -d -m 755 "$etc"
printf 'role: web\ngossip: {join: [10.0.0.4:7946]}\nmirror: {target: /var/www/html/moodle}\n' >"$etc/nodeagent.yaml"
echo cluster-token >"$etc/api.token"
chmod 600 "$etc/api.token"
dpkg -i --force-confold "$deb" >/dev/null 2>&1
installed || fail "not installed"
grep -q '^role: web' "$etc/nodeagent.yaml" || fail "--force-confold install replaced the written config"
[ "$(cat "$etc/api.token")" = cluster-token ] || fail "postinst replaced the cluster's token"
dpkg -P nodeagent >/dev/null
rm -rf "$etc" "$data"
echo "ok"

step "fresh install"
out=$(dpkg -i "$deb" 2>&1) || fail "dpkg -i: $out"
installed || fail "not installed"
echo "$out" | grep -q "generated $etc/api.token" || fail "postinst did not say it generated the token"
[ "$(mode "$etc/api.token")" = 600 ] || fail "api.token mode $(mode "$etc/api.token")"
[ "$(stat -c %U "$etc/api.token")" = root ] || fail "api.token owner"
[ "$(wc -c <"$etc/api.token")" -ge 40 ] || fail "api.token too short"
[ -d "$data" ] && [ "$(mode "$data")" = 711 ] || fail "data_dir: $(ls -ld "$data" 2>&1)"
if [ "$www_mode" = absent ]; then
	[ -d /var/www ] && [ "$(mode /var/www)" = 755 ] || fail "/var/www: $(ls -ld /var/www 2>&1)"
else
	[ "$(mode /var/www)" = "$www_mode" ] || fail "postinst changed /var/www from $www_mode to $(mode /var/www)"
fi
cmp -s "$etc/nodeagent.yaml" <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/nodeagent/nodeagent.yaml) ||
	fail "installed config differs from the packaged one"
echo "ok: token 0600, data_dir 0711, /var/www, config"

step "nodeagent version shows the stamped version"
got=$(/usr/bin/nodeagent version)
echo "$got"
case "$got" in "nodeagent $version (commit "[0-9a-f]*) ;; *) fail "version: $got (want $version)" ;; esac

step "systemd-analyze verify $unit"
# Anything printed (unknown keys, missing binaries) is a failure.
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "verify: $verify"
[ -z "$verify" ] || fail "verify warns: $verify"
grep -qx 'Type=notify' "$unit" && grep -qx 'KillSignal=SIGINT' "$unit" || fail "unit lost Type=notify or KillSignal=SIGINT"
# The sockets outlive restarts and upgrades (systemd_test.go boots it).
grep -qx 'FileDescriptorStoreMax=8' "$unit" || fail "unit lost FileDescriptorStoreMax (sockets kept across restarts)"
# shellcheck disable=SC2016 # $MAINPID is systemd's
grep -qxF 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "unit lost ExecReload (systemctl reload)"
# Exposure as systemd rates it (0 best, 10 worst); 2.9 when this was written.
exposure=$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for nodeagent.service: \([0-9.]*\).*/\1/p')
systemd-analyze security --offline=true --threshold=35 "$unit" >/dev/null 2>&1 || fail "exposure $exposure above 3.5"
echo "ok: exposure $exposure"

step "the installed agent names what the shipped config lacks"
# As shipped the config sets nothing; the role is the admin's decision.
if out=$(/usr/bin/nodeagent run 2>&1); then fail "ran without a role"; fi
echo "$out" | grep -q "nodeagent.yaml: role: " || fail "unconfigured start: $out"
echo "ok: $out"

step "reinstall keeps a changed config, the token and the admin's key"
echo "# changed by the admin" >>"$etc/nodeagent.yaml"
sum=$(sha256sum "$etc/nodeagent.yaml" "$etc/api.token")
/usr/bin/nodeagent keygen >"$etc/gossip.key"
chmod 600 "$etc/gossip.key"
key=$(cat "$etc/gossip.key")
dpkg -i "$deb" >/dev/null
[ "$(sha256sum "$etc/nodeagent.yaml" "$etc/api.token")" = "$sum" ] || fail "reinstall changed the config or token"
[ "$(cat "$etc/gossip.key")" = "$key" ] || fail "reinstall changed gossip.key"
echo "ok"

step "remove: binary and unit gone; config, keys and data kept"
dpkg -r nodeagent >/dev/null
[ ! -e /usr/bin/nodeagent ] && [ ! -e "$unit" ] || fail "binary or unit left after remove"
[ -f "$etc/nodeagent.yaml" ] && [ -f "$etc/api.token" ] && [ -f "$etc/gossip.key" ] && [ -d "$data" ] ||
	fail "remove deleted config, keys or data"
echo "ok"

step "purge: config, token and data gone; the admin's key and served releases stay"
mkdir -p "$data/mirror/releases/abc" "$data/mirror/manifests"
echo '{}' >"$data/drain.json"
dpkg -P nodeagent 2>&1 | grep -v "directory '$etc' not empty" || true
installed && fail "still installed after purge"
[ ! -e "$etc/nodeagent.yaml" ] && [ ! -e "$etc/api.token" ] || fail "purge left config or token"
[ -f "$etc/gossip.key" ] || fail "purge deleted the admin's gossip.key"
[ -d "$data/mirror/releases/abc" ] || fail "purge deleted releases a web server may serve"
[ ! -e "$data/drain.json" ] && [ ! -e "$data/mirror/manifests" ] || fail "purge left agent state"
rm -rf "$etc" "$data"
# Without leftovers in the releases, purge removes data_dir whole.
dpkg -i "$deb" >/dev/null 2>&1 && dpkg -P nodeagent >/dev/null
[ ! -e "$data" ] && [ ! -e "$etc" ] || fail "purge of a node without releases left $data or $etc"
for l in /etc/systemd/system/multi-user.target.wants/nodeagent.service /etc/systemd/system/nodeagent.service; do
	[ ! -L "$l" ] || fail "purge left $l"
done
echo "ok"

step "cloud-init custom-data"
if command -v cloud-init >/dev/null 2>&1; then
	for f in packaging/cloud-init/*.yaml; do
		cloud-init schema --config-file "$f" || fail "cloud-init schema: $f"
	done
else
	echo "cloud-init not installed: YAML checked by go test ./packaging/ only"
fi

echo "test-deb: all checks passed for $name"
