#!/usr/bin/env bash
# A throw-away PKI for the header-certificate trust tests (tests/header_trust.rs), made with
# openssl `ca` so CRLs are real v2 CRLs. Certificates are valid 2025-01-01 .. 2049-12-31 unless
# a case says otherwise.  Usage: trust_pki.sh <outdir>
set -euo pipefail
out=$1; rm -rf "$out"; mkdir -p "$out"; cd "$out"
V0=20250101000000Z; V1=20491231000000Z

cat > ext.cnf <<'X'
[root]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[inter]
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
[client]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid:always
[server_only]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
X

mkca() { # mkca NAME: a CA database whose config is NAME/ca.cnf (crlnumber gives v2 CRLs)
  mkdir -p "$1/new"; : > "$1/index.txt"; echo 1000 > "$1/serial"; echo 01 > "$1/crlnumber"
  cat > "$1/ca.cnf" <<X
[ca]
default_ca=CA_default
[CA_default]
dir=$PWD/$1
database=\$dir/index.txt
new_certs_dir=\$dir/new
serial=\$dir/serial
crlnumber=\$dir/crlnumber
certificate=$PWD/$1.pem
private_key=$PWD/$1.key
default_md=sha256
default_crl_days=3650
crl_extensions=crl_ext
policy=pol
unique_subject=no
copy_extensions=none
[pol]
commonName=supplied
[crl_ext]
authorityKeyIdentifier=keyid:always
X
}
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
csr() { openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"; }
sign() { # sign CA NAME EXT [start end]
  openssl ca -batch -notext -config "$1/ca.cnf" -extfile ext.cnf -extensions "$3" \
    -startdate "${4:-$V0}" -enddate "${5:-$V1}" -in "$2.csr" -out "$2.pem" 2>/dev/null
}
selfsign() {
  openssl ca -batch -notext -selfsign -config "$1/ca.cnf" -keyfile "$1.key" -extfile ext.cnf \
    -extensions root -startdate $V0 -enddate $V1 -in "$1.csr" -out "$1.pem" 2>/dev/null
}

key root; csr root "Test Root"; mkca root; selfsign root
key inter; csr inter "Test Intermediate"; mkca inter; sign root inter inter
for n in leaf expired notyet server revoked; do key $n; csr $n "$n"; done
sign inter leaf client
sign inter expired client 20200101000000Z 20210101000000Z
sign inter notyet client 20450101000000Z 20460101000000Z
sign inter server server_only
sign inter revoked client
openssl ca -config inter/ca.cnf -revoke revoked.pem -crl_reason keyCompromise 2>/dev/null
openssl ca -gencrl -config inter/ca.cnf -out inter.crl 2>/dev/null
# An unrelated CA with the same names as ours.
key other; csr other "Test Root"; mkca other; selfsign other
key other_inter; csr other_inter "Test Intermediate"; mkca other_inter; sign other other_inter inter
key foreign; csr foreign foreign; sign other_inter foreign client
# Decoys: CA certificates named like our intermediate, each with its own key, as a client may
# forward them to make path building try every ordering (and check a signature each time).
cat > decoy.cnf <<'X'
[req]
distinguished_name=dn
[dn]
[decoy]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign
subjectKeyIdentifier=hash
X
for i in 1 2 3 4 5 6 7 8 9 10; do
  key decoy$i
  openssl req -x509 -new -key decoy$i.key -subj "/CN=Test Intermediate" -days 3650 \
    -config decoy.cnf -extensions decoy -out decoy$i.pem 2>/dev/null
done
# Two that also copy our intermediate's key identifier (an extension, so the sender's choice).
ski=$(openssl x509 -in inter.pem -noout -ext subjectKeyIdentifier | tail -n 1 | tr -d ' ')
printf '[skidecoy]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\nsubjectKeyIdentifier=%s\n' "$ski" >> decoy.cnf
for i in 1 2; do
  key skidecoy$i
  openssl req -x509 -new -key skidecoy$i.key -subj "/CN=Test Intermediate" -days 3650 \
    -config decoy.cnf -extensions skidecoy -out skidecoy$i.pem 2>/dev/null
done
rm -f ./*.csr
echo ok
