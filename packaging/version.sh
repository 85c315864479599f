#!/bin/sh
# Prints the Debian version of the tree: `git describe --tags --always
# --dirty` mapped to a version dpkg accepts and orders correctly:
#   v1.2.3                 -> 1.2.3
#   v1.2.3-rc1             -> 1.2.3~rc1          (before 1.2.3)
#   v1.2.3-4-gabc1234      -> 1.2.3+4.gabc1234   (after 1.2.3)
#   abc1234 (no tag)       -> 0.0.0+N.gabc1234   (N: commits, so it grows)
#   ...-dirty              -> ...+dirty / ....dirty
# With an argument, maps that instead of asking git (for the tests).
set -eu
d=${1:-$(git describe --tags --always --dirty)}
dirty=
case "$d" in *-dirty) dirty=dirty; d=${d%-dirty} ;; esac

if printf '%s' "$d" | grep -Eq -- '-[0-9]+-g[0-9a-f]+$'; then
	ahead=$(printf '%s' "$d" | sed -E 's/^.*-([0-9]+)-(g[0-9a-f]+)$/\1.\2/')
	tag=$(printf '%s' "$d" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
elif printf '%s' "$d" | grep -Eq '^[0-9a-f]{7,40}$'; then
	count=${2:-$(git rev-list --count HEAD 2>/dev/null || echo 0)}
	ahead="$count.g$d"
	tag=0.0.0
else
	ahead=
	tag=$d
fi
v=$(printf '%s' "$tag" | sed -E 's/^v//; s/-/~/')
[ -n "$ahead" ] && v="$v+$ahead"
if [ -n "$dirty" ]; then
	case "$v" in *+*) v="$v.dirty" ;; *) v="$v+dirty" ;; esac
fi
case "$v" in
[0-9]*) ;;
*) echo "version.sh: cannot map $d to a Debian version" >&2; exit 1 ;;
esac
printf '%s\n' "$v"
