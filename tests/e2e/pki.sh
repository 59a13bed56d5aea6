#!/usr/bin/env bash
# Test PKI for the e2e stack, made at test time so no key is ever committed.
#   tests/e2e/pki.sh <outdir>
# Makes: ca.pem/ca.key (trusted by Envoy and the IdP), server.pem/server.key (SANs 127.0.0.1,
# localhost, idp.localhost, and idp, envoy, kong for the compose harness: one cert for the gateways and the IdP), client-a / client-b
# (CN=client-a / CN=client-b, signed by ca), other-ca.pem/.key and client-c (signed by
# other-ca, so every verifier here must refuse it), client-d (signed by ca; `,` `;` `"` `=` in its
# Subject, `;` and `=` in its URI and DNS SANs: what XFCC parsing must survive), client-x (signed
# by ca: an attacker whose URI and DNS SANs carry `,Hash=<client-a's hex SHA-256>`, the XFCC
# element injection, and whose Subject carries `" , ; =`), and thumbprints.txt: "<name> <x5t#S256>".
# EC P-256 keys: fast to make, and accepted by BoringSSL (Envoy), OpenSSL (Node) and Python.
# Idempotent: a finished dir carries a .complete marker naming this layout and is left alone;
# one made by an older pki.sh (another marker) is made anew.
set -euo pipefail

out=${1:?usage: pki.sh <outdir>}
LAYOUT="certbound pki 2"
if [[ -f "$out/.complete" && "$(cat "$out/.complete")" == "$LAYOUT" ]]; then
  echo "pki: $out already made"
  exit 0
fi
mkdir -p "$out"
# Build in a private temp dir, move into place at the end: a run cut short or a concurrent
# run never leaves a half-made PKI behind a .complete marker.
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

ca() { # ca <name> <CN>
  key "$1"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 3650 -sha256 -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
}

leaf() { # leaf <name> <subject> <issuer> <extensions...>
  local name=$1 subj=$2 issuer=$3
  shift 3
  key "$name"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  printf '%s\n' "$@" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

client_ext=("basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature"
  "extendedKeyUsage=clientAuth" "authorityKeyIdentifier=keyid")

ca ca "certbound test CA"
ca other-ca "unrelated test CA"
leaf server "/CN=localhost" ca "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
  "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:idp.localhost,DNS:idp,DNS:envoy,DNS:kong" "authorityKeyIdentifier=keyid"
leaf client-a "/CN=client-a" ca "${client_ext[@]}"
leaf client-b "/CN=client-b" ca "${client_ext[@]}"
leaf client-c "/CN=client-c" other-ca "${client_ext[@]}"
leaf client-d '/CN=client-d/O=a,b;c=d"e' ca "${client_ext[@]}" "subjectAltName=@alt" "[alt]" \
  "URI.1 = spiffe://tests/client-d;role=a=b" "DNS.1 = client-d.example;x=y"
# The front Envoy writes SANs unescaped after Hash=: a comma there starts a second XFCC element.
a_hex=$(openssl x509 -in client-a.pem -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
leaf client-x '/CN=attacker",Hash=ab;Cert=x/O=x,y;z="w' ca "${client_ext[@]}" "subjectAltName=@alt" "[alt]" \
  "URI.1 = spiffe://attacker,Hash=$a_hex" "DNS.1 = attacker.example,Hash=$a_hex"

# RFC 8705 x5t#S256: base64url of the SHA-256 of the DER certificate, without padding.
for c in client-a client-b client-c client-d client-x; do
  printf '%s %s\n' "$c" "$(openssl x509 -in "$c.pem" -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d '=')"
done >thumbprints.txt

# Sanity: the chains we rely on verify, and C must not verify against our CA.
openssl verify -CAfile ca.pem server.pem client-a.pem client-b.pem client-d.pem client-x.pem >/dev/null
if openssl verify -CAfile ca.pem client-c.pem >/dev/null 2>&1; then
  echo "pki: client-c unexpectedly verifies against ca" >&2
  exit 1
fi

# Throwaway test keys; server.key stays readable for a container's non-root envoy user.
chmod 600 ./*.key
chmod 644 server.key
rm -f ./*.srl
mv -f ./*.pem ./*.key thumbprints.txt "$out/"
echo "$LAYOUT" >"$out/.complete"
echo "pki: made $out"
