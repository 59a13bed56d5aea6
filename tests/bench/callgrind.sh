#!/usr/bin/env bash
# Instructions per request of the filter's own code (natively, benches/decision.rs against the
# fake host), counted by callgrind: they repeat exactly, so a regression shows on a noisy
# machine where wall-clock cannot. `make callgrind`; CASES="warm forged" to pick some.
#   tests/bench/callgrind.sh [case ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "==> installing valgrind (apt)"; sudo=; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y -qq valgrind >/dev/null; }
echo "==> building the decision benchmark (cargo bench --no-run)"
bin=$(cargo bench --bench decision --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="decision" and m.get("executable"): print(m["executable"])' | tail -1)
cases=("$@"); [ ${#cases[@]} -gt 0 ] || cases=(${CASES:-host warm forged bad_signature introspection_hit dpop cold_es256 cold_rs256})
n=${ITERATIONS:-100}
out=target/callgrind; mkdir -p "$out"
printf '%-20s %14s\n' case "Ir/request"
for c in "${cases[@]}"; do
  CERTBOUND_BENCH="$c:$n" valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
    --callgrind-out-file="$out/$c.out" "$bin" >/dev/null 2>&1
  total=$(callgrind_annotate "$out/$c.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  printf '%-20s %14d\n' "$c" $((total / n))
done
echo "(profiles in $out/<case>.out: callgrind_annotate --inclusive=yes $out/warm.out)"
