#!/usr/bin/env bash
# Makes a throwaway self-signed certificate and key for trying the harness over TLS:
# ECDSA P-256, for localhost and 127.0.0.1, valid for 30 days. Never use it for anything
# real: the key sits unencrypted next to the certificate.
#
#   tools/make_test_cert.sh [DIR]            # DIR defaults to ./islet-test-cert/
#
# Prints two lines on stdout, the absolute paths of the certificate and of the key
# (DIR/cert.pem, DIR/key.pem; existing ones are replaced), and on stderr how to use them:
#
#   tools/run.sh --transport=tls --certfile=DIR/cert.pem --keyfile=DIR/key.pem
#   curl --cacert DIR/cert.pem https://localhost:4000/     # with --handler=http_hello
#   openssl s_client -connect 127.0.0.1:4000 -CAfile DIR/cert.pem -verify_return_error
#
# Needs the openssl command-line tool (1.1.1 or newer).
set -euo pipefail

usage() {
  echo "usage: $0 [DIR]  (default: ./islet-test-cert/)" >&2
  exit 2
}

case "${1:-}" in
  -h | --help) usage ;;
  -*) echo "$0: unknown option: $1" >&2; usage ;;
esac
[[ $# -le 1 ]] || usage

dir="${1:-./islet-test-cert}"
command -v openssl >/dev/null 2>&1 || {
  echo "$0: the openssl command-line tool is missing (apt-get install openssl)" >&2
  exit 1
}

mkdir -p -- "$dir"
dir="$(cd -- "$dir" && pwd -P)"
cert="$dir/cert.pem"
key="$dir/key.pem"

# Our own minimal configuration, so the system's openssl.cnf (whose default extensions
# would make this a CA certificate) plays no part: a leaf certificate for a TLS server.
work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
cat >"$work/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = leaf

[dn]
CN = localhost

[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
EOF

# The key is readable by its owner only; both files are written next to the final ones
# and renamed into place, so an interrupted run never leaves a mismatched pair.
umask 077
openssl req -x509 -config "$work/openssl.cnf" \
  -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/key.pem" -out "$work/cert.pem" -days 30 -sha256 2>"$work/err" || {
  cat "$work/err" >&2
  echo "$0: openssl could not make the certificate" >&2
  exit 1
}
chmod 644 "$work/cert.pem"
mv -f -- "$work/key.pem" "$key.tmp.$$"
mv -f -- "$work/cert.pem" "$cert.tmp.$$"
mv -f -- "$key.tmp.$$" "$key"
mv -f -- "$cert.tmp.$$" "$cert"

echo "$cert"
echo "$key"
cat >&2 <<EOF
A self-signed certificate for localhost and 127.0.0.1, valid for 30 days. Try:
  tools/run.sh --transport=tls --certfile=$cert --keyfile=$key
  curl --cacert $cert https://localhost:4000/     # with --handler=http_hello
EOF
