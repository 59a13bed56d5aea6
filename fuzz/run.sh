#!/usr/bin/env bash
# Fuzzing for `make fuzz`, `make fuzz-smoke`, `make fuzz-seeds`: fuzz/README.md.
#
#   fuzz/run.sh build   installs cargo-fuzz if missing, builds every target once
#   fuzz/run.sh seeds   build, then writes the seeds that need keys or certificates (gen-*)
#   fuzz/run.sh run     build, seeds, then each target for FUZZ_SECONDS; a summary per target;
#                       exits non-zero if any target crashed (its input is in fuzz/artifacts/)
#
# Environment: FUZZ_SECONDS (60), FUZZ_TARGETS (all), FUZZ_SANITIZER (none; or address).
# cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP=1 turns them on for the stable toolchain.
set -uo pipefail
cd "$(dirname "$0")/.."

what=${1:-run}
seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fuzz() { cargo fuzz "$1" --sanitizer "$sanitizer" "${@:2}"; }

if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  cargo install --locked cargo-fuzz || exit 1
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
[ -n "$targets" ] || { echo "no fuzz targets" >&2; exit 1; }

echo "==> building the fuzz targets (cargo fuzz build --sanitizer $sanitizer, release + debug assertions)"
fuzz build || exit 1
[ "$what" = build ] && exit 0

mkdir -p fuzz/logs
echo "==> seeds that need keys or certificates (gen-* in fuzz/corpus/<target>/)"
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  if ! CERTBOUND_FUZZ_SEEDS=fuzz/corpus fuzz run "$t" -- -runs=0 >"fuzz/logs/$t.seeds.log" 2>&1; then
    echo "   $t: the corpus itself crashes; see fuzz/logs/$t.seeds.log and fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
[ "$what" = seeds ] && exit 0

echo "==> fuzzing each target for ${seconds}s"
crashed=()
printf '%-15s %12s %9s %9s %8s %8s  %s\n' target executions exec/s cov ft corpus crashes
for t in $targets; do
  log="fuzz/logs/$t.log"
  mkdir -p "fuzz/artifacts/$t"
  before=$(ls "fuzz/artifacts/$t" | sort)
  fuzz run "$t" -- -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  last=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -n1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
  new=$(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$t" | sort) | grep -E '^(crash|oom|timeout|leak)-' || true)
  if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
    crashed+=("$t")
    status="CRASH: $(echo $new | sed "s|\([^ ]*\)|fuzz/artifacts/$t/\1|g") (rc $rc, log $log)"
  else
    status=0
  fi
  printf '%-15s %12s %9s %9s %8s %8s  %s\n' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$status"
done

if [ ${#crashed[@]} -gt 0 ]; then
  echo "==> crashes in: ${crashed[*]}; reproduce with RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer <target> <artifact>" >&2
  exit 1
fi
echo "==> no crashes ($(wc -w <<<"$targets") targets, ${seconds}s each)"
