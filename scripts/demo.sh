#!/usr/bin/env bash
# A short scripted tour of onetools on a scratch --prefix tree (run by `make demo`).
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
stock="${ONETOOLS_SHARED_DATA:-$here/../shared/data}/opennebula-etc/6.0.0"
demo="$(mktemp -d /tmp/onetools-demo.XXXXXX)"
export ONECFG_BACKUP_DIR="$demo/backups"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; echo "(exit code $?)"; }

if [ -d "$stock" ]; then
  cp -a "$stock" "$demo/tree"
  chmod -R u+w "$demo/tree"
else
  # Without the stock trees beside the repo, build a small tree of our own.
  mkdir -p "$demo/tree/etc/one" "$demo/tree/var/lib/one/remotes/etc/vmm/kvm"
  printf 'PORT = 2633\nLISTEN_ADDRESS = "0.0.0.0"\nDB = [ BACKEND = "sqlite", TIMEOUT = 2500 ]\n' \
    > "$demo/tree/etc/one/oned.conf"
  printf 'export LIBVIRT_URI=qemu:///system\n' > "$demo/tree/var/lib/one/remotes/etc/vmm/kvm/kvmrc"
fi
tree="$demo/tree"
echo "Scratch tree: $tree"

step onecfg validate --prefix "$tree" --verbose

cat > "$demo/mysql.patch" <<'PATCH'
# switch oned to MySQL and listen on loopback
/etc/one/oned.conf set DB/BACKEND "\"mysql\""
/etc/one/oned.conf ins DB/SERVER "\"localhost\""
/etc/one/oned.conf ins DB/USER "\"oneadmin\""
/etc/one/oned.conf ins DB/PASSWD "\"oneadmin\""
/etc/one/oned.conf ins DB/NAME "\"opennebula\""
/etc/one/oned.conf set PORT 2633
/etc/one/oned.conf set LISTEN_ADDRESS "\"127.0.0.1\""
PATCH
echo; echo "Patch file:"; cat "$demo/mysql.patch"

step onecfg patch --prefix "$tree" --noop --verbose "$demo/mysql.patch"
step onecfg patch --prefix "$tree" --verbose "$demo/mysql.patch"
echo; echo "oned.conf now differs from stock like this:"
diff -u "$stock/etc/one/oned.conf" "$tree/etc/one/oned.conf" 2>/dev/null | head -40

echo; echo "A broken patch line changes nothing and says why:"
printf '/etc/one/oned.conf set PORT {oops\n' > "$demo/bad.patch"
step onecfg patch --prefix "$tree" "$demo/bad.patch"

echo; echo "Re-applying: the values are already there, nothing to do:"
step onecfg patch --prefix "$tree" --json "$demo/mysql.patch"

step onecfg validate --prefix "$tree"
echo; echo "Demo files left in $demo"
