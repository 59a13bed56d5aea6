#!/usr/bin/env python3
"""certbound's cost per request in Envoy, against Envoy's native filters, at one constant rate.

    python3 tests/bench/bench.py [--rate 1000] [--duration 10] [--runs 3] [--quick] [--only a,b]

(`make bench` runs it after `make build`.) Each configuration below is its own Envoy 1.40, the
"server", started with --concurrency 1 and pinned to one core (taskset, --server-cpu). The load
path runs on the other core (--load-cpu): h2load (nghttp2-client) sends plain HTTP/2 at a
constant offered rate (--rps: a request falls due every 1/rate s, whatever the answers) to a client-side Envoy that
holds client certificate A and originates mutual TLS to the server, which forwards allowed
requests to an Envoy that answers 200 itself. Every URI carries the token for its request
(tests/bench/client.lua turns it into the Authorization header), so "cold" configurations get a
new token on every request.

Per configuration: start the server; check the expected status with a few requests (and, for
jwt_authn_cache_lua, that the Lua binding check refuses a token bound to another certificate);
warm up; then --runs runs of --duration s at --rate, and one saturating run (as fast as the load
path goes) for the peak. Figures are medians over the runs:
  CPU us/request  the server Envoy's utime+stime (/proc/<pid>/stat) over the run, divided by the
                  requests it completed (its own admin counter http.api.downstream_rq_completed)
  p50/p99         latency seen by h2load (the whole path: client Envoy, server, upstream)
A run during which other processes used the server's core (/proc/stat for that core minus the
Envoy's own ticks, or steal) above --max-other is redone, at most --max-redo times. Any status
other than the expected one fails the benchmark. Writes target/bench/results.json (and
runs.json with every run) and the chart docs/bench/bench.png (target/bench/bench.png with --quick
or --only). Installs what it needs: Envoy (tests/e2e/tools.sh), h2load (apt), and
cryptography + matplotlib into .tools/venv, then re-runs itself with that venv's Python.
Binds to 127.0.0.1 only; stops every process it started, also on Ctrl-C; never prints a token.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
sys.path.insert(0, str(TOP / "tests" / "e2e"))
import stack  # noqa: E402  (Proc, free_port, render, ENVOY_BIN, DEFAULT_WASM)

STATE = TOP / "target" / "bench"
VENV = TOP / ".tools" / "venv"
VENV_PY = VENV / "bin" / "python"
NOOP_CRATE = HERE / "noop"
NOOP_WASM = STATE / "noop-build" / "wasm32-wasip1" / "release" / "bench_noop.wasm"
CHART = TOP / "docs" / "bench" / "bench.png"
HZ = os.sysconf("SC_CLK_TCK")

ISSUER = "https://idp.localhost"
AUDIENCE = "https://api.example"
SCOPE = "accounts:read accounts:write"
LOCAL = stack.LOCAL


def say(msg=""):
    print(msg, flush=True)


class BenchError(Exception):
    pass


# ---- the configurations: data; adding one is one entry ------------------------------------------
@dataclass
class Config:
    name: str
    filters: str  # "none", "noop" (the do-nothing wasm), "certbound", "jwt_authn", "jwt_authn_cache_lua"
    token: str  # a TOKENS kind: what each request carries
    expect: int = 200  # the only status a request may get
    what: str = ""
    grows: dict = field(default_factory=dict)  # certbound counter -> its growth over the CHECKS check requests
    stays: tuple = ()  # certbound counters that must not move during the measured runs
    not_measured: str = ""  # set: the configuration is listed, and skipped with this reason
    settings: dict = field(default_factory=dict)  # certbound: merged into the shared filter config


# The origin DPoP proofs name (htu); the server is told it (dpop_external_url), as behind a proxy.
DPOP_ORIGIN = "https://bench.example"

CONFIGS = [
    Config("base", "none", "es256_warm", what="no filter (the same token is sent)"),
    Config("noop", "noop", "es256_warm", what="a proxy-wasm filter that does nothing (tests/bench/noop)"),
    Config("jwt_authn", "jwt_authn", "es256_each",
           what="Envoy's jwt_authn, ES256, inline JWKS, no cache, a new token per request"),
    Config("jwt_authn_cache_lua", "jwt_authn_cache_lua", "es256_warm",
           what="jwt_authn + jwt_cache_config + payload_in_metadata + Lua cnf check, one token"),
    Config("certbound_warm", "certbound", "es256_warm", what="one bound ES256 JWT, reused",
           grows={"certbound_requests_allowed": 3, "certbound_jwt_cache_hits": 2}),
    Config("certbound_cold_es256", "certbound", "es256_each", what="a new bound ES256 JWT per request",
           grows={"certbound_requests_allowed": 3, "certbound_jwt_cache_hits": 0}, stays=("certbound_jwt_cache_hits",)),
    Config("certbound_cold_rs256", "certbound", "rs256_each", what="a new bound RS256 (2048-bit) JWT per request",
           grows={"certbound_requests_allowed": 3, "certbound_jwt_cache_hits": 0}, stays=("certbound_jwt_cache_hits",)),
    Config("certbound_introspection_hit", "certbound", "opaque",
           what="one opaque token, introspected once, then served from the shared cache",
           grows={"certbound_requests_allowed": 3, "certbound_introspection_calls": 1,
                  "certbound_introspection_cache_hits": 2}),
    Config("certbound_forged", "certbound", "es256_other_cert", expect=401,
           what="a validly signed JWT bound to another certificate", grows={"certbound_requests_denied_binding_failed": 3}),
    Config("certbound_bad_signature", "certbound", "es256_bad_signature", expect=401,
           what="a JWT bound to this certificate, with a broken signature",
           grows={"certbound_requests_denied_invalid_token": 3}),
    Config("certbound_dpop", "certbound", "dpop",
           what="one ES256 JWT bound to the certificate and a DPoP key, a new ES256 proof per request",
           grows={"certbound_requests_allowed": 3, "certbound_jwt_cache_hits": 2, "certbound_dpop_proof_checks": 3},
           settings={"proof_of_possession_dpop": "optional", "dpop_external_url": DPOP_ORIGIN,
                     "dpop_replay_cache_entries": 1048576}),
]
BY_NAME = {c.name: c for c in CONFIGS}
CHECKS = 3  # requests sent to check the expected status before measuring
REFERENCE = "jwt_authn_cache_lua"  # the "ratio" column: native Envoy doing what certbound does


# ---- installing what the benchmark needs ----------------------------------------------------------
def sudo():
    return [] if os.geteuid() == 0 else ["sudo"]


def bootstrap():
    """Envoy, h2load, and a venv with cryptography + matplotlib; then re-runs under that venv."""
    if not stack.ENVOY_BIN.exists():
        say("==> installing Envoy (tests/e2e/tools.sh)")
        subprocess.run(["bash", str(TOP / "tests" / "e2e" / "tools.sh")], check=True)
    if not shutil.which("h2load"):
        say("==> installing h2load (apt-get install nghttp2-client)")
        apt = sudo() + ["apt-get", "install", "-y", "-qq", "nghttp2-client"]
        if subprocess.run(apt, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(sudo() + ["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(apt, check=True, stdout=subprocess.DEVNULL)
    for tool in ("taskset", "openssl", "cargo"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found")
    if not VENV_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(VENV_PY), "-c", "import cryptography, matplotlib"], capture_output=True).returncode != 0:
        say("==> installing cryptography and matplotlib into .tools/venv (pip)")
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "cryptography", "matplotlib"], check=True)
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])


def build_noop():
    say("==> building the noop filter (tests/bench/noop, release profile)")
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1",
                    "--manifest-path", str(NOOP_CRATE / "Cargo.toml"), "--target-dir", str(STATE / "noop-build")],
                   check=True)
    return NOOP_WASM


# ---- keys and tokens ----------------------------------------------------------------------------
def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """An ES256 or RS256 (2048-bit) key made for this run; signs JWT access tokens (RFC 9068)."""

    def __init__(self, alg):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
        self.alg, self.kid = alg, f"bench-{alg.lower()}"
        if alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
            nums = self.key.public_key().public_numbers()
            self.jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")),
                        "y": b64u(nums.y.to_bytes(32, "big"))}
            algo = ec.ECDSA(hashes.SHA256())

            def sign(data):
                r, s = utils.decode_dss_signature(self.key.sign(data, algo))
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            nums = self.key.public_key().public_numbers()
            self.jwk = {"kty": "RSA", "n": b64u(nums.n.to_bytes(256, "big")), "e": b64u(nums.e.to_bytes(3, "big"))}
            pad, sha = padding.PKCS1v15(), hashes.SHA256()

            def sign(data):
                return self.key.sign(data, pad, sha)
        self.jwk.update(use="sig", alg=alg, kid=self.kid)
        self._sign = sign
        self.header = b64u(json.dumps({"alg": alg, "typ": "at+jwt", "kid": self.kid}, separators=(",", ":")).encode())

    def token(self, thumbprint, jti, now, jkt=None):
        cnf = {"x5t#S256": thumbprint, **({"jkt": jkt} if jkt else {})}
        claims = {"iss": ISSUER, "sub": "client-a", "aud": AUDIENCE, "client_id": "client-a", "scope": SCOPE,
                  "iat": now, "exp": now + 3600, "jti": jti, "cnf": cnf}
        signing_input = f"{self.header}.{b64u(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signing_input}.{b64u(self._sign(signing_input.encode()))}"

    def jkt(self):
        """RFC 7638 thumbprint of the public key (an EC key): what a token's cnf.jkt names."""
        members = {k: self.jwk[k] for k in ("crv", "kty", "x", "y")}
        return b64u(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())

    def proof(self, htu, token, jti, now):
        """A DPoP proof (RFC 9449) for GET htu with this key (the client's key, not the IdP's)."""
        jwk = {k: self.jwk[k] for k in ("kty", "crv", "x", "y")}
        header = b64u(json.dumps({"typ": "dpop+jwt", "alg": self.alg, "jwk": jwk}, separators=(",", ":")).encode())
        claims = {"jti": jti, "htm": "GET", "htu": htu, "iat": now,
                  "ath": b64u(hashlib.sha256(token.encode()).digest())}
        signing_input = f"{header}.{b64u(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signing_input}.{b64u(self._sign(signing_input.encode()))}"


def break_signature(token):
    """The same token with one signature character changed (in the middle: the last character of a
    base64url signature may only carry padding bits)."""
    head, sig = token.rsplit(".", 1)
    i = len(sig) // 2
    return f"{head}.{sig[:i]}{'B' if sig[i] == 'A' else 'A'}{sig[i + 1:]}"


class Tokens:
    """The tokens a configuration's requests carry. take(n): n request paths, each /t/<token>.
    A "warm" kind repeats one token; an "_each" kind makes n new ones on every call, never reused."""

    def __init__(self, kind, signers, thumbprints, opaque):
        self.kind, self.signers, self.thumbprints = kind, signers, thumbprints
        self.made = 0
        a, b = thumbprints["a"], thumbprints["b"]
        now = int(time.time())
        single = {
            "es256_warm": lambda: signers["ES256"].token(a, "warm", now),
            "es256_other_cert": lambda: signers["ES256"].token(b, "forged", now),
            "es256_bad_signature": lambda: break_signature(signers["ES256"].token(a, "bad-signature", now)),
            "opaque": lambda: opaque,
        }
        if kind in single:
            self.single = "/t/" + single[kind]()
        elif kind == "dpop":
            # One token bound both ways; a new proof per request (a proof is accepted once).
            self.single = None
            self.dpop_key = signers["DPOP"]
            self.dpop_token = signers["ES256"].token(a, "dpop", now, jkt=self.dpop_key.jkt())
        elif kind in ("es256_each", "rs256_each"):
            self.single = None
            self.signer = signers["ES256" if kind.startswith("es") else "RS256"]
        else:
            raise BenchError(f"no token source for kind {kind!r}")

    @property
    def per_request(self):
        return self.single is None

    def take(self, n):
        if self.single:
            return [self.single] * n
        now, start = int(time.time()), self.made
        self.made += n
        if self.kind == "dpop":
            tok, htu = self.dpop_token, f"{DPOP_ORIGIN}/bench"  # client.lua sends every request to /bench
            run = b64u(os.urandom(6))
            return [f"/t/{tok}/{self.dpop_key.proof(htu, tok, f'{run}-{i}', now)}" for i in range(start, start + n)]
        thumb = self.thumbprints["a"]
        return ["/t/" + self.signer.token(thumb, f"c{i}", now) for i in range(start, start + n)]


# ---- Envoy configurations ----------------------------------------------------------------------
def jwt_authn_filter(jwks, cache):
    provider = {"issuer": ISSUER, "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": json.dumps(jwks)},
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "forward": True}  # leave the header, as certbound does
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1024}
        provider["payload_in_metadata"] = "jwt_payload"  # read by anchor.lua
    return {"name": "envoy.filters.http.jwt_authn",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                             "providers": {"bench": provider},
                             "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def lua_anchor_filter():
    return {"name": "envoy.filters.http.lua",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                             "default_source_code": {"filename": str(HERE / "anchor.lua")}}}


ROUTER = re.compile(r"^([ \t]*)- name: envoy\.filters\.http\.router[ \t]*$", re.M)


def with_native_filters(yaml_text, filters):
    """envoy/envoy.yaml (rendered without certbound) with `filters` before the router; each as one
    JSON flow mapping, which is YAML."""
    found = ROUTER.findall(yaml_text)
    if len(found) != 1:
        raise BenchError(f"envoy/envoy.yaml: expected one router filter line, found {len(found)}")
    indent = found[0]
    lines = "".join(f"{indent}- {json.dumps(f)}\n" for f in filters)
    return ROUTER.sub(lambda m: lines + m.group(0), yaml_text, count=1)


# ---- reading the machine ------------------------------------------------------------------------
def proc_ticks(pid):
    """utime + stime of a process, all threads, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_ticks(cpu):
    """{user, nice, system, idle, iowait, irq, softirq, steal} of one core from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:9]]
            return dict(zip(("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), v))
    raise BenchError(f"no cpu{cpu} in /proc/stat")


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


H2_STARTED = re.compile(r"requests: \d+ total, (\d+) started")


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]




# ---- the benchmark -----------------------------------------------------------------------------
@dataclass
class Run:
    kind: str  # "rate" or "peak"
    offered: int  # requests sent
    seconds: float  # h2load's own duration
    completed: int  # by the server's counter
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_req: float | None
    server_busy: float  # share of the server core used by Envoy
    other: float  # share of the server core used by anything else (user+nice+system - Envoy)
    steal: float
    softirq: float
    statuses: dict = field(default_factory=dict)
    unexpected: int = 0
    noisy: bool = False


class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = {}
        self.log_of = {}
        self.h2 = None
        self.logs = STATE / "logs"
        self.run_dir = STATE / "run"
        self.work = STATE / "work"
        self.ports = {}
        self.problems = []
        self.redone = 0
        self.kept_noisy = 0

    # -- processes
    def spawn(self, name, argv, cpu, log_name=None):
        log = self.logs / f"{log_name or name}.log"
        self.log_of[name] = log
        log.unlink(missing_ok=True)
        proc = stack.Proc.spawn(name, ["taskset", "-c", str(cpu), *argv], log, self.run_dir, cwd=TOP)
        self.procs[name] = proc
        return proc

    def stop(self, name):
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop()

    def stop_all(self):
        if self.h2 and self.h2.poll() is None:
            self.h2.kill()
            self.h2.wait()
        for name in sorted(self.procs, key=lambda n: n != "server"):
            self.stop(name)
        for f in ("uris.txt", "h2load.log"):  # tokens: not left on disk
            (self.work / f).unlink(missing_ok=True)

    def wait(self, name, ready, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                raise BenchError(f"{name} exited during start-up; see {self.log_of[name]}:\n{self.tail(name)}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"{name} not ready after {timeout:.0f}s; see {self.log_of[name]}")

    def tail(self, name, lines=20):
        try:
            return "\n".join(self.log_of[name].read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def get(self, port, path, timeout=5.0):
        with urllib.request.urlopen(f"http://{LOCAL}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()

    def envoy_ready(self, admin_port):
        return lambda: self.get(admin_port, "/ready")[0] == 200

    # -- the fixed pieces: PKI, keys, stub IdP, upstream, client Envoy
    def setup(self):
        a = self.args
        for d in (self.logs, self.run_dir, self.work):
            d.mkdir(parents=True, exist_ok=True)
        stack.down(STATE, say=lambda m: say(f"bench: leftover from an earlier run: {m}"))
        self.pki = STATE / "pki"
        subprocess.run(["bash", str(TOP / "tests" / "e2e" / "pki.sh"), str(self.pki)], check=True, stdout=subprocess.DEVNULL)
        pairs = (line.split() for line in (self.pki / "thumbprints.txt").read_text().splitlines())
        self.thumbprints = {n.removeprefix("client-"): t for n, t in pairs}

        say("==> keys: ES256 and RS256 (2048-bit), made for this run")
        self.signers = {alg: Signer(alg) for alg in ("ES256", "RS256")}
        self.jwks = {"keys": [s.jwk for s in self.signers.values()]}
        self.signers["DPOP"] = Signer("ES256")  # the client's DPoP key: not in the IdP's JWKS
        self.opaque = "op_" + b64u(os.urandom(32))

        for name in ("stub", "upstream", "upstream_admin", "client", "client_admin", "server", "server_admin"):
            self.ports[name] = stack.free_port()
        # The introspection stub: answers for our one opaque token, bound to certificate A.
        now = int(time.time())
        answer = {"active": True, "iss": ISSUER, "sub": "client-a", "client_id": "client-a", "aud": AUDIENCE,
                  "scope": SCOPE, "token_type": "Bearer", "iat": now, "exp": now + 4 * 3600,
                  "cnf": {"x5t#S256": self.thumbprints["a"]}}
        answers = self.work / "introspection-answers.json"
        answers.write_text(json.dumps({hashlib.sha256(self.opaque.encode()).hexdigest(): answer}))
        self.spawn("stub", [sys.executable, str(HERE / "introspect_stub.py"), "--port", str(self.ports["stub"]),
                            "--cert", str(self.pki / "server.pem"), "--key", str(self.pki / "server.key"),
                            "--tokens", str(answers)], a.load_cpu)
        self.wait("stub", lambda: stack._tcp_open(self.ports["stub"]))

        up_yaml = self.work / "upstream.yaml"
        up_yaml.write_text(stack.render.fill_template(HERE / "upstream.yaml", {
            "PORT": str(self.ports["upstream"]), "ADMIN_PORT": str(self.ports["upstream_admin"])}))
        self.spawn("upstream", self.envoy_argv(up_yaml), a.load_cpu)
        self.wait("upstream", self.envoy_ready(self.ports["upstream_admin"]))

        client_yaml = self.work / "client.yaml"
        client_yaml.write_text(stack.render.fill_template(HERE / "client.yaml", {
            "PORT": str(self.ports["client"]), "ADMIN_PORT": str(self.ports["client_admin"]),
            "SERVER_PORT": str(self.ports["server"]), "CLIENT_LUA": str(HERE / "client.lua"),
            "CLIENT_CERT": str(self.pki / "client-a.pem"), "CLIENT_KEY": str(self.pki / "client-a.key"),
            "CA_CERT": str(self.pki / "ca.pem")}))
        self.spawn("client", self.envoy_argv(client_yaml), a.load_cpu)
        self.wait("client", self.envoy_ready(self.ports["client_admin"]))

        # One filter config for every certbound_* configuration: JWTs against the inline JWKS,
        # everything else introspected (at the stub), the real mTLS connection, strict binding.
        self.certbound_config = self.work / "certbound.json"
        stub = f"idp.localhost:{self.ports['stub']}"
        self.certbound_settings = {
            "proof_of_possession_mtls": "strict",
            "auth_methods": ["bearer", "introspection"],
            "issuer": ISSUER,
            "audience_required": [AUDIENCE],
            "scopes_required": ["accounts:read"],
            "jwt_algorithms": ["ES256", "RS256"],
            "jwks": self.jwks,
            "introspection_endpoint": f"https://{stub}/introspect",
            "client_id": "gateway",
            "client_secret": "gateway-secret",
            "cache_introspection": 3600,
            "upstreams": {stub: "idp"},
            "client_certificate": {"source": "connection"},
            "upstream_headers_claims": ["sub", "client_id"],
            "upstream_headers_names": ["x-authenticated-sub", "x-authenticated-client"],
        }
        self.certbound_config.write_text(json.dumps(self.certbound_settings, indent=1))
        (self.work / "noop.json").write_text("{}\n")

    def envoy_argv(self, config, concurrency=1):
        return [str(stack.ENVOY_BIN), "-c", str(config), "--disable-hot-restart", "--concurrency", str(concurrency),
                "--log-level", "warning"]

    # -- the server under test
    def server_yaml(self, cfg):
        values = {
            "LISTEN_ADDRESS": LOCAL, "LISTEN_PORT": self.ports["server"], "ADMIN_PORT": self.ports["server_admin"],
            "SERVER_CERT": self.pki / "server.pem", "SERVER_KEY": self.pki / "server.key", "CA_CERT": self.pki / "ca.pem",
            "UPSTREAM_ADDRESS": LOCAL, "UPSTREAM_PORT": self.ports["upstream"],
            "IDP_ADDRESS": LOCAL, "IDP_PORT": self.ports["stub"], "IDP_HOST": stack.IDP_HOST,
        }
        if cfg.filters == "certbound":
            config = self.certbound_config
            if cfg.settings:  # this configuration's additions to the shared filter config
                config = self.work / f"certbound-{cfg.name}.json"
                config.write_text(json.dumps({**self.certbound_settings, **cfg.settings}, indent=1))
            values.update(WASM_PATH=self.args.wasm, FILTER_CONFIG=config)
        elif cfg.filters == "noop":
            values.update(WASM_PATH=self.noop_wasm, FILTER_CONFIG=self.work / "noop.json")
        values = {k: str(v) for k, v in values.items()}
        text = stack.render.render(values, wasm=cfg.filters in ("certbound", "noop"))
        native = {"none": [], "noop": [], "certbound": [],
                  "jwt_authn": [jwt_authn_filter(self.jwks, cache=False)],
                  "jwt_authn_cache_lua": [jwt_authn_filter(self.jwks, cache=True), lua_anchor_filter()]}[cfg.filters]
        return with_native_filters(text, native) if native else text

    def start_server(self, cfg):
        path = self.work / f"server-{cfg.name}.yaml"
        path.write_text(self.server_yaml(cfg))
        self.spawn("server", self.envoy_argv(path), self.args.server_cpu, log_name=f"server-{cfg.name}")
        self.wait("server", self.envoy_ready(self.ports["server_admin"]))

    def server_stats(self):
        _, body = self.get(self.ports["server_admin"], "/stats?filter=%5Ehttp%5C.api%5C.downstream_rq_|certbound_")
        out = {}
        for line in body.decode().splitlines():
            name, _, value = line.rpartition(": ")
            if value.isdigit():
                out[name.removeprefix("wasmcustom.")] = int(value)
        return out

    def request(self, path):
        """One request through the client Envoy; (status, body); status None: no HTTP answer."""
        try:
            return self.get(self.ports["client"], path)
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, ConnectionError) as e:
            return None, str(e).encode()

    def stub_counts(self):
        import ssl
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.pem"))
        conn = stack._Conn(self.ports["stub"], stack.IDP_HOST, context=ctx, timeout=5)
        try:
            conn.request("GET", "/counts")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    # -- checks before measuring
    def check(self, cfg, tokens):
        # The first request after a server start may meet a pooled connection to the previous one.
        deadline = time.monotonic() + 10
        while self.server_stats().get("http.api.downstream_rq_completed", 0) == 0:
            if time.monotonic() > deadline:
                raise BenchError(f"{cfg.name}: no request reaches the server through the client Envoy")
            self.request("/")
            time.sleep(0.05)
        before = self.server_stats()
        statuses = [self.request(p)[0] for p in tokens.take(CHECKS)]
        if any(s != cfg.expect for s in statuses):
            raise BenchError(f"{cfg.name}: expected {cfg.expect} for every check request, got {statuses}; "
                             f"see {self.log_of['server']}")
        after = self.server_stats()
        for metric, want in cfg.grows.items():
            if metric not in after:
                self.problem(f"{cfg.name}: counter {metric} not in the server's stats (renamed?); not checked")
            elif after[metric] - before.get(metric, 0) != want:
                raise BenchError(f"{cfg.name}: {metric} grew by {after[metric] - before.get(metric, 0)} over "
                                 f"{CHECKS} requests, expected {want}: the requests did not take the intended path")
        grew = ", ".join(f"{m.removeprefix('certbound_')} +{n}" for m, n in cfg.grows.items())
        say(f"    check: {CHECKS} requests -> {cfg.expect}" + (f" ({grew})" if grew else ""))
        if cfg.filters == "jwt_authn_cache_lua":
            self.check_lua_anchor(cfg)

    def check_lua_anchor(self, cfg):
        """The Lua binding check must refuse a valid token bound to another certificate, also when
        jwt_authn serves it from its cache (the second request), and let the bound one through."""
        now = int(time.time())
        es = self.signers["ES256"]
        misbound = "/t/" + es.token(self.thumbprints["b"], "misbound", now)
        got = [self.request(misbound)[0] for _ in range(3)]
        if any(s not in (401, 403) for s in got):
            raise BenchError(f"{cfg.name}: the Lua anchor let a token bound to another certificate through: {got}")
        bound = "/t/" + es.token(self.thumbprints["a"], "bound", now)
        ok = [self.request(bound)[0] for _ in range(2)]
        if ok != [200, 200]:
            raise BenchError(f"{cfg.name}: a token bound to the client's certificate got {ok}, expected 200")
        say(f"    check: Lua anchor refuses a token bound to another certificate ({got}, uncached then cached), "
            "accepts the bound one (200, 200)")

    # -- one load run
    def h2load(self, argv, timeout):
        cmd = ["h2load", *argv]
        self.h2 = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        try:
            out, _ = self.h2.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.h2.kill()
            self.h2.wait()
            raise BenchError(f"h2load did not finish in {timeout:.0f}s")
        if self.h2.returncode != 0:
            tail = re.sub(r"/t/\S+", "/t/<token>", out[-500:])  # never print a token
            raise BenchError(f"h2load exited {self.h2.returncode}: {tail}")
        return out

    def snapshot(self):
        return {"t": time.monotonic(), "envoy": proc_ticks(self.procs["server"].pid),
                "cpu": cpu_ticks(self.args.server_cpu), "stats": self.server_stats()}

    def one_run(self, cfg, tokens, kind, seconds):
        """kind "rate" (measured) or "warmup" (not kept): `seconds` s at --rate with h2load --rps
        (a request falls due every 1/rate s; late ones are sent at once, so no drift); "peak":
        `seconds` s as fast as the load path goes, --streams requests at a time. One h2load
        client: it walks the URI list once, so with a new token per request no token repeats."""
        a = self.args
        base = f"http://{LOCAL}:{self.ports['client']}"
        log = self.work / "h2load.log"
        log.unlink(missing_ok=True)
        if kind == "peak":
            # Timing-based: h2load stops after `seconds` and drops the requests still in flight.
            # Tokens for the rate the server's CPU would allow, with a wide margin (the CPU per
            # request at the fixed rate bounds the peak from below): more than will be sent.
            n = None
            cpu = getattr(self, "cpu_at_rate", None)
            tokens_needed = int(min(max((1e6 / cpu if cpu else a.rate) * 3 * seconds, 5000), a.peak_max_requests))
            argv = ["-c", "1", "-m", str(a.streams), "-D", f"{seconds:g}"]
            timeout = seconds * 3 + 60
        else:
            n = tokens_needed = max(1, int(a.rate * seconds))
            argv = ["-c", "1", "-m", "256", "--rps", str(a.rate), "-n", str(n)]
            timeout = seconds * 5 + 60
        argv += ["--log-file", str(log)]
        if tokens.per_request:
            uris = self.work / "uris.txt"
            with open(uris, "w") as f:
                for path in tokens.take(tokens_needed):
                    f.write(f"{base}{path}\n")
            argv += ["-i", str(uris)]
        else:
            argv.append(base + tokens.single)
        before = self.snapshot()
        out = self.h2load(argv, timeout)
        after = self.snapshot()
        (self.work / "uris.txt").unlink(missing_ok=True)  # tokens: not kept on disk longer than needed

        statuses, lat, first, last = Counter(), [], None, None
        with open(log) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    start, status, took = int(parts[0]), int(parts[1]), int(parts[2])
                    statuses[status] += 1
                    lat.append(took)
                    first = start if first is None else min(first, start)
                    last = start + took if last is None else max(last, start + took)
        log.unlink(missing_ok=True)
        lat.sort()
        done = sum(statuses.values())
        if n is None:  # timing-based: what h2load answered for; the dropped in-flight ones are no error
            n = done
            started = H2_STARTED.search(out)
            if tokens.per_request and started and int(started.group(1)) > tokens_needed:
                raise BenchError(f"{cfg.name}: the saturating run sent more requests than it had tokens "
                                 f"({started.group(1)} > {tokens_needed}); raise --peak-max-requests")
        # Throughput: answers over the span from the first request to the last answer (h2load's
        # own "finished in" also counts its start-up).
        secs = (last - first) / 1e6 if done > 1 and last > first else after["t"] - before["t"]
        unexpected = (n - done) + sum(c for s, c in statuses.items() if s != cfg.expect)
        completed = (after["stats"].get("http.api.downstream_rq_completed", 0)
                     - before["stats"].get("http.api.downstream_rq_completed", 0))
        wall = max(1, round((after["t"] - before["t"]) * HZ))
        envoy = after["envoy"] - before["envoy"]
        dc = {k: after["cpu"][k] - before["cpu"][k] for k in after["cpu"]}
        other = max(0, dc["user"] + dc["nice"] + dc["system"] - envoy)
        run = Run(kind=kind, offered=n, seconds=secs, completed=completed, rps=done / secs if secs else 0.0,
                  p50_ms=percentile(lat, 50) / 1000 if lat else None, p99_ms=percentile(lat, 99) / 1000 if lat else None,
                  cpu_us_per_req=envoy * 1e6 / HZ / completed if completed else None,
                  server_busy=envoy / wall, other=other / wall, steal=dc["steal"] / wall, softirq=dc["softirq"] / wall,
                  statuses=dict(statuses), unexpected=unexpected)
        run.noisy = run.other > a.max_other or run.steal > a.max_other
        for metric in cfg.stays:
            moved = after["stats"].get(metric, 0) - before["stats"].get(metric, 0)
            if moved:
                raise BenchError(f"{cfg.name}: {metric} moved by {moved} during a run: tokens were reused")
        return run

    def measured(self, cfg, tokens, kind, size, label):
        """A run, redone while another process used the server's core; kept noisy after --max-redo."""
        for attempt in range(self.args.max_redo + 1):
            run = self.one_run(cfg, tokens, kind, size)
            self.show(label, run)
            if run.unexpected:
                raise BenchError(f"{cfg.name}: {run.unexpected} of {run.offered} requests did not get {cfg.expect} "
                                 f"(statuses {run.statuses}); see {self.log_of['server']}")
            if not run.noisy:
                return run
            if attempt < self.args.max_redo:
                self.redone += 1
                say(f"    {label}: other processes used {run.other:.1%} of the server core (steal {run.steal:.1%}); redoing")
                self.wait_quiet()
        self.kept_noisy += 1
        self.problem(f"{cfg.name} {label}: kept after {self.args.max_redo} redos with {run.other:.1%} of the server core "
                     f"used by other processes")
        return run

    def wait_quiet(self):
        """Waits, at most --quiet-wait s, for a 1 s window in which other processes use at most
        --max-other of the server core."""
        a = self.args
        deadline = time.monotonic() + a.quiet_wait
        while time.monotonic() < deadline:
            t0, c0, e0 = time.monotonic(), cpu_ticks(a.server_cpu), proc_ticks(self.procs["server"].pid)
            time.sleep(1)
            c1, e1 = cpu_ticks(a.server_cpu), proc_ticks(self.procs["server"].pid)
            wall = (time.monotonic() - t0) * HZ
            other = sum(c1[k] - c0[k] for k in ("user", "nice", "system", "steal")) - (e1 - e0)
            if other / wall <= a.max_other:
                return True
        return False

    def show(self, label, r):
        lat = f"p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms" if r.p50_ms is not None else "no latencies"
        cpu = f"{r.cpu_us_per_req:.0f} us/req" if r.cpu_us_per_req else "- us/req"
        say(f"    {label}: {r.completed} requests in {r.seconds:.2f}s = {r.rps:.0f} req/s, {lat}, {cpu}, "
            f"server core {r.server_busy:.0%} Envoy / {r.other:.1%} other")

    def problem(self, msg):
        self.problems.append(msg)
        say(f"    NOTE: {msg}")

    # -- one configuration
    def measure(self, cfg, index, total):
        a = self.args
        say(f"==> [{index}/{total}] {cfg.name}: {cfg.what}")
        tokens = Tokens(cfg.token, self.signers, self.thumbprints, self.opaque)
        stub_before = self.stub_counts()
        self.start_server(cfg)
        try:
            self.check(cfg, tokens)
            if a.warmup:
                self.one_run(cfg, tokens, "warmup", a.warmup)
                say(f"    warm-up: {a.warmup:g}s at {a.rate} req/s")
            runs = [self.measured(cfg, tokens, "rate", a.duration, f"run {i + 1}/{a.runs}") for i in range(a.runs)]
            med = lambda xs: statistics.median(xs) if xs and None not in xs else None  # noqa: E731
            cpu = med([r.cpu_us_per_req for r in runs])
            self.cpu_at_rate = cpu
            peak = self.measured(cfg, tokens, "peak", a.peak_duration, "peak")
        finally:
            self.stop("server")
        stub_after = self.stub_counts()
        calls = stub_after["total"] - stub_before["total"]
        result = {"rps": med([r.rps for r in runs]), "p50_ms": med([r.p50_ms for r in runs]),
                  "p99_ms": med([r.p99_ms for r in runs]), "cpu_us_per_req": cpu, "peak_rps": peak.rps}
        extra = {"peak_server_busy": peak.server_busy, "introspection_calls": calls,
                 "runs": [vars(r) for r in runs] + [vars(peak)]}
        if result["rps"] < a.rate * 0.97:
            self.problem(f"{cfg.name}: did not sustain {a.rate} req/s (median {result['rps']:.0f}); "
                         "its CPU per request is at saturation, not at the common rate")
        if cfg.token == "opaque":
            digest = hashlib.sha256(self.opaque.encode()).hexdigest()
            per_token = stub_after["by_token"].get(digest, 0) - stub_before["by_token"].get(digest, 0)
            served = sum(r.completed for r in runs) + peak.completed
            say(f"    introspection endpoint: called {per_token} time(s) for 1 token, over {served} measured requests "
                "and the checks")
            if per_token != 1 or calls != 1:
                raise BenchError(f"{cfg.name}: expected exactly one introspection call for the token, got {per_token} "
                                 f"({calls} calls in all)")
            extra["introspection_calls_per_token"] = per_token
        elif calls:
            raise BenchError(f"{cfg.name}: {calls} unexpected introspection calls")
        return result, extra


# ---- output ------------------------------------------------------------------------------------
def fmt(v, spec):
    width = int(re.match(r"[+]?(\d*)", spec).group(1) or 0)
    return f"{'-':>{width}}" if v is None else format(v, spec)


def table(results, args):
    base = results.get("base", {}).get("cpu_us_per_req")
    ref = results.get(REFERENCE, {}).get("cpu_us_per_req")
    head = (f"{'config':<28} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'above base':>10} "
            f"{'x ' + REFERENCE:>24} {'peak req/s':>10}")
    lines = [f"at a constant {args.rate} req/s offered (median of {args.runs} x {args.duration:g}s), "
             "CPU of the server Envoy per completed request; peak: a saturating run", head, "-" * len(head)]
    for name, r in results.items():
        cpu = r["cpu_us_per_req"]
        above = cpu - base if cpu is not None and base is not None else None
        ratio = cpu / ref if cpu is not None and ref else None
        lines.append(f"{name:<28} {fmt(r['rps'], '7.0f')} {fmt(r['p50_ms'], '7.2f')} {fmt(r['p99_ms'], '7.2f')} "
                     f"{fmt(cpu, '10.1f')} {fmt(above, '+10.1f')} {(fmt(ratio, '23.2f') + 'x') if ratio else '-':>24} "
                     f"{fmt(r.get('peak_rps'), '10.0f')}")
    return "\n".join(lines)


def chart(results, meta, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)[::-1]
    cpu = [results[n]["cpu_us_per_req"] or 0 for n in names]
    peak = [results[n].get("peak_rps") or 0 for n in names]
    colors = ["#4c72b0" if n.startswith("certbound") else "#999999" for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 2.6), sharey=True)
    ax1.barh(names, cpu, color=colors)
    ax1.set_xlabel(f"server Envoy CPU per request, µs (at {meta['rate']} req/s; lower is better)")
    for y, v in enumerate(cpu):
        ax1.text(v, y, f" {v:.0f}", va="center", fontsize=8)
    if "base" in results and results["base"]["cpu_us_per_req"]:
        ax1.axvline(results["base"]["cpu_us_per_req"], color="black", lw=0.8, ls="--")
    busy = meta["peak_server_busy"]
    limited = [busy.get(n, 1) < 0.9 for n in names]
    ax2.barh(names, peak, color=colors, hatch=["//" if x else "" for x in limited], edgecolor="white")
    ax2.set_xlabel("peak requests/s, one core (saturating run; higher is better)"
                   + ("\nhatched: Envoy < 90% of its core (load path or other processes the limit)"
                      if any(limited) else ""))
    for y, v in enumerate(peak):
        ax2.text(v, y, f" {v:.0f}", va="center", fontsize=8)
    for ax in (ax1, ax2):
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    m = meta["machine"]
    fig.suptitle(f"certbound vs Envoy's native filters: Envoy {meta['envoy']}, --concurrency 1, one core; "
                 f"{meta['date'][:16].replace('T', ' ')}", fontsize=11)
    noise = meta["noise"]
    fig.text(0.01, 0.01, f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}\n"
                         f"command: {meta['command']}\n"
                         f"{meta['runs']} x {meta['duration_s']:g}s at {meta['rate']} req/s per config, median; "
                         f"{noise['redone']} runs redone, {noise['kept_noisy']} kept although other processes used "
                         f"more than {noise['max_other']:.0%} of the server core"
                         + (" (a busy machine: figures are indicative)" if noise["kept_noisy"] else ""),
             fontsize=7.5, family="monospace")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="configurations: " + ", ".join(c.name for c in CONFIGS))
    ap.add_argument("--rate", type=int, default=500,
                    help="constant offered rate, req/s, the same for every config; at most what the slowest "
                         "(certbound_cold_rs256) sustains on one core (500)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per measured run (10)")
    ap.add_argument("--runs", type=int, default=3, help="measured runs per config; the median is reported (3)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of warm-up at the rate, not measured (3)")
    ap.add_argument("--peak-duration", type=float, default=10, help="about this long, the saturating run (10)")
    ap.add_argument("--peak-max-requests", type=int, default=300000,
                    help="at most this many new tokens made for a saturating run (300000)")
    ap.add_argument("--streams", type=int, default=32, help="concurrent requests in the saturating run (32)")
    ap.add_argument("--quick", action="store_true", help="1 run x 3s, 1s warm-up, 3s peak: for development")
    ap.add_argument("--only", default="", help="comma list of configurations (default: all)")
    ap.add_argument("--server-cpu", type=int, default=1, help="core of the Envoy under test (1)")
    ap.add_argument("--load-cpu", type=int, default=0, help="core of everything else (0)")
    ap.add_argument("--max-other", type=float, default=0.03,
                    help="redo a run when other processes used more than this share of the server core (0.03)")
    ap.add_argument("--max-redo", type=int, default=3, help="redos per run before keeping it, noted (3)")
    ap.add_argument("--quiet-wait", type=float, default=15,
                    help="before a redo, wait up to this many s for the server core to be quiet (15)")
    ap.add_argument("--wasm", default=str(stack.DEFAULT_WASM))
    ap.add_argument("--chart", default=None, help=f"chart path (default {CHART.relative_to(TOP)}; "
                                                  "target/bench/bench.png with --quick or --only)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup, args.peak_duration, args.max_redo, args.quiet_wait = 1, 3, 1, 3, 1, 3
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    args.configs = [c for c in CONFIGS if not names or c.name in names]
    if args.chart is None:
        args.chart = str(STATE / "bench.png") if (args.quick or names) else str(CHART)
    return args


def main():
    args = parse_args()
    bootstrap()
    cores = os.cpu_count() or 1
    if max(args.server_cpu, args.load_cpu) >= cores or args.server_cpu == args.load_cpu:
        sys.exit(f"bench: needs two distinct cores (--server-cpu {args.server_cpu}, --load-cpu {args.load_cpu}; "
                 f"this machine has {cores})")
    wasm = Path(args.wasm).resolve()
    if not wasm.is_file():
        sys.exit(f"bench: no filter at {wasm}; run `make build` first")
    args.wasm = str(wasm)
    STATE.mkdir(parents=True, exist_ok=True)

    bench = Bench(args)
    bench.noop_wasm = build_noop()
    # Everything this process starts from now on runs on the load core, except the server.
    os.sched_setaffinity(0, {args.load_cpu})

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a background job inherits it ignored
        signal.signal(sig, on_signal)

    argv = shlex.join(sys.argv[1:])
    if os.environ.get("MAKELEVEL"):
        command = "make bench" + (f" BENCH_ARGS={shlex.quote(argv)}" if argv else "")
    else:
        command = "python3 tests/bench/bench.py" + (f" {argv}" if argv else "")
    envoy_version = re.search(r"/(\d+\.\d+\.\d+)/", subprocess.run([str(stack.ENVOY_BIN), "--version"],
                                                                   capture_output=True, text=True).stdout)
    h2_version = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    results, extras = {}, {}
    todo = [c for c in args.configs if not c.not_measured]
    say(f"==> {len(todo)} configurations at {args.rate} req/s, {args.runs} x {args.duration:g}s each "
        f"(+{args.warmup:g}s warm-up, one saturating run); server on cpu{args.server_cpu}, load on cpu{args.load_cpu}")
    try:
        bench.setup()
        for i, cfg in enumerate(todo, 1):
            results[cfg.name], extras[cfg.name] = bench.measure(cfg, i, len(todo))
    except KeyboardInterrupt:
        bench.stop_all()
        say("\nbench: interrupted; every process it started is stopped")
        sys.exit(130)
    except (BenchError, subprocess.CalledProcessError, OSError) as e:
        bench.stop_all()
        sys.exit(f"bench: {e}")
    finally:
        bench.stop_all()

    for c in args.configs:
        if c.not_measured:
            say(f"{c.name}: not measured ({c.not_measured})")
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "kernel": platform.release(),
                    "note": "shared: other work may have run on it, see noise"},
        "command": command,
        "rate": args.rate, "duration_s": args.duration, "runs": args.runs, "warmup_s": args.warmup,
        "quick": args.quick,
        "envoy": envoy_version.group(1) if envoy_version else "?", "load_tool": h2_version,
        "server_cpu": args.server_cpu, "load_cpu": args.load_cpu,
        "wasm": {"path": str(wasm.relative_to(TOP)) if wasm.is_relative_to(TOP) else str(wasm),
                 "bytes": wasm.stat().st_size, "sha256": hashlib.sha256(wasm.read_bytes()).hexdigest()},
        "noise": {"max_other": args.max_other, "redone": bench.redone, "kept_noisy": bench.kept_noisy},
        "peak_server_busy": {n: round(e["peak_server_busy"], 3) for n, e in extras.items()},
        "not_measured": {c.name: c.not_measured for c in args.configs if c.not_measured},
        "problems": bench.problems,
    }
    out = {"meta": meta, "configs": {n: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                                     for n, r in results.items()}}
    (STATE / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    (STATE / "runs.json").write_text(json.dumps({"meta": meta, "configs": extras}, indent=1) + "\n")
    chart_path = Path(args.chart)
    chart(results, meta, chart_path)
    say("")
    say(table(results, args))
    say("")
    say(f"peak: share of its core the server Envoy used in the saturating run (below ~90%, the load path or other "
        "processes were the limit): "
        + ", ".join(f"{n} {v:.0%}" for n, v in meta["peak_server_busy"].items()))
    say(f"noise: {bench.redone} runs redone, {bench.kept_noisy} kept noisy (limit {args.max_other:.0%} of the server core)")
    for p in bench.problems:
        say(f"note: {p}")
    say(f"wrote {(STATE / 'results.json').relative_to(TOP)}, {(STATE / 'runs.json').relative_to(TOP)}, "
        f"{chart_path.relative_to(TOP) if chart_path.is_relative_to(TOP) else chart_path}")


if __name__ == "__main__":
    main()
