#!/usr/bin/env python3
"""certbound demo: a certificate-bound and a DPoP-bound token at work in real Envoy, left running.

    python3 tests/e2e/demo.py [start] [--wasm PATH]   # `make demo` (builds the filter first)
    python3 tests/e2e/demo.py stop                    # `make demo-stop`
    python3 tests/e2e/demo.py status                  # is it running; the curl commands again

`start` starts the test IdP (oidc-provider), an echo upstream and two Envoys running the filter,
one with tests/e2e/configs/strict.json (mTLS), one with configs/dpop.json (DPoP), all on
127.0.0.1 free ports and detached; gets client A a JWT bound to its certificate over mutual TLS
and shows it working with A's certificate and failing when replayed with B's certificate or with
none; gets client-dpop a JWT bound to its DPoP key and shows it working with a proof by that key
and failing when replayed with the thief's own proof, with a captured proof, or as Bearer. Then
the certificate story again through Kong's Wasm engine (nginx + ngx_wasm_module at Kong 3.9's
pin, `make kong-engine`), from dist/ (the files Kong users get: `make dist`), with the config as
Kong would hand it over (checked against dist/certbound.meta.json by Kong 3.9.3's own validation,
../shared/kong-validator); then prints curl commands to try.
A demo already running is replaced. State, logs, pid files: target/demo/ (the tests use
target/e2e/, so both can run at once). It never builds the filter: it needs
target/wasm32-wasip1/release/certbound.wasm (`make demo` builds it).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import stack  # noqa: E402

STATE = stack.TOP / "target" / "demo"
CONFIG = stack.CONFIGS / "strict.json"
ENVOY = "strict"
DPOP_CONFIG = stack.CONFIGS / "dpop.json"
DPOP_ENVOY = "dpop"
RESOURCE = "https://api.example/jwt"
SCOPE = "accounts:read"
PATH = "/accounts"
COMMANDS = STATE / "commands.sh"  # the curl commands, for `status`
KONG = "kong"
DIST = stack.TOP / "dist"
SHARED = Path(os.environ.get("CERTBOUND_SHARED", stack.TOP.parent / "shared"))
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


def rel(path):
    """A path relative to the repo top when it is under it (shorter lines), else absolute."""
    try:
        return str(Path(path).relative_to(stack.TOP))
    except ValueError:
        return str(path)


class Step:
    """`==> what ... ok` on one line; on an exception: FAILED and the first line of the error."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        print(f"==> {self.what} ... ", end="", flush=True)
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            print("ok", flush=True)
        elif issubclass(kind, Exception):
            print("FAILED", flush=True)
            first, *rest = str(exc).splitlines() or [kind.__name__]
            print(f"    {first}")
            if rest:
                print("    (more in the logs: " + rel(STATE / "logs") + "/)")
            exc.demo_reported = True
        return False


class DemoFailed(Exception):
    pass


def short(token):
    return f"{token[:10]}... ({len(token)} characters)"


def status_line(r):
    return f"{r.status} {REASONS.get(r.status, '')}".rstrip() if r.status else f"no HTTP response ({r.error})"


def commands(s):
    """The copy-paste shell commands for the running demo (bash/zsh)."""
    pki = s.pki
    idp_port, api_port, admin_port = s.ports["idp"], s.ports[f"envoy-{ENVOY}"], s.ports[f"admin-{ENVOY}"]
    cert = {w: f'--cert "$PKI/client-{w}.pem" --key "$PKI/client-{w}.key"' for w in ("a", "b")}
    idp_resolve = f"--resolve idp.localhost:{idp_port}:127.0.0.1"
    api_resolve = f"--resolve localhost:{api_port}:127.0.0.1"
    dpop_port = s.ports[f"envoy-{DPOP_ENVOY}"]
    dpop_resolve = f"--resolve localhost:{dpop_port}:127.0.0.1"
    return f"""\
PKI={shlex.quote(str(pki))}
IDP=https://idp.localhost:{idp_port}
API=https://localhost:{api_port}

# 1. Client A gets an access token bound to its certificate (client_credentials over mutual TLS):
TOKEN=$(curl -sS --cacert "$PKI/ca.pem" {cert['a']} \\
  {idp_resolve} "$IDP/token" \\
  -d grant_type=client_credentials -d client_id=client-a \\
  -d resource={RESOURCE} -d scope={SCOPE} \\
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

# 2. A calls the API with its own certificate: 200, and the echo upstream shows what it received
curl -sS -i -w '\\n' --cacert "$PKI/ca.pem" {cert['a']} \\
  {api_resolve} -H "Authorization: Bearer $TOKEN" "$API{PATH}"

# 3. The same token replayed with B's certificate: 401 invalid_token
curl -sS -i -w '\\n' --cacert "$PKI/ca.pem" {cert['b']} \\
  {api_resolve} -H "Authorization: Bearer $TOKEN" "$API{PATH}"

# 4. ... and with no client certificate at all: 401 invalid_token
curl -sS -i -w '\\n' --cacert "$PKI/ca.pem" \\
  {api_resolve} -H "Authorization: Bearer $TOKEN" "$API{PATH}"

# The filter's counters (Envoy admin):
curl -sS "http://127.0.0.1:{admin_port}/stats?filter=certbound"

# DPoP (RFC 9449), on the second Envoy (from the repo top: the proofs come from npm `dpop`
# through tests/e2e/idp/dpop_client.mjs). 5. client-dpop gets a token bound to its key:
DPOP_API=https://localhost:{dpop_port}
KEY={shlex.quote(str(s.state / "demo-dpop-key.json"))}
THIEF={shlex.quote(str(s.state / "demo-thief-key.json"))}
proof() {{ node tests/e2e/idp/dpop_client.mjs proof --key "$1" --htm "$2" --htu "$3" ${{4:+--token "$4"}}; }}
DTOKEN=$(curl -sS --cacert "$PKI/ca.pem" {idp_resolve} "$IDP/token" -u client-dpop:client-dpop-secret \\
  -H "DPoP: $(proof "$KEY" POST "$IDP/token")" \\
  -d grant_type=client_credentials -d resource={RESOURCE} -d scope={SCOPE} \\
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

# 6. With a fresh proof by its key: 200 (every request needs a new proof)
curl -sS -i -w '\\n' --cacert "$PKI/ca.pem" {dpop_resolve} \\
  -H "Authorization: DPoP $DTOKEN" -H "DPoP: $(proof "$KEY" GET "$DPOP_API{PATH}" "$DTOKEN")" "$DPOP_API{PATH}"

# 7. A thief with the token and its own key: 401 invalid_token
curl -sS -i -w '\\n' --cacert "$PKI/ca.pem" {dpop_resolve} \\
  -H "Authorization: DPoP $DTOKEN" -H "DPoP: $(proof "$THIEF" GET "$DPOP_API{PATH}" "$DTOKEN")" "$DPOP_API{PATH}"
"""


def narrate_request(s, n, story, cert, token, expect_status, gateway=ENVOY):
    print(f"\n[{n}] {story}")
    cert_text = f"certificate {rel(s.pki / f'client-{cert}.pem')}" if cert else "no client certificate"
    print(f"    GET https://localhost:{s.ports[f'envoy-{gateway}']}{PATH}   ({cert_text}, Authorization: Bearer {token[:10]}...)")
    r = s.request(gateway, PATH, cert=cert, token=token)
    print(f"    <- {status_line(r)}")
    if r.status == 200:
        try:
            seen = json.loads(r.body)["headers"]
            print("       the upstream received:")
            for name in ("x-authenticated-sub", "x-authenticated-client"):
                print(f"         {name}: {', '.join(seen.get(name, ['(not set)']))}")
        except (ValueError, KeyError):
            print(f"       body: {r.body[:200]!r}")
    else:
        www = r.header("www-authenticate")
        if www:
            print(f"       WWW-Authenticate: {www}")
        elif r.body:
            print(f"       body: {r.body.decode(errors='replace')[:200]}")
    if r.status != expect_status:
        raise DemoFailed(f"expected {expect_status}, got {status_line(r)}: see {rel(s.logs / f'{s.gateway_proc(gateway)}.log')}")
    return r


def kong_config(s):
    """The strict config as Kong hands it to the filter: rendered for Kong's engine, checked by
    Kong 3.9.3's own validation against dist/certbound.meta.json, re-encoded as Kong does."""
    validate = SHARED / "kong-validator" / "validate.sh"
    if not validate.is_file():
        raise DemoFailed(f"no {validate}: set CERTBOUND_SHARED to the folder holding kong-validator/")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "strict.json"
        config.write_text(json.dumps(s.kong_filter_config(ENVOY)))
        out = subprocess.run(["bash", str(validate), "--json", "--emit", str(Path(tmp) / "kong"),
                              str(DIST / "certbound.meta.json"), str(config)], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise DemoFailed(f"Kong's validator did not run (make kong-validator sets it up): {out.stderr.strip()[-300:]}")
        verdict = json.loads(out.stdout.splitlines()[-1])
        if verdict.get("verdict") != "accept":
            raise DemoFailed(f"Kong would refuse the config: {verdict}")
        return Path(verdict["emitted"]).read_text()


def narrate_dpop(s, n, story, token, proof, expect_status, scheme="DPoP"):
    """One request to the DPoP Envoy, told like narrate_request."""
    print(f"\n[{n}] {story}")
    what = f"Authorization: {scheme} {token[:10]}..." + (f", DPoP: {proof[:10]}..." if proof else "")
    print(f"    GET https://localhost:{s.ports[f'envoy-{DPOP_ENVOY}']}{PATH}   ({what})")
    r = s.request(DPOP_ENVOY, PATH, token=token, scheme=scheme, headers=[("DPoP", proof)] if proof else [])
    print(f"    <- {status_line(r)}")
    if r.status == 200:
        try:
            seen = json.loads(r.body)["headers"]
            print(f"       the upstream received: x-authenticated-client: {', '.join(seen.get('x-authenticated-client', ['(not set)']))}, "
                  f"Authorization: {seen.get('authorization', ['?'])[0].split(' ')[0]} <token>, "
                  f"DPoP header: {'none' if 'dpop' not in seen else 'forwarded'}")
        except (ValueError, KeyError):
            print(f"       body: {r.body[:200]!r}")
    else:
        for name, value in r.headers:
            if name == "www-authenticate":
                print(f"       WWW-Authenticate: {value}")
    if r.status != expect_status:
        raise DemoFailed(f"expected {expect_status}, got {status_line(r)}: see {rel(s.logs / f'envoy-{DPOP_ENVOY}.log')}")
    return r


def start(args):
    wasm = Path(args.wasm).resolve()
    if not wasm.is_file():
        print(f"demo: the filter is not built: {rel(wasm)} is missing.\n"
              f"      `make demo` builds it first; by hand: cargo build --release --target wasm32-wasip1", file=sys.stderr)
        return 1
    quiet = lambda msg: None  # noqa: E731  (our own lines say what happens; pieces log to files)
    t0 = time.monotonic()
    s = stack.Stack(STATE, envoys={}, wasm=wasm, say=quiet)
    print(f"certbound demo: Envoy + the certbound filter ({rel(wasm)}) + a test IdP, on 127.0.0.1")
    try:
        if any((STATE / "run").glob("*.pid")):
            with Step("stopping the demo that was running"):
                stack.down(STATE, say=quiet)
        if not stack.ENVOY_BIN.exists() or not (HERE / "idp" / "node_modules" / "oidc-provider").is_dir():
            print("==> installing Envoy and the IdP's packages (tests/e2e/tools.sh, first run only)", flush=True)
            stack.ensure_tools()
        with Step(f"making the test PKI (CA, server certificate, client certificates A and B) in {rel(s.pki)}"):
            s.prepare()  # also: stops leftovers on this state dir, empties the logs, picks ports
        with Step(f"starting the echo upstream on http://127.0.0.1:{s.ports['echo']}"):
            s.start_echo()
        with Step(f"starting the IdP (oidc-provider) on {s.idp_url}"):
            s.start_idp()
        with Step(f"starting Envoy with certbound (config {rel(CONFIG)}: mode strict)"):
            s.start_envoy(ENVOY, CONFIG)
        with Step(f"starting a second Envoy with certbound (config {rel(DPOP_CONFIG)}: DPoP strict)"):
            s.start_envoy(DPOP_ENVOY, DPOP_CONFIG)
        print(f"    API on https://localhost:{s.ports[f'envoy-{ENVOY}']}, Envoy admin on http://127.0.0.1:{s.ports[f'admin-{ENVOY}']}")
        with Step(f"client A gets a token over mutual TLS (client_credentials, resource={RESOURCE})"):
            token = s.access_token("client-a", RESOURCE, scope=SCOPE)
        _, claims = stack.decode_jwt(token)
        bound = claims.get("cnf", {}).get("x5t#S256")
        print(f"    access token: {short(token)}, a JWT: sub={claims.get('sub')}, aud={claims.get('aud')}, "
              f"scope={claims.get('scope')!r}, expires in {claims.get('exp', 0) - int(time.time())} s")
        print(f"    bound to A's certificate: cnf.x5t#S256 = {bound}"
              + (" (= SHA-256 of client-a.pem)" if bound == s.thumbprints()["a"] else " (NOT A's thumbprint?)"))

        narrate_request(s, 1, "client A calls the API with its token and its own certificate", "a", token, 200)
        narrate_request(s, 2, "the token is stolen and replayed by client B, with B's (valid, same-CA) certificate", "b", token, 401)
        narrate_request(s, 3, "the stolen token replayed without any client certificate", None, token, 401)

        print(f"\n--- DPoP (RFC 9449): the same protection for clients without certificates, on "
              f"https://localhost:{s.ports[f'envoy-{DPOP_ENVOY}']}")
        key, thief = s.state / "demo-dpop-key.json", s.state / "demo-thief-key.json"
        with Step("client-dpop gets a token bound to its key (a proof by npm `dpop` at the token endpoint)"):
            dtoken = s.dpop_token(key, RESOURCE, scope=SCOPE)["access_token"]
        jkt = stack.decode_jwt(dtoken)[1].get("cnf", {}).get("jkt")
        print(f"    access token: {short(dtoken)}, bound to the key: cnf.jkt = {jkt}")
        url = s.envoy_url(DPOP_ENVOY) + PATH
        proof = s.dpop_proof(key, url, "GET", token=dtoken)
        narrate_dpop(s, 4, "client-dpop calls the API with its token and a fresh proof signed by its key", dtoken, proof, 200)
        narrate_dpop(s, 5, "the token is stolen; the thief signs a proof with its own key", dtoken,
                     s.dpop_proof(thief, url, "GET", token=dtoken), 401)
        narrate_dpop(s, 6, "the thief also captured client-dpop's proof from [4] and replays it", dtoken, proof, 401)
        narrate_dpop(s, 7, "the stolen token sent as a plain Bearer token", dtoken, None, 401, scheme="Bearer")

        print(f"\n--- Kong Gateway's Wasm engine (nginx + ngx_wasm_module at Kong 3.9's pin), running {rel(DIST)}/: "
              "the files Kong users get")
        if not stack.KONG_NGINX.is_file():
            raise DemoFailed(f"Kong's engine is not built ({stack.KONG_NGINX}): `make demo` builds it (make kong-engine)")
        with Step(f"Kong 3.9.3's validation checks the config against {rel(DIST / 'certbound.meta.json')}"):
            kong_json = kong_config(s)
        with Step(f"starting Kong's engine with {rel(DIST / 'certbound.wasm')} on its route, config as Kong hands it over"):
            s.start_kong(KONG, CONFIG, wasm=DIST / "certbound.wasm", filter_json=kong_json)
        narrate_request(s, 8, "client A's token with A's certificate, through Kong's engine", "a", token, 200, gateway=KONG)
        narrate_request(s, 9, "the stolen token with B's certificate, through Kong's engine", "b", token, 401, gateway=KONG)
        narrate_request(s, 10, "the stolen token without a certificate, through Kong's engine", None, token, 401, gateway=KONG)
    except (Exception, KeyboardInterrupt) as e:
        if isinstance(e, DemoFailed):
            print(f"\ndemo: FAILED: {e}")
        elif isinstance(e, KeyboardInterrupt):
            print("\ndemo: interrupted")
        elif not getattr(e, "demo_reported", False):
            print(f"\ndemo: FAILED: {type(e).__name__}: {e}")
        print(f"demo: stopping what was started; logs stay in {rel(s.logs)}/")
        s.stop()
        return 1

    # Leave it running: forget the stop-at-exit the Stack registered.
    import atexit
    atexit.unregister(s.stop)
    text = commands(s)
    COMMANDS.write_text("# certbound demo: commands for the running demo (bash/zsh)\n" + text)
    print(f"\n==> the demo is running (started in {time.monotonic() - t0:.1f} s). Try it yourself (bash/zsh; also in {rel(COMMANDS)}):\n")
    print("\n".join(("    " + line) if line else "" for line in text.splitlines()))
    print(f"\n    The same with the Python helper (from the repo top):")
    print(f"    TOKEN=$(python3 tests/e2e/stack.py --state {rel(STATE)} token)")
    print(f"    python3 tests/e2e/stack.py --state {rel(STATE)} request --cert b --token \"$TOKEN\" {PATH}")
    print(f"    Kong's engine: https://localhost:{s.ports[f'envoy-{KONG}']} (the same curl commands with API set to it)")
    print(f"    Logs: {rel(s.logs)}/{{idp,echo,envoy-{ENVOY},envoy-{DPOP_ENVOY},kong-{KONG}}}.log")
    print("\n==> stop it with: make demo-stop   (or: python3 tests/e2e/demo.py stop)")
    return 0


def stop(args):
    names = sorted(p.stem for p in (STATE / "run").glob("*.pid"))
    if not names:
        print("==> no demo running")
        return 0
    with Step(f"stopping the demo ({', '.join(names)})"):
        stack.down(STATE, say=lambda msg: None)
    COMMANDS.unlink(missing_ok=True)
    return 0


def status(args):
    pidfiles = sorted((STATE / "run").glob("*.pid"))
    if not pidfiles:
        print("no demo running (start it with: make demo)")
        return 1
    for p in pidfiles:
        rec = json.loads(p.read_text())
        alive = stack.Proc.start_time(rec["pid"]) == rec["start"]
        print(f"{p.stem}: pid {rec['pid']} {'running' if alive else 'GONE'}")
    if COMMANDS.is_file():
        print()
        print(COMMANDS.read_text())
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", nargs="?", default="start", choices=["start", "stop", "status"])
    ap.add_argument("--wasm", default=str(stack.DEFAULT_WASM), help="the filter (default: the release build)")
    args = ap.parse_args(argv)
    return {"start": start, "stop": stop, "status": status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
