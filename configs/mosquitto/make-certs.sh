#!/usr/bin/env bash
# Creates the fleet's TLS material with openssl (EC P-256 keys, SHA-256):
#   make-certs.sh [-o DIR] ca                      CA key + certificate (keep ca.key offline)
#   make-certs.sh [-o DIR] server NAME [SAN...]    broker certificate; SAN entries are DNS names
#                                                  or IP addresses (NAME is always included)
#   make-certs.sh [-o DIR] device ID               client certificate with CN=ID (a device id)
#   make-certs.sh [-o DIR] gateway                 client certificate with CN=gateway
#   make-certs.sh [-o DIR] operator [NAME]         client certificate with CN=operator[-NAME]
#   make-certs.sh [-o DIR] homeassistant           client certificate with CN=homeassistant
# DIR defaults to ./certs. The CN becomes the MQTT user name and client id on the broker
# (use_identity_as_username, use_username_as_clientid), so it is checked against the id rule
# [a-z0-9][a-z0-9-]{0,62}; `gateway`, `operator*` and `homeassistant` are reserved for those roles.
# Environment: DAYS (client/server validity, default 825), CA_DAYS (default 3650).
set -euo pipefail

out=./certs
if [[ "${1:-}" == "-o" ]]; then out=$2; shift 2; fi
cmd=${1:-}
shift || true
days=${DAYS:-825}
ca_days=${CA_DAYS:-3650}
id_re='^[a-z0-9][a-z0-9-]{0,62}$'

die() { echo "make-certs.sh: $*" >&2; exit 1; }
need_ca() { [[ -f "$out/ca.key" && -f "$out/ca.crt" ]] || die "no CA in $out (run: make-certs.sh -o $out ca)"; }
check_id() { [[ "$1" =~ $id_re ]] || die "invalid id '$1': must match [a-z0-9][a-z0-9-]{0,62}"; }

newkey() {  # newkey FILE: EC P-256 private key, readable by its owner only
  (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$1")
}

sign() {  # sign NAME CN EXTENSIONS: key + CSR + certificate signed by the CA
  local name=$1 cn=$2 ext=$3
  newkey "$out/$name.key"
  openssl req -new -key "$out/$name.key" -subj "/CN=$cn" -out "$out/$name.csr"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile <(printf '%b' "$ext") -out "$out/$name.crt" 2>/dev/null
  rm -f "$out/$name.csr"
  echo "wrote $out/$name.crt and $out/$name.key (CN=$cn)"
}

client() {  # client NAME CN
  sign "$1" "$2" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
}

mkdir -p "$out"
case "$cmd" in
  ca)
    [[ -f "$out/ca.key" ]] && die "$out/ca.key exists; refusing to overwrite the CA"
    newkey "$out/ca.key"
    openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$ca_days" -subj "/CN=edge-fleet-ca" \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/ca.crt"
    echo "wrote $out/ca.crt and $out/ca.key (keep ca.key off the gateway)"
    ;;
  server)
    need_ca
    name=${1:?usage: make-certs.sh server NAME [SAN...]}
    shift
    sans="DNS:$name"
    for s in "$@"; do
      if [[ "$s" =~ ^[0-9.]+$ || "$s" == *:* ]]; then sans+=",IP:$s"; else sans+=",DNS:$s"; fi
    done
    sign server "$name" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=$sans\n"
    ;;
  device)
    need_ca
    id=${1:?usage: make-certs.sh device ID}
    check_id "$id"
    [[ "$id" == gateway || "$id" == operator* || "$id" == homeassistant ]] &&
      die "'$id' is reserved for the gateway/operators/Home Assistant"
    client "device-$id" "$id"
    ;;
  gateway)
    need_ca
    client gateway gateway
    ;;
  operator)
    need_ca
    cn=operator${1:+-$1}
    check_id "$cn"
    client "$cn" "$cn"
    if [[ "$cn" != operator ]]; then
      cat <<ACL
add to the broker's ACL file:
user $cn
topic deny edge/$cn/#
topic read edge/+/status
topic read edge/+/health
topic read edge/+/cameras/#
topic read edge/+/ota/state
topic read edge/+/config/state
topic read homeassistant/#
ACL
    fi
    ;;
  homeassistant)
    need_ca
    client homeassistant homeassistant
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
