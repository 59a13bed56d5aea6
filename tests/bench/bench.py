#!/usr/bin/env python3
"""certbound throughput and latency through real Envoy, against a baseline measured in the same run.

    python3 tests/bench/bench.py [--duration 5] [--connections 32] [--opt-levels s,3] [--wasm PATH]

Every figure is a wrk run against Envoy 1.40 on 127.0.0.1 (HTTPS listener, 2 workers) in front of
a fast upstream (Envoy answering 200 itself). Scenarios:
  baseline       the same Envoy without the filter
  jwt-valid      RS256 JWT bound to cert A, presented with cert A: full check, signature verified
  jwt-stolen     the same token with cert B: refused on the binding, before any signature work
  opaque-cached  opaque token, introspection answer served from the shared cache
wrk cannot present client certificates, so the filter reads the certificate from an RFC 9440
`client-cert` header it trusts from 127.0.0.1 (the TLS-terminating-proxy setup); the token
checks are the same as with a mutual-TLS connection.
With --opt-levels the filter is built at each opt-level (release profile otherwise unchanged) and
each build is measured with its size, so the choice in Cargo.toml rests on figures.
"""

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
sys.path.insert(0, str(TOP / "tests" / "e2e"))
import stack  # noqa: E402

STATE = TOP / "target" / "bench"


def say(msg):
    print(msg, flush=True)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    say("==> installing wrk (apt)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)


def build(level):
    """The release wasm at `level`, in its own target dir."""
    target_dir = TOP / "target" / "bench" / f"opt-{level}"
    say(f"==> building certbound.wasm at opt-level={level}")
    env = dict(os.environ, CARGO_PROFILE_RELEASE_OPT_LEVEL=level)
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "--target-dir", str(target_dir)],
                   cwd=TOP, env=env, check=True)
    return target_dir / "wasm32-wasip1" / "release" / "certbound.wasm"


WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_PCT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def wrk(port, headers, duration, connections):
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(argv + [f"https://127.0.0.1:{port}/bench"], capture_output=True, text=True, check=True).stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    pct = {p: float(v) * scale[u] for p, v, u in WRK_PCT.findall(out)}
    non2xx = WRK_NON2XX.search(out)
    return {"rps": float(WRK_RPS.search(out).group(1)), "p50": pct.get("50"), "p99": pct.get("99"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--opt-levels", default="", help="comma list, e.g. s,z,2,3 (default: the release build as is)")
    ap.add_argument("--wasm", default=str(stack.DEFAULT_WASM))
    args = ap.parse_args()

    ensure_wrk()
    variants = {f"opt-level={lvl}": build(lvl) for lvl in args.opt_levels.split(",") if lvl} or {"release": Path(args.wasm)}
    for wasm in variants.values():
        if not wasm.is_file():
            sys.exit(f"bench: no filter at {wasm}; run `make build` first")

    s = stack.Stack(state=STATE, envoys={}, wasm=None, log_level="warning", say=say)
    s.prepare()
    s.start_idp()
    # The fast upstream replaces the echo server for every Envoy of this run.
    up_port, up_admin = stack.free_port(), stack.free_port()
    up_yaml = STATE / "upstream.yaml"
    up_yaml.write_text(stack.render._fill((HERE / "upstream.yaml").read_text(),
                                          {"PORT": str(up_port), "ADMIN_PORT": str(up_admin)}, "upstream.yaml", str))
    s._spawn("upstream", [str(stack.ENVOY_BIN), "-c", str(up_yaml), "--disable-hot-restart", "--concurrency", "1", "--log-level", "warning"])
    s._wait("upstream", lambda: stack._tcp_open(up_port))
    s.ports["echo"] = up_port

    cert = {w: base64.b64encode(subprocess.run(["openssl", "x509", "-in", str(s.pki / f"client-{w}.pem"), "-outform", "DER"],
                                               capture_output=True, check=True).stdout).decode() for w in "ab"}
    jwt = s.access_token("client-a", resource="https://api.example/jwt", scope="accounts:read")
    opaque = s.access_token("client-a", resource="https://api.example/opaque", scope="accounts:read")
    scenarios = {
        "jwt-valid": ([f"authorization: Bearer {jwt}", f"client-cert: :{cert['a']}:"], False),
        "jwt-stolen": ([f"authorization: Bearer {jwt}", f"client-cert: :{cert['b']}:"], True),
        "opaque-cached": ([f"authorization: Bearer {opaque}", f"client-cert: :{cert['a']}:"], False),
    }
    config = HERE / "configs" / "bench.json"
    rows = []
    try:
        say(f"==> baseline: Envoy without the filter ({args.connections} connections, {args.duration}s per scenario)")
        s.wasm = None
        s.start_envoy("bench", config)
        base = wrk(s.ports["envoy-bench"], [], args.duration, args.connections)
        rows.append(("baseline", "-", "no filter", base))
        for name, wasm in variants.items():
            say(f"==> {name}: {wasm.stat().st_size:,} bytes")
            s.wasm = wasm
            s.start_envoy("bench", config)
            # Warm up: JWKS fetched and the introspection answer cached in each worker.
            for headers, _ in scenarios.values():
                wrk(s.ports["envoy-bench"], headers, 1, 4)
            for scenario, (headers, denied) in scenarios.items():
                r = wrk(s.ports["envoy-bench"], headers, args.duration, args.connections)
                ok = (r["non2xx"] > 0) if denied else (r["non2xx"] == 0)
                if not ok:
                    raise SystemExit(f"bench: {scenario} gave {r['non2xx']} non-2xx answers; see {s.logs}")
                rows.append((name, f"{wasm.stat().st_size:,}", scenario, r))
    finally:
        s.stop()

    say("")
    say(f"{'build':<16} {'wasm bytes':>11}  {'scenario':<14} {'req/s':>9} {'vs base':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for build_name, size, scenario, r in rows:
        ratio = r["rps"] / base["rps"]
        say(f"{build_name:<16} {size:>11}  {scenario:<14} {r['rps']:>9.0f} {ratio:>7.2f}x {r['p50'] or 0:>7.2f} {r['p99'] or 0:>7.2f}")
    say(f"\n(wrk -t2 -c{args.connections} -d{args.duration}s over HTTPS; Envoy --concurrency 2; this machine: {os.cpu_count()} CPUs, "
        f"shared by wrk, Envoy and the upstream; compare ratios, not absolute figures, across machines)")


if __name__ == "__main__":
    main()
