#!/usr/bin/env bash
# A short scripted tour of onecfg on a scratch --prefix tree, onedb on a scratch database and
# oneprovider on a scratch embedded store (run by `make demo`).
# Uses only what the package ships: OpenNebula's stock configuration files of 14 versions.
set -uo pipefail
demo="$(mktemp -d /tmp/onetools-demo.XXXXXX)"
tree="$demo/tree"
export ONECFG_BACKUP_DIR="$demo/backups" ONECFG_ETC_DIR="$demo/etc" ONECFG_ONE_VERSION=6.8.0
mkdir -p "$ONECFG_ETC_DIR"

say() { printf '\n\033[1m## %s\033[0m\n' "$*"; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; echo "(exit code $?)"; }

say "A stock OpenNebula 6.8.0 configuration tree in $tree"
python - "$tree" <<'PY'
import sys
from onetools.config.stock import store
print(len(store().materialize("6.8.0", sys.argv[1])), "files written")
PY

step onecfg validate --prefix "$tree"
step onecfg init -v

say "Customize it with the one-line change format"
cat > "$demo/site.patch" <<'PATCH'
# switch oned to MySQL and listen on loopback
/etc/one/oned.conf set DB/BACKEND "\"mysql\""
/etc/one/oned.conf ins DB/SERVER "\"localhost\""
/etc/one/oned.conf ins DB/USER "\"oneadmin\""
/etc/one/oned.conf ins DB/PASSWD "\"oneadmin\""
/etc/one/oned.conf ins DB/NAME "\"opennebula\""
/etc/one/oned.conf set PORT 2633
/etc/one/oned.conf set LISTEN_ADDRESS "\"127.0.0.1\""
/etc/one/oned.conf set VM_MAD/"kvm"/ARGUMENTS "\"-t 15 -r 0 kvm -p -c\""
/etc/one/oneflow-server.conf set :port 2475
/var/lib/one/remotes/etc/vmm/kvm/kvmrc set SHUTDOWN_TIMEOUT 300
PATCH
cat "$demo/site.patch"
step onecfg patch --prefix "$tree" --verbose "$demo/site.patch"

say "Re-applying: as the original, changes already in place are 'not applied' (exit 1) ..."
step onecfg patch --prefix "$tree" "$demo/site.patch"
say "... unless --converge, for bootstraps that apply the same patch at every start"
step onecfg patch --prefix "$tree" --converge "$demo/site.patch"

say "A broken patch line changes nothing and says why"
printf '/etc/one/oned.conf set PORT {oops\n' > "$demo/bad.patch"
step onecfg patch --prefix "$tree" "$demo/bad.patch"

say "The customizations, against the stock files of 6.8.0"
step onecfg diff --prefix "$tree" --format line

say "OpenNebula is now 7.0.0: what would an upgrade do?"
export ONECFG_ONE_VERSION=7.0.0
step onecfg status
step onecfg upgrade --prefix "$tree" --noop
step onecfg upgrade --prefix "$tree"
step onecfg status
echo; grep -n -E '^PORT|^LISTEN_ADDRESS|BACKEND|"-t 15 -r 0 kvm' "$tree/etc/one/oned.conf"
step onecfg validate --prefix "$tree"

say "onedb: an OpenNebula 6.0.0 database (SQLite) with a few objects"
export ONE_LOCATION="$demo/one" ONE_XMLRPC=http://127.0.0.1:9/RPC2   # no oned around
db="$demo/one.db"
python - "$db" <<'PY'
import sys
from onetools.db.backends.base import ConnectionSettings
from onetools.db.backends.sqlite import SQLiteBackend
from onetools.db.schema import bootstrap

backend = SQLiteBackend(ConnectionSettings("sqlite", sqlite_file=sys.argv[1]), create=True)
with backend.transaction():
    bootstrap(backend, "6.0.0")
    for oid in range(3):
        body = (f"<VM><ID>{oid}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
                f"<GNAME>oneadmin</GNAME><NAME>demo-{oid}</NAME><STATE>6</STATE>"
                f"<LCM_STATE>0</LCM_STATE><STIME>1700000000</STIME><ETIME>1700000100</ETIME>"
                f"<TEMPLATE><CPU>1</CPU><MEMORY>512</MEMORY></TEMPLATE><USER_TEMPLATE/>"
                f"<HISTORY_RECORDS/></VM>")
        backend.execute(
            "INSERT INTO vm_pool (oid, name, body, uid, gid, state, lcm_state, owner_u, "
            "group_u, other_u, short_body, search_token) VALUES (?, ?, ?, 0, 0, 6, 0, 1, 0, 0, "
            "'<VM/>', ?)", (oid, f"demo-{oid}", body, f"demo-{oid}"))
backend.close()
print("database written:", sys.argv[1])
PY
step onedb version -s "$db"
step onedb version -v --sqlite "$db"
step onedb upgrade -s "$db" --backup "$demo/one-6.0.0.sql"
step onedb version -s "$db"
step onedb history -s "$db"
step onedb fsck --dry -s "$db"
step onedb purge-done --sqlite "$db"
step onedb show-body user --id 0 -s "$db"

say "oneprovider: providers (cloud credentials + location) in the embedded store"
# No front-end: unset the onedb section's endpoint, so the objects live in $ONETOOLS_HOME/one.db.
unset ONE_XMLRPC ONE_AUTH
export ONETOOLS_HOME="$demo/onetools"
cat > "$demo/aws.yml" <<'YAML'
name: aws-frankfurt
description: Edge cluster in AWS Frankfurt
provider: aws
connection:
  access_key: AKIAIOSFODNN7EXAMPLE
  secret_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
  region: eu-central-1
YAML
cat > "$demo/onprem.yml" <<'YAML'
name: rack-12
description: Bare-metal hosts in rack 12
provider: onprem
YAML
step oneprovider create "$demo/aws.yml"
step oneprovider create "$demo/onprem.yml"
step oneprovider list
say "Secrets are encrypted at rest and masked unless --decrypt"
step oneprovider show aws-frankfurt
step oneprovider show --decrypt aws-frankfurt
say "Machine-readable listing for scripts"
# `step` for a pipeline: the command line shown as typed, its exit code that of the pipeline.
pipeline() { printf '\n\033[1m$ %s\033[0m\n' "$1"; bash -o pipefail -c "$1"; echo "(exit code $?)"; }
read -r -d '' names_and_drivers <<'SH'
oneprovider list --json | python -c 'import json, sys; [print(d["ID"], d["NAME"], d["TEMPLATE"]["PROVISION_BODY"]["provider"]) for d in json.load(sys.stdin)["DOCUMENT_POOL"].get("DOCUMENT", [])]'
SH
pipeline "$names_and_drivers"
say "A provider without a required connection key is refused, and nothing is created"
printf 'name: aws-broken\nprovider: aws\nconnection:\n  access_key: AKIA\n  region: eu-central-1\n' \
    > "$demo/aws-broken.yml"
step oneprovider create "$demo/aws-broken.yml"
step oneprovider list
step oneprovider delete rack-12
step oneprovider list
say "oneprovision: an on-premise edge cluster from a provision template (no cloud needed)"
printf 'name: rack-7\nprovider: onprem\n' > "$demo/rack-7.yml"
step oneprovider create "$demo/rack-7.yml"
cat > "$demo/edge.yml" <<'YAML'
name: 'edge-rack-7'
defaults:
  provision: {provider_name: 'rack-7'}
inputs:
  - {name: 'nodes', type: 'array', default: 'node1;node2', description: 'host names'}
cluster: {name: "${provision}", datastores: [1, 2]}
hosts:
  - im_mad: kvm
    vm_mad: kvm
    provision: {hostname: "${input.nodes}"}
datastores:
  - {name: "${provision}-images", ds_mad: fs, tm_mad: ssh}
networks:
  - name: "${provision}-public"
    vn_mad: bridge
    bridge: br0
    ar: [{type: IP4, ip: 10.7.0.1, size: 16}]
templates:
  - {name: "${provision}-vm", cpu: 1, memory: 512}
YAML
cat "$demo/edge.yml"
step oneprovision validate "$demo/edge.yml"
# --skip-config: the hosts are names, not machines this demo can reach over SSH
step oneprovision create "$demo/edge.yml" --batch --skip-config --user-inputs 'nodes=node1;node2;node3'
step oneprovision list
step oneprovision show edge-rack-7
step oneprovision host list
say "A broken template is refused with the file and the line"
printf 'name: broken\nhosts:\n  - im_mad: kvm\n    provision: {hostname: [unclosed\n' > "$demo/broken.yml"
step oneprovision validate "$demo/broken.yml"
step oneprovision delete edge-rack-7 --batch
step oneprovision list

say "The embedded store is an OpenNebula database"
step onedb version -s "$ONETOOLS_HOME/one.db"
echo; echo "Demo files left in $demo"
