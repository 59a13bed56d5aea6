#!/usr/bin/env python3
"""certbound end-to-end tests: real Envoy + the filter + a real IdP (oidc-provider) + an echo upstream.

    python3 tests/e2e/run_tests.py [-k SUBSTRING ...] [--list] [--wasm PATH] [--state DIR]

Starts one stack (IdP, echo, Envoys "strict" and "optional" from tests/e2e/configs/), runs every
case against it in order, prints one PASS/FAIL line per case and a summary, and exits 1 on any
failure. Everything it started is stopped at the end, on Ctrl-C and on errors; leftovers of a
killed run are stopped by the next one. State and logs: target/e2e/ (logs/<piece>.log).
Python stdlib only. No token or secret is ever printed: responses are shown redacted.

Order matters: the short-lived token is fetched first and checked near the end (its expiry
passes while the other cases and the broken-config Envoys run), and the IdP outage comes last
(followed by the IdP's restart).

External mode runs the same cases against gateways and an IdP that are already running (the
docker-compose harness, tests/compose/), once per gateway, and starts nothing:

    python3 tests/e2e/run_tests.py --external --pki DIR --idp https://idp:8443 \
        --gateway envoy=https://envoy:8443 --gateway kong-chain=https://kong:8443/chain [--resolve HOST=ADDR] [--wait S]

Every gateway must be strict-mode with the settings of configs/strict.json. Cases that start or
stop processes, need the optional-mode Envoy or read Envoy's admin are listed as not applicable
(N/A) and not run; counters are not checked. A gateway named kong* may answer nginx's own 400 to a
certificate from another CA and to two Authorization lines. Output: the cases per gateway, a
per-gateway summary, then the total line.
"""

import argparse
import base64
import hashlib
import json
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import stack  # noqa: E402

API_AUDIENCE = "https://api.example"
RES_JWT = "https://api.example/jwt"
RES_OPAQUE = "https://api.example/opaque"
RES_SHORT = "https://api.example/short"
RES_OTHER = "https://other.example"
LEEWAY = json.loads((stack.CONFIGS / "strict.json").read_text())["leeway"]
STAT_PREFIX = "wasmcustom.certbound_"


class Failed(Exception):
    """A case's expectation did not hold; the message is the short reason."""


class Skipped(Exception):
    pass


# ---- the cases ------------------------------------------------------------------------------
CASES = []  # (name, function), in run order
NATIVE_ONLY = {}  # name -> why the case cannot run against gateways someone else started (--external)
ONE_HOST = {}  # name -> (the host it runs on, why it means nothing on the other)


def case(name, native_only=None, only=None):
    """A case. native_only: why it cannot run in external mode. only: (host, why) for a case
    that runs on one host alone (listed as N/A on the other, with the reason)."""
    def register(fn):
        CASES.append((name, fn))
        if native_only:
            NATIVE_ONLY[name] = native_only
        if only:
            ONE_HOST[name] = only
        return fn
    return register


OPTIONAL_ENVOY = "needs the optional-mode Envoy"


def expect(cond, reason):
    if not cond:
        raise Failed(reason)


class Run:
    """What the cases share: the stack, the tokens (never printed), helpers to look at responses.
    external: the gateway runs elsewhere (stack.External): no counters to read. kind: "envoy",
    or "kong" for nginx's own answers that come before any filter runs."""

    def __init__(self, s, full_run=True, external=False, kind="envoy"):
        self.s = s
        self.full_run = full_run
        self.external = external
        self.kind = kind
        self.started = time.monotonic()
        self.tokens = {}  # name -> token
        self.later = {}  # state for cases that finish later (broken-config Envoys)

    # -- tokens, kept out of every message
    def token(self, name, client="client-a", resource=RES_JWT, scope="accounts:read accounts:write"):
        if name not in self.tokens:
            self.tokens[name] = self.s.access_token(client, resource, scope=scope)
        return self.tokens[name]

    def redact(self, text):
        for name, tok in self.tokens.items():
            text = text.replace(tok, f"<{name} token>")
        # Anything else that looks like a JWT or a Bearer credential.
        text = re.sub(r"eyJ[\w-]{4,}\.[\w-]*\.?[\w-]*", "<a JWT>", text)
        return re.sub(r"(?i)(bearer|basic) [\w.~+/=-]{12,}", r"\1 <redacted>", text)

    # -- responses
    def show(self, r):
        """One-line summary of a response for a failure message, tokens redacted."""
        if r.status is None:
            return f"no HTTP response ({r.error})"
        parts = [str(r.status)]
        for name, value in r.headers:
            if name == "www-authenticate":
                parts.append(f"WWW-Authenticate: {value}")
        body = r.body.decode(errors="replace")
        try:  # the echo's answer: show only the headers that matter, never Authorization
            seen = json.loads(body)["headers"]
            body = "upstream saw " + json.dumps({k: v for k, v in seen.items() if k.startswith("x-authenticated")})
        except (ValueError, KeyError, TypeError):
            body = " ".join(body.split())[:200]
        parts.append(f"body: {body}")
        return self.redact(", ".join(parts))

    def upstream(self, r):
        """The headers the echo upstream received ({name: [values]}), or Failed if it was not reached."""
        expect(r.status == 200, f"expected 200 from the upstream, got {self.show(r)}")
        try:
            return json.loads(r.body)["headers"]
        except (ValueError, KeyError) as e:
            raise Failed(f"200 but not the echo upstream's answer ({e}): {self.show(r)}") from None

    def expect_status(self, r, status):
        expect(r.status == status, f"expected {status}, got {self.show(r)}")

    def expect_denied(self, r, status, error, after_wait=False, **attrs):
        """An RFC 6750 denial: status, WWW-Authenticate with realm and error (+ attrs), JSON body."""
        self.expect_status(r, status)
        www = next(iter(challenges_of(r)), "")
        expect(www.startswith('Bearer realm="api"'), f"WWW-Authenticate should start with Bearer realm=\"api\": {self.show(r)}")
        expect(f'error="{error}"' in www, f'expected error="{error}" in WWW-Authenticate: {self.show(r)}')
        for k, v in attrs.items():
            expect(f'{k}="{v}"' in www, f'expected {k}="{v}" in WWW-Authenticate: {self.show(r)}')
        # Where DPoP is on, its challenge follows, without the error of this Bearer request.
        others = challenges_of(r)[1:]
        expect(all(o.startswith('DPoP realm="api", algs="') and "error=" not in o for o in others),
               f"unexpected extra WWW-Authenticate: {self.show(r)}")
        if after_wait and self.bodyless_ok(r):
            return
        try:
            body = r.json()
        except ValueError:
            raise Failed(f"body is not JSON: {self.show(r)}") from None
        expect(body.get("error") == error, f"expected JSON error {error!r}: {self.show(r)}")
        expect(isinstance(body.get("error_description"), str), f"JSON body without error_description: {self.show(r)}")

    def bodyless_ok(self, r):
        """Kong's engine: a refusal sent after the request waited (an IdP call, a key fetch)
        goes without a body (src/flow/refuse.rs: the engine was seen aborting on one); the
        error is in the challenge. Callers say when the refusal comes after a wait
        (`after_wait`); anywhere else a refusal has its JSON body, on Kong too."""
        return self.kind == "kong" and r.body == b"" and r.header("content-type") is None

    def blanked(self, seen, name):
        """A header that must not reach the upstream: absent, or on Kong's engine blanked (a
        removal does not stop nginx forwarding the client's copy; an empty value replaces it)."""
        return name not in seen or (self.kind == "kong" and seen[name] == [""])

    # -- Envoy stats
    def stats(self, envoy):
        r = self.s.admin(envoy, "/stats?filter=^wasmcustom\\.certbound_")
        out = {}
        for line in r.body.decode().splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(STAT_PREFIX):
                out[name[len(STAT_PREFIX):]] = int(value)
        expect(out, f"no {STAT_PREFIX}* counters in /stats of {envoy}")
        return out

    def counted(self, envoy, action, **want):
        """Runs action() and checks that the named counters moved by exactly these amounts
        (names without the wasmcustom.certbound_ prefix, e.g. requests_denied_binding_failed=1).
        External gateways and Kong's engine: only runs action() (an external gateway's counters
        are not ours to read; the bare engine has no Status API: Kong serves them, see
        docs/kong.md)."""
        if self.external or self.kind == "kong":
            return action()
        before = self.stats(envoy)
        result = action()
        after = self.stats(envoy)
        for name, n in want.items():
            moved = after.get(name, 0) - before.get(name, 0)
            expect(moved == n, f"{envoy}: counter {name} moved by {moved}, expected {n}")
        return result

    def echo_requests(self):
        """Request lines the echo upstream logged (method path status), in order."""
        try:
            lines = (self.s.logs / "echo.log").read_text().splitlines()
        except OSError:
            return []
        return [l for l in lines if not l.startswith("echo:")]


def challenges_of(r):
    """The challenges of every WWW-Authenticate field, in order. Kong's engine keeps one field
    of a name in a local reply, so the filter sends its challenges in one field there (RFC 9110
    section 11.6.1): such a field is split before each scheme."""
    out = []
    for name, value in r.headers:
        if name == "www-authenticate":
            out += re.split(r", (?=(?:Bearer|DPoP) )", value)
    return out


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_claims(token, **changes):
    """The token with payload claims changed (None deletes) and its original signature kept."""
    h, p, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    for k, v in changes.items():
        if v is None:
            payload.pop(k, None)
        else:
            payload[k] = v
    return ".".join([h, b64url(json.dumps(payload, separators=(",", ":")).encode()), sig])


# The short-lived token goes first so its expiry passes while the other cases run.
@case("short-lived JWT (2 s) with cert A while fresh -> 200")
def _(t):
    tok = t.token("short", resource=RES_SHORT)
    t.later["short_exp"] = stack.decode_jwt(tok)[1]["exp"]
    t.expect_status(t.s.request("strict", cert="a", token=tok), 200)


@case("IdP issues a JWT bound to cert A (cnf x5t#S256 = thumbprint of A)")
def _(t):
    header, claims = stack.decode_jwt(t.token("jwt"))
    expect(header.get("typ") == "at+jwt", f"typ {header.get('typ')!r}, expected at+jwt")
    want = t.s.thumbprints()["a"]
    expect(claims.get("cnf", {}).get("x5t#S256") == want, f"cnf {claims.get('cnf')!r}, expected x5t#S256 of A")
    expect(claims.get("aud") == API_AUDIENCE, f"aud {claims.get('aud')!r}")


@case("strict: JWT bound to A, cert A -> 200, upstream sees x-authenticated-sub/client")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", "/accounts", cert="a", token=t.token("jwt")), requests_allowed=1)
    seen = t.upstream(r)
    expect(seen.get("x-authenticated-sub") == ["client-a"], f"x-authenticated-sub {seen.get('x-authenticated-sub')!r}, expected ['client-a']")
    expect(seen.get("x-authenticated-client") == ["client-a"], f"x-authenticated-client {seen.get('x-authenticated-client')!r}, expected ['client-a']")


@case("strict: JWT bound to B, cert B -> 200 as client-b")
def _(t):
    seen = t.upstream(t.s.request("strict", cert="b", token=t.token("jwt-b", client="client-b")))
    expect(seen.get("x-authenticated-sub") == ["client-b"], f"x-authenticated-sub {seen.get('x-authenticated-sub')!r}, expected ['client-b']")


@case("strict: JWT bound to A replayed with cert B -> 401 invalid_token")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", cert="b", token=t.token("jwt")),
                  requests_denied_binding_failed=1, requests_allowed=0)
    t.expect_denied(r, 401, "invalid_token")


@case("strict: JWT bound to A, no client certificate -> 401 invalid_token")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", cert=None, token=t.token("jwt")), requests_denied_binding_failed=1)
    t.expect_denied(r, 401, "invalid_token")


@case("cert C (other CA) -> TLS handshake refused (Kong: nginx's 400), never reaches the filter")
def _(t):
    r = t.s.request("strict", cert="c", token=t.token("jwt"))
    if t.kind == "kong" and r.status == 400:
        # nginx's `ssl_verify_client optional` completes the handshake and answers 400 itself
        # ("The SSL certificate error"): neither the filter (no challenge) nor the upstream.
        expect(r.header("www-authenticate") is None, f"a 400 with a challenge came from the filter, not nginx: {t.show(r)}")
        return
    expect(r.status is None, f"expected the handshake to fail, got {t.show(r)}")


@case("strict: opaque token (introspection, Basic) with cert A -> 200")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", token=t.token("opaque", resource=RES_OPAQUE)),
                  introspection_calls=1, requests_allowed=1)
    seen = t.upstream(r)
    expect(seen.get("x-authenticated-client") == ["client-a"], f"x-authenticated-client {seen.get('x-authenticated-client')!r}, expected ['client-a']")
    # Introspection of a client-credentials token has no sub: the header is absent.
    expect(t.blanked(seen, "x-authenticated-sub"), f"x-authenticated-sub {seen.get('x-authenticated-sub')!r}, expected none (no sub claim)")


@case("strict: opaque token bound to A with cert B -> 401 invalid_token")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", cert="b", token=t.token("opaque", resource=RES_OPAQUE)),
                  introspection_calls=1, requests_denied_binding_failed=1)
    t.expect_denied(r, 401, "invalid_token", after_wait=True)


@case("optional: opaque token introspected with client_secret_post -> 200", native_only=OPTIONAL_ENVOY)
def _(t):
    # The IdP refuses Basic for gateway-post: a 200 proves the secret went in the form body.
    r = t.counted("optional", lambda: t.s.request("optional", cert="a", token=t.token("opaque", resource=RES_OPAQUE)),
                  introspection_calls=1, introspection_failures=0, requests_allowed=1)
    seen = t.upstream(r)
    expect(seen.get("x-authenticated-client") == ["client-a"], f"x-authenticated-client {seen.get('x-authenticated-client')!r}")


@case("strict: unbound JWT (no cnf) -> 401 invalid_token")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", token=t.token("unbound", client="client-unbound")),
                  requests_denied_binding_failed=1)
    t.expect_denied(r, 401, "invalid_token")


@case("optional: unbound JWT with cert A -> 200", native_only=OPTIONAL_ENVOY)
def _(t):
    seen = t.upstream(t.s.request("optional", cert="a", token=t.token("unbound", client="client-unbound")))
    expect(seen.get("x-authenticated-client") == ["client-unbound"], f"x-authenticated-client {seen.get('x-authenticated-client')!r}")


@case("optional: unbound JWT without a client certificate -> 200", native_only=OPTIONAL_ENVOY)
def _(t):
    t.upstream(t.s.request("optional", cert=None, token=t.token("unbound", client="client-unbound")))


@case("optional: JWT bound to A replayed with cert B -> 401 (a cnf is still enforced)", native_only=OPTIONAL_ENVOY)
def _(t):
    r = t.counted("optional", lambda: t.s.request("optional", cert="b", token=t.token("jwt")), requests_denied_binding_failed=1)
    t.expect_denied(r, 401, "invalid_token")


@case("strict: revoked opaque token -> 401 invalid_token")
def _(t):
    tok = t.token("revoked", resource=RES_OPAQUE)
    t.expect_status(t.s.request("strict", cert="a", token=tok), 200)  # good before revocation
    rv = t.s.revoke(tok)
    expect(rv.status == 200, f"revocation at the IdP failed: {t.show(rv)}")
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", token=tok), introspection_calls=1, requests_denied_invalid_token=1)
    t.expect_denied(r, 401, "invalid_token", after_wait=True)


@case("strict: JWT for another audience (https://other.example) -> 401 invalid_token")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", token=t.token("other-aud", resource=RES_OTHER)),
                  requests_denied_invalid_token=1)
    t.expect_denied(r, 401, "invalid_token")


@case("strict: JWT without accounts:read -> 403 insufficient_scope, scope=\"accounts:read\"")
def _(t):
    tok = t.token("no-read-scope", scope="accounts:write")
    expect(stack.decode_jwt(tok)[1].get("scope") == "accounts:write", "the IdP did not narrow the scope")
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", token=tok), requests_denied_insufficient_scope=1)
    t.expect_denied(r, 403, "insufficient_scope", scope="accounts:read")


@case("strict: opaque token without accounts:read -> 403 insufficient_scope")
def _(t):
    tok = t.token("opaque-no-read-scope", resource=RES_OPAQUE, scope="accounts:write")
    r = t.s.request("strict", cert="a", token=tok)
    t.expect_denied(r, 403, "insufficient_scope", after_wait=True, scope="accounts:read")


@case("strict: no token -> 401 with the bare challenge Bearer realm=\"api\"")
def _(t):
    r = t.counted("strict", lambda: t.s.request("strict", cert="a"), requests_denied_missing_token=1)
    t.expect_status(r, 401)
    www = challenges_of(r)
    expect(www == ['Bearer realm="api"'], f"WWW-Authenticate {www!r}, expected exactly ['Bearer realm=\"api\"']")


@case("strict: forged x-authenticated-sub/client from the client are replaced")
def _(t):
    forged = [("x-authenticated-sub", "admin"), ("x-authenticated-client", "admin-client")]
    seen = t.upstream(t.s.request("strict", cert="a", token=t.token("jwt"), headers=forged))
    expect(seen.get("x-authenticated-sub") == ["client-a"], f"x-authenticated-sub {seen.get('x-authenticated-sub')!r}, expected only ['client-a']")
    expect(seen.get("x-authenticated-client") == ["client-a"], f"x-authenticated-client {seen.get('x-authenticated-client')!r}, expected only ['client-a']")


@case("strict: forged x-authenticated-sub with an opaque token (no sub claim) is removed")
def _(t):
    seen = t.upstream(t.s.request("strict", cert="a", token=t.token("opaque", resource=RES_OPAQUE),
                                  headers=[("x-authenticated-sub", "admin")]))
    expect(t.blanked(seen, "x-authenticated-sub"), f"x-authenticated-sub {seen.get('x-authenticated-sub')!r} reached the upstream")


@case("strict: x-authenticated-sub sent twice by the client -> 400 invalid_request")
def _(t):
    r = t.s.request("strict", cert="a", token=t.token("jwt"),
                    headers=[("x-authenticated-sub", "admin"), ("x-authenticated-sub", "root")])
    t.expect_denied(r, 400, "invalid_request")


@case("strict: two Authorization headers -> 400 invalid_request")
def _(t):
    tok = t.token("jwt")
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", headers=[("Authorization", f"Bearer {tok}"), ("Authorization", f"Bearer {tok}")]),
                  requests_denied_invalid_request=1, requests_allowed=0)
    if t.kind == "kong" and r.status == 400 and r.header("www-authenticate") is None:
        return  # nginx refuses a repeated Authorization line itself, before any filter runs
    t.expect_denied(r, 400, "invalid_request")


def expect_bare_challenge(t, r):
    """RFC 6750 section 3.1: 401 with exactly `Bearer realm="api"`, no error code."""
    t.expect_status(r, 401)
    www = challenges_of(r)
    expect(www == ['Bearer realm="api"'], f"WWW-Authenticate {www!r}, expected exactly ['Bearer realm=\"api\"']")


@case("strict: ?access_token= alone -> 401 bare challenge (unsupported method); next to a header -> 400 invalid_request")
def _(t):
    expect_bare_challenge(t, t.s.request("strict", "/accounts?access_token=abc", cert="a"))
    r = t.s.request("strict", "/accounts?x=1&access_token=abc", cert="a", token=t.token("jwt"))
    t.expect_denied(r, 400, "invalid_request")


@case("strict: Basic scheme -> 401 bare challenge (unsupported method)")
def _(t):
    r = t.s.request("strict", cert="a", token=base64.b64encode(b"user:password").decode(), scheme="Basic")
    expect_bare_challenge(t, r)


@case("strict: empty Bearer token -> 400 invalid_request")
def _(t):
    t.expect_denied(t.s.request("strict", cert="a", headers=[("Authorization", "Bearer ")]), 400, "invalid_request")


@case("strict: JWT with a forged payload (sub=admin, signature kept) -> 401 invalid_token")
def _(t):
    forged = with_claims(t.token("jwt"), sub="admin")
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", token=forged), requests_denied_invalid_token=1, requests_allowed=0)
    t.expect_denied(r, 401, "invalid_token")


@case("strict: JWT with one payload character flipped -> 401 invalid_token")
def _(t):
    h, p, sig = t.token("jwt").split(".")
    i = len(p) // 2
    flipped = ".".join([h, p[:i] + ("B" if p[i] != "B" else "C") + p[i + 1:], sig])
    t.expect_denied(t.s.request("strict", cert="a", token=flipped), 401, "invalid_token")


@case("strict: JWT re-headed with alg none, no signature -> 401 invalid_token")
def _(t):
    _, p, _ = t.token("jwt").split(".")
    none = b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode()) + "." + p + "."
    t.expect_denied(t.s.request("strict", cert="a", token=none), 401, "invalid_token")


def h2_sequence(t, gateway, cert, requests):
    """Sends `requests` [(path, token or None)] over ONE HTTP/2 connection with curl (client
    certificate `cert`), in order; returns [(status, http version, new connections)] per request."""
    port = t.s.ports[f"envoy-{gateway}"]
    argv = ["curl", "-sS", "--http2"]
    for i, (path, token) in enumerate(requests):
        if i:
            argv.append("--next")
        argv += ["--cacert", str(t.s.pki / "ca.pem"), "--resolve", f"{stack.ENVOY_HOST}:{port}:{stack.LOCAL}",
                 "-o", "/dev/null", "-w", "%{http_code} %{http_version} %{num_connects}\\n"]
        if cert:
            pem, key = t.s.cert(cert)
            argv += ["--cert", str(pem), "--key", str(key)]
        if token:
            argv += ["-H", f"Authorization: Bearer {token}"]
        argv.append(f"https://{stack.ENVOY_HOST}:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = [l.split() for l in out.stdout.splitlines() if l.strip()]
    expect(len(lines) == len(requests), f"curl answered {len(lines)} of {len(requests)}: {t.redact(out.stderr.strip()[-300:])}")
    return [(int(c), v, int(n)) for c, v, n in lines]


@case("HTTP/2, one connection: a JWT -> 200; a revoked opaque token refused after its IdP call -> 401; "
      "then an opaque token introspected -> 200; a JWT bound to B -> 401")
def _(t):
    revoked = t.s.access_token("client-a", RES_OPAQUE)
    t.tokens["h2-revoked"] = revoked
    expect(t.s.revoke(revoked).status == 200, "revocation at the IdP failed")
    good = t.s.access_token("client-a", RES_OPAQUE)
    t.tokens["h2-opaque"] = good
    got = h2_sequence(t, "strict", "a", [("/h2/1", t.token("jwt")), ("/h2/2", revoked), ("/h2/3", good),
                                        ("/h2/4", t.token("jwt-b", client="client-b")), ("/h2/5", t.token("jwt"))])
    expect([c for c, _, _ in got] == [200, 401, 200, 401, 200], f"statuses {[c for c, _, _ in got]}, expected [200, 401, 200, 401, 200]")
    expect(all(v == "2" for _, v, _ in got), f"not all over HTTP/2: {got}")
    expect([n for _, _, n in got] == [1, 0, 0, 0, 0], f"not one connection (new connections per request): {got}")
    # The gateway is still serving (a worker crash would show here as a failed handshake).
    t.expect_status(t.s.request("strict", cert="a", token=t.token("jwt")), 200)


@case("97 request headers + a valid token: Envoy -> forwarded; Kong's engine -> 400 too_many_headers "
      "(it cannot hand over such a map intact), and the worker keeps serving")
def _(t):
    headers = [(f"x-filler-{i}", "1") for i in range(97)]
    r = t.s.request("strict", "/many-headers", cert="a", token=t.token("jwt"), headers=headers)
    if t.kind == "kong":
        t.expect_denied(r, 400, "invalid_request")
        desc = r.json().get("error_description", "")
        expect("more headers than this gateway can check" in desc, f"error_description {desc!r}")
    else:
        # Envoy lets the filter see all of them and the filter allows it; the echo upstream
        # (Python's http.server, 100 headers at most) then answers 431 itself.
        expect(r.status in (200, 431) and r.header("www-authenticate") is None, f"not forwarded: {t.show(r)}")
        expect(any("/many-headers" in l for l in t.echo_requests()), "the upstream did not see the request")
    for _ in range(4):  # both workers
        t.expect_status(t.s.request("strict", cert="a", token=t.token("jwt")), 200)


# ---- DPoP (RFC 9449): client-dpop's proofs come from panva's npm `dpop` -------------------
DPOP_ENVOY = "needs the DPoP-enabled Envoys and client-dpop at the IdP"


def dpop_key(t, name="a"):
    """The file holding DPoP key pair `name` (made by dpop_client.mjs on first use)."""
    return t.s.state / f"dpop-key-{name}.json"


def dpop_token(t, name="dpop", resource=RES_JWT, key="a"):
    if name not in t.tokens:
        t.tokens[name] = t.s.dpop_token(dpop_key(t, key), resource)["access_token"]
    return t.tokens[name]


def dpop_send(t, envoy, token, proof, path="/accounts", method="GET", scheme="DPoP"):
    headers = [("DPoP", proof)] if proof is not None else []
    return t.s.request(envoy, path, token=token, scheme=scheme, method=method, headers=headers)


def jkt_of(key_file):
    """RFC 7638 thumbprint of the public key in a dpop_client.mjs key file, computed here."""
    jwk = json.loads(Path(key_file).read_text())["public"]
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def expect_dpop_denied(t, r, error, status=401, after_wait=False):
    """An RFC 9449 section 7.1 refusal: the error in the DPoP challenge (with algs), JSON body."""
    t.expect_status(r, status)
    challenges = challenges_of(r)
    dpop = [c for c in challenges if c.startswith('DPoP realm="api", algs="')]
    expect(len(dpop) == 1 and f'error="{error}"' in dpop[0], f'expected a DPoP challenge with error="{error}": {t.show(r)}')
    if after_wait and t.bodyless_ok(r):
        return
    try:
        body = r.json()
    except ValueError:
        raise Failed(f"body is not JSON: {t.show(r)}") from None
    expect(body.get("error") == error, f"expected JSON error {error!r}: {t.show(r)}")


@case("IdP issues client-dpop a DPoP-bound JWT (token_type DPoP, cnf.jkt = RFC 7638 thumbprint of its key)",
      native_only=DPOP_ENVOY)
def _(t):
    answer = t.s.dpop_token(dpop_key(t))
    expect(answer.get("token_type") == "DPoP", f"token_type {answer.get('token_type')!r}, expected DPoP")
    t.tokens["dpop"] = answer["access_token"]
    cnf = stack.decode_jwt(answer["access_token"])[1].get("cnf", {})
    expect(cnf == {"jkt": jkt_of(dpop_key(t))}, f"cnf {cnf!r}, expected the jkt of client-dpop's key")


@case("optional: DPoP JWT with a proof from npm dpop -> 200; upstream gets Authorization: Bearer, no DPoP header",
      native_only=DPOP_ENVOY)
def _(t):
    tok = dpop_token(t)
    proof = t.s.dpop_proof(dpop_key(t), t.s.envoy_url("optional") + "/accounts", "GET", token=tok)
    t.later["dpop_proof"] = proof
    r = t.counted("optional", lambda: dpop_send(t, "optional", tok, proof), requests_allowed=1, dpop_proof_checks=1)
    seen = t.upstream(r)
    expect(seen.get("authorization") == [f"Bearer {tok}"], "upstream did not get Authorization: Bearer <token>")
    expect(t.blanked(seen, "dpop"), "the DPoP proof reached the upstream")
    expect(seen.get("x-authenticated-client") == ["client-dpop"], f"x-authenticated-client {seen.get('x-authenticated-client')!r}")


@case("optional: the same proof again, 7 times over both workers -> 401 invalid_dpop_proof (replayed), no signature checked",
      native_only=DPOP_ENVOY)
def _(t):
    tok = dpop_token(t)
    proof = t.later.get("dpop_proof")
    if proof is None:  # run on its own (-k): use one proof twice
        proof = t.s.dpop_proof(dpop_key(t), t.s.envoy_url("optional") + "/accounts", "GET", token=tok)
        t.expect_status(dpop_send(t, "optional", tok, proof), 200)
    r = t.counted("optional", lambda: dpop_send(t, "optional", tok, proof),
                  requests_denied_dpop_failed=1, dpop_proof_checks=0, jwt_signature_checks=0)
    expect_dpop_denied(t, r, "invalid_dpop_proof")
    # Each request is a new connection, spread over the Envoy's two workers: every worker
    # refuses it (the used proofs are in shared data).
    for _ in range(6):
        expect_dpop_denied(t, dpop_send(t, "optional", tok, proof), "invalid_dpop_proof")


@case("optional: a proof for POST, or for another path, or a token without its proof -> 401 invalid_dpop_proof",
      native_only=DPOP_ENVOY)
def _(t):
    tok = dpop_token(t)
    base = t.s.envoy_url("optional")
    for what, proof, method, path in [
        ("proof for POST sent with GET", t.s.dpop_proof(dpop_key(t), base + "/accounts", "POST", token=tok), "GET", "/accounts"),
        ("proof for /other sent to /accounts", t.s.dpop_proof(dpop_key(t), base + "/other", "GET", token=tok), "GET", "/accounts"),
        ("no DPoP header", None, "GET", "/accounts"),
    ]:
        r = t.counted("optional", lambda: dpop_send(t, "optional", tok, proof, path=path, method=method),
                      requests_denied_dpop_failed=1, requests_allowed=0)
        try:
            expect_dpop_denied(t, r, "invalid_dpop_proof")
        except Failed as e:
            raise Failed(f"{what}: {e}") from None


@case("optional: a stolen DPoP token with the thief's own proof -> 401 invalid_token, no signature checked",
      native_only=DPOP_ENVOY)
def _(t):
    tok = dpop_token(t)
    thief = t.s.dpop_proof(dpop_key(t, "thief"), t.s.envoy_url("optional") + "/accounts", "GET", token=tok)
    r = t.counted("optional", lambda: dpop_send(t, "optional", tok, thief),
                  requests_denied_binding_failed=1, dpop_proof_checks=0, jwt_signature_checks=0)
    expect_dpop_denied(t, r, "invalid_token")


@case("optional: a DPoP-bound token sent as Bearer (downgrade) -> 401 invalid_token, Bearer and DPoP challenges",
      native_only=DPOP_ENVOY)
def _(t):
    r = t.counted("optional", lambda: dpop_send(t, "optional", dpop_token(t), None, scheme="Bearer"),
                  requests_denied_binding_failed=1)
    challenges = challenges_of(r)
    expect(len(challenges) == 2 and challenges[0] == 'Bearer realm="api"', f"expected a bare Bearer challenge first: {t.show(r)}")
    expect_dpop_denied(t, r, "invalid_token")


@case("optional: opaque DPoP token -> introspected (cnf.jkt) -> 200; with another key's proof -> 401",
      native_only=DPOP_ENVOY)
def _(t):
    tok = dpop_token(t, "dpop-opaque", resource=RES_OPAQUE)
    url = t.s.envoy_url("optional") + "/accounts"
    good = t.s.dpop_proof(dpop_key(t), url, "GET", token=tok)
    r = t.counted("optional", lambda: dpop_send(t, "optional", tok, good), introspection_calls=1, requests_allowed=1)
    expect(t.upstream(r).get("authorization") == [f"Bearer {tok}"], "upstream did not get the token as Bearer")
    thief = t.s.dpop_proof(dpop_key(t, "thief"), url, "GET", token=tok)
    r = t.counted("optional", lambda: dpop_send(t, "optional", tok, thief), requests_denied_binding_failed=1)
    expect_dpop_denied(t, r, "invalid_token", after_wait=True)  # after introspection (cache off)


@case("strict (DPoP off): the DPoP scheme -> 401 with only the bare Bearer challenge", native_only=DPOP_ENVOY)
def _(t):
    tok = dpop_token(t)
    proof = t.s.dpop_proof(dpop_key(t), t.s.envoy_url("strict") + "/accounts", "GET", token=tok)
    r = dpop_send(t, "strict", tok, proof)
    t.expect_status(r, 401)
    expect(challenges_of(r) == ['Bearer realm="api"'], f"expected the bare Bearer challenge: {t.show(r)}")


@case("DPoP strict with nonces: no nonce -> 401 use_dpop_nonce + DPoP-Nonce; with it -> 200; Bearer -> DPoP challenge only",
      native_only="starts an Envoy of its own")
def _(t):
    t.s.start_envoy("dpop-nonce", stack.CONFIGS / "dpop-nonce.json")
    try:
        tok = dpop_token(t)
        url = t.s.envoy_url("dpop-nonce") + "/accounts"
        r = dpop_send(t, "dpop-nonce", tok, t.s.dpop_proof(dpop_key(t), url, "GET", token=tok))
        expect_dpop_denied(t, r, "use_dpop_nonce")
        nonce = r.header("dpop-nonce")
        expect(nonce, f"no DPoP-Nonce header: {t.show(r)}")
        r = dpop_send(t, "dpop-nonce", tok, t.s.dpop_proof(dpop_key(t), url, "GET", token=tok, nonce=nonce))
        t.upstream(r)
        r = t.s.request("dpop-nonce", "/accounts", token=t.token("unbound", client="client-unbound"))
        challenges = challenges_of(r)
        expect(r.status == 401 and len(challenges) == 1 and challenges[0].startswith("DPoP "),
               f"expected 401 with only a DPoP challenge: {t.show(r)}")
    finally:
        t.s.stop_service(t.s.gateway_proc("dpop-nonce"))
        t.s.envoy_configs.pop("dpop-nonce", None)


@case("DPoP nonces without a configured secret: the nonce one worker issues passes on every worker "
      "(a random secret in shared data)", native_only="starts a gateway of its own")
def _(t):
    config = json.loads((stack.CONFIGS / "dpop-nonce.json").read_text())
    del config["dpop_nonce_secret"]
    path = t.s.state / "dpop-nonce-gen.json"
    path.write_text(json.dumps(config, indent=1))
    t.s.start_envoy("nonce-gen", path)
    try:
        tok = dpop_token(t)
        url = t.s.envoy_url("nonce-gen") + "/accounts"
        r = dpop_send(t, "nonce-gen", tok, t.s.dpop_proof(dpop_key(t), url, "GET", token=tok))
        expect_dpop_denied(t, r, "use_dpop_nonce")
        nonce = r.header("dpop-nonce")
        expect(nonce, f"no DPoP-Nonce header: {t.show(r)}")
        # A new connection each: spread over both workers.
        for i in range(6):
            r = dpop_send(t, "nonce-gen", tok, t.s.dpop_proof(dpop_key(t), url, "GET", token=tok, nonce=nonce))
            expect(r.status == 200, f"request {i + 1}/6 with the issued nonce: {t.show(r)}")
        log = t.s.log_tail(t.s.gateway_proc("nonce-gen"), 200)
        expect("dpop_use_nonce without dpop_nonce_secret" in log, "no start-up warning about the generated secret")
    finally:
        t.s.stop_service(t.s.gateway_proc("nonce-gen"))
        t.s.envoy_configs.pop("nonce-gen", None)


@case("broken filter configs: Envoy refuses to start and its log names the field",
      native_only="starts Envoys of its own",
      only=("envoy", "Kong's engine keeps a refused filter and closes the route: the next case"))
def _(t):
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    broken = {
        "broken-pop": ({**base, "proof_of_possession_mtls": "sometimes"}, "invalid configuration: proof_of_possession_mtls:"),
        "broken-issuer": ({k: v for k, v in base.items() if k != "issuer"}, "invalid configuration: issuer:"),
    }
    for name, (config, _) in broken.items():  # both start at once: each takes about a second to give up
        path = t.s.state / f"{name}.json"
        path.write_text(json.dumps(config, indent=1))
        t.s.start_envoy(name, path, wait=False)
    try:
        for name, (_, want) in broken.items():
            proc = t.s.procs[f"envoy-{name}"]
            deadline = time.monotonic() + 30
            while proc.alive() and time.monotonic() < deadline:
                ready = False
                try:
                    ready = t.s.admin(name, "/ready").status == 200
                except OSError:
                    pass
                expect(not ready, f"{name}: Envoy started and is ready with a broken config")
                time.sleep(0.1)
            expect(not proc.alive(), f"{name}: Envoy still running after 30 s")
            rc = proc.popen.returncode
            expect(rc != 0, f"{name}: Envoy exited with status 0")
            log = t.s.log_tail(f"envoy-{name}", 200)
            expect(want in log, f"{name}: exit {rc} but no '{want}' in its log (logs/envoy-{name}.log)")
    finally:
        for name in broken:
            t.s.stop_service(t.s.gateway_proc(name))
            t.s.envoy_configs.pop(name, None)


@case("broken filter configs on Kong's engine: the route refuses every request (503), nothing reaches the "
      "upstream, the error log names the field, the worker stays up",
      native_only="starts gateways of its own",
      only=("kong", "Envoy refuses a refused config at load time: the case before"))
def _(t):
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    broken = {
        # What Kong's own schema validator may let through is handed over the same way.
        "broken-pop": ({**base, "proof_of_possession_mtls": "sometimes"}, "invalid configuration: proof_of_possession_mtls:"),
        "broken-issuer": ({k: v for k, v in base.items() if k != "issuer"}, "invalid configuration: issuer:"),
    }
    try:
        for name, (config, want) in broken.items():
            path = t.s.state / f"{name}.json"
            path.write_text(json.dumps(config, indent=1))
            t.s.start_envoy(name, path)
            probe = f"/broken-config-probe-{name}-{int(time.time() * 1000)}"
            # With a valid token, without one, and with a forged identity header: all 503.
            for kw in ({"cert": "a", "token": t.token("jwt")}, {"cert": None},
                       {"cert": "a", "headers": [("x-authenticated-sub", "attacker")]}):
                for _ in range(3):  # over both workers
                    r = t.s.request(name, probe, **kw)
                    t.expect_status(r, 503)
                    expect(r.header("cache-control") == "no-store", f"{name}: 503 without cache-control: no-store: {t.show(r)}")
            r = t.s.request(name, probe, method="POST", cert="a", token=t.token("jwt"), body=b'{"pay": 1}')
            t.expect_status(r, 503)
            got = h2_sequence(t, name, "a", [(probe, t.token("jwt")), (probe, None)])
            expect([c for c, _, _ in got] == [503, 503] and all(v == "2" for _, v, _ in got), f"{name}: HTTP/2 answers {got}")
            reached = [l for l in t.echo_requests() if probe in l]
            expect(not reached, f"{name}: the upstream was reached: {reached}")
            proc = t.s.procs[t.s.gateway_proc(name)]
            expect(proc.alive(), f"{name}: nginx exited")
            log = t.s.log_tail(t.s.gateway_proc(name), 200)
            expect(want in log, f"{name}: no '{want}' in its error log")
            expect("refusing every request (503)" in log, f"{name}: the refusal is not in the error log")
            expect("exited with fatal code" not in log, f"{name}: a worker exited for good")
    finally:
        for name in broken:
            t.s.stop_service(t.s.gateway_proc(name))
            t.s.envoy_configs.pop(name, None)


@case("header source: X-Forwarded-For cannot make a client a trusted proxy; the proxy's own address can",
      native_only="starts Envoys of its own")
def _(t):
    # A client connects with its own certificate (B) and claims, through a certificate header
    # and a forged X-Forwarded-For, to be the trusted proxy forwarding A's certificate.
    der = subprocess.run(["openssl", "x509", "-in", str(t.s.pki / "client-a.pem"), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    cert_a = f":{base64.b64encode(der).decode()}:"
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    envoys = {"hdr-untrusted": "10.0.0.5", "hdr-trusted": "127.0.0.1"}
    for name, trusted in envoys.items():
        path = t.s.state / f"{name}.json"
        source = {"source": "header", "header": "client-cert", "format": "rfc9440", "trusted_ips": [trusted],
                  "ca_certificates": (t.s.pki / "ca.pem").read_text()}
        path.write_text(json.dumps({**base, "client_certificate": source}, indent=1))
        t.s.start_envoy(name, path)
    try:
        forged = t.s.request("hdr-untrusted", cert="b", token=t.token("jwt"),
                             headers=[("x-forwarded-for", "10.0.0.5"), ("client-cert", cert_a)])
        t.expect_denied(forged, 401, "invalid_token")
        # The same header from a peer that is in trusted_ips is believed (and A's token passes).
        trusted = t.s.request("hdr-trusted", cert="b", token=t.token("jwt"), headers=[("client-cert", cert_a)])
        seen = t.upstream(trusted)
        expect(t.blanked(seen, "client-cert"), f"the certificate header reached the upstream: {t.show(trusted)}")
    finally:
        for name in envoys:
            t.s.stop_service(t.s.gateway_proc(name))
            t.s.envoy_configs.pop(name, None)


@case("header source xfcc behind a front Envoy (SANITIZE_SET with Subject, URI, DNS): cert A -> 200; "
      "attacker X whose SANs inject ',Hash=<A>' with A's token -> 401; D with , ; \" = in Subject and SANs -> 200",
      native_only="starts Envoys of its own")
def _(t):
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    path = t.s.state / "xfcc.json"
    source = {"source": "header", "header": "x-forwarded-client-cert", "format": "xfcc", "trusted_ips": ["127.0.0.1"],
              "ca_certificates": (t.s.pki / "ca.pem").read_text()}
    path.write_text(json.dumps({**base, "client_certificate": source}, indent=1))
    # The certbound Envoy must keep the front's XFCC (its default SANITIZE would drop it).
    t.s.start_envoy("xfcc", path, extra_vars={"FORWARD_CLIENT_CERT": "ALWAYS_FORWARD_ONLY"})
    t.s.start_front("front", "xfcc")
    try:
        seen = t.upstream(t.s.request("front", cert="a", token=t.token("jwt")))
        expect(seen.get("x-authenticated-sub") == ["client-a"], f"x-authenticated-sub {seen.get('x-authenticated-sub')!r}")
        expect(t.blanked(seen, "x-forwarded-client-cert"), "the XFCC header reached the upstream")
        # The stolen token with the attacker's own certificate (same CA): its URI and DNS SANs are
        # `...,Hash=<A's hex SHA-256>`, which the front Envoy writes unescaped after its own Hash.
        r = t.s.request("front", cert="x", token=t.token("jwt"))
        t.expect_denied(r, 401, "invalid_token")
        tok_d = t.token("jwt-d", client="client-d")
        seen = t.upstream(t.s.request("front", cert="d", token=tok_d))
        expect(seen.get("x-authenticated-sub") == ["client-d"], f"x-authenticated-sub {seen.get('x-authenticated-sub')!r}")
        t.expect_denied(t.s.request("front", cert="a", token=tok_d), 401, "invalid_token")
    finally:
        for name in ("front", "xfcc"):
            t.s.stop_service(t.s.gateway_proc(name))
            t.s.envoy_configs.pop(name, None)


@case("header source, proxies told by their certificate (trusted_proxy_certificates, RFC 9440 section 4; on Envoy "
      "with xff_num_trusted_hops: 1): the front presenting its own -> 200; a client forging XFCC and "
      "X-Forwarded-For -> 401 (while trusted_ips there is forgeable on Envoy)", native_only="starts gateways of its own")
def _(t):
    import urllib.parse
    proxy = subprocess.run(["openssl", "x509", "-in", str(t.s.pki / "client-b.pem"), "-noout", "-fingerprint", "-sha256"],
                           capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    source = {"source": "header", "header": "x-forwarded-client-cert", "format": "xfcc",
              "trusted_proxy_certificates": [proxy], "ca_certificates": (t.s.pki / "ca.pem").read_text()}
    path = t.s.state / "proxycert.json"
    path.write_text(json.dumps({**base, "client_certificate": source}, indent=1))
    # Envoy believing one hop of X-Forwarded-For: source.address is then whatever a client
    # writes there, so trusted_ips could be forged; a certificate cannot.
    t.s.start_envoy("proxycert", path, extra_vars={"FORWARD_CLIENT_CERT": "ALWAYS_FORWARD_ONLY",
                                                   "XFF_NUM_TRUSTED_HOPS": "1"})
    t.s.start_front("front", "proxycert")
    try:
        seen = t.upstream(t.s.request("front", cert="a", token=t.token("jwt")))
        expect(seen.get("x-authenticated-sub") == ["client-a"], f"x-authenticated-sub {seen.get('x-authenticated-sub')!r}")
        # A client of the same CA (D), with A's stolen token and A's public certificate in an XFCC
        # of its own, and an X-Forwarded-For naming the front: not the proxy's certificate.
        pem_a = (t.s.pki / "client-a.pem").read_text()
        der_a = subprocess.run(["openssl", "x509", "-in", str(t.s.pki / "client-a.pem"), "-outform", "DER"],
                               capture_output=True, check=True).stdout
        xfcc = f'Hash={hashlib.sha256(der_a).hexdigest()};Cert="{urllib.parse.quote(pem_a, safe="")}"'
        forged = t.s.request("proxycert", cert="d", token=t.token("jwt"),
                             headers=[("x-forwarded-client-cert", xfcc), ("x-forwarded-for", "127.0.0.1")])
        t.expect_denied(forged, 401, "invalid_token")
        # Why: the same forgery against trusted_ips on that Envoy passes (README, "Header
        # sources"); Kong's engine without set_real_ip_from keeps the TCP peer.
        ips = {**source, "trusted_ips": ["10.0.0.5"]}
        del ips["trusted_proxy_certificates"]
        path.write_text(json.dumps({**base, "client_certificate": ips}, indent=1))
        t.s.start_envoy("ipxff", path, extra_vars={"FORWARD_CLIENT_CERT": "ALWAYS_FORWARD_ONLY",
                                                   "XFF_NUM_TRUSTED_HOPS": "1"})
        r = t.s.request("ipxff", cert="d", token=t.token("jwt"),
                        headers=[("x-forwarded-client-cert", xfcc), ("x-forwarded-for", "10.0.0.5")])
        if t.kind == "envoy":
            expect(r.status == 200, f"expected the documented hole (trusted_ips under xff_num_trusted_hops) to show: {t.show(r)}")
        else:
            t.expect_denied(r, 401, "invalid_token")
    finally:
        for name in ("front", "proxycert", "ipxff"):
            t.s.stop_service(t.s.gateway_proc(name))
            t.s.envoy_configs.pop(name, None)


@case("header source: a certificate from another CA in a trusted proxy's header -> 401 (ca_certificates)",
      native_only="starts Envoys of its own")
def _(t):
    # client-c's certificate comes from an unrelated CA; its own token is bound to it. A
    # trusted proxy forwards it in Client-Cert: the CA check refuses it.
    der = subprocess.run(["openssl", "x509", "-in", str(t.s.pki / "client-c.pem"), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    path = t.s.state / "hdr-ca.json"
    source = {"source": "header", "header": "client-cert", "format": "rfc9440", "trusted_ips": ["127.0.0.1"],
              "ca_certificates": (t.s.pki / "ca.pem").read_text()}
    path.write_text(json.dumps({**base, "client_certificate": source}, indent=1))
    t.s.start_envoy("hdr-ca", path)
    try:
        tok_c = t.token("jwt-c", client="client-c")
        r = t.s.request("hdr-ca", cert="b", token=tok_c, headers=[("client-cert", f":{base64.b64encode(der).decode()}:")])
        t.expect_denied(r, 401, "invalid_token")
        expect("not trusted" in (r.header("www-authenticate") or ""), f"expected the CA refusal: {t.show(r)}")
    finally:
        t.s.stop_service(t.s.gateway_proc("hdr-ca"))
        t.s.envoy_configs.pop("hdr-ca", None)


@case("signed introspection (RFC 9701): opaque token -> 200 with the IdP's signed response forwarded; revoked -> 401",
      native_only="starts an Envoy of its own")
def _(t):
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    config = {**base, "auth_methods": ["introspection"], "introspection_jwt": True,
              "upstream_introspection_jwt_header": "x-introspection-jwt", "cache_introspection": 0}
    path = t.s.state / "signed.json"
    path.write_text(json.dumps(config, indent=1))
    t.s.start_envoy("signed", path)
    try:
        tok = t.s.access_token("client-a", RES_OPAQUE)
        t.tokens["signed-opaque"] = tok
        seen = t.upstream(t.s.request("signed", cert="a", token=tok))
        jwt = (seen.get("x-introspection-jwt") or [""])[0]
        expect(jwt.count(".") == 2, f"no signed introspection response upstream: {sorted(seen)}")
        header, claims = stack.decode_jwt(jwt)
        expect(header.get("typ") == "token-introspection+jwt", f"typ {header.get('typ')!r}")
        expect(claims.get("aud") == "gateway" and claims.get("iss") == t.s.idp_url, f"aud/iss {claims.get('aud')!r} {claims.get('iss')!r}")
        expect(claims.get("token_introspection", {}).get("active") is True, "token_introspection.active is not true")
        expect(seen.get("x-authenticated-client") == ["client-a"], f"x-authenticated-client {seen.get('x-authenticated-client')!r}")
        # A client's own copy of the header never reaches the upstream.
        seen = t.upstream(t.s.request("signed", cert="a", token=tok, headers=[("x-introspection-jwt", "forged")]))
        expect(seen.get("x-introspection-jwt", [""])[0].count(".") == 2, "the client's x-introspection-jwt survived")
        # Revoked: the signed answer says inactive.
        expect(t.s.revoke(tok).status == 200, "revocation failed")
        t.expect_denied(t.s.request("signed", cert="a", token=tok), 401, "invalid_token", after_wait=True)
        # Bound to A, presented with B: refused on the binding from the signed answer.
        tok2 = t.s.access_token("client-a", RES_OPAQUE)
        t.tokens["signed-opaque-2"] = tok2
        t.expect_denied(t.s.request("signed", cert="b", token=tok2), 401, "invalid_token", after_wait=True)
    finally:
        t.s.stop_service(t.s.gateway_proc("signed"))
        t.s.envoy_configs.pop("signed", None)


def reset_after_sending(s, envoy, cert, token, hold=0.05):
    """Sends a request and resets the connection (TCP RST) without reading the answer."""
    ctx = ssl.create_default_context(cafile=str(s.pki / "ca.pem"))
    ctx.load_cert_chain(*(str(p) for p in s.cert(cert)))
    raw = socket.create_connection((stack.LOCAL, s.ports[f"envoy-{envoy}"]), timeout=5)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=stack.ENVOY_HOST)
        tls.sendall(f"GET /reset HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        time.sleep(hold)
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        tls.close()
    except (OSError, ssl.SSLError):
        raw.close()


@case("key fetch: a client resetting streams with unknown-kid tokens cannot starve the worker of keys; "
      "a legitimate client keeps getting 200", native_only="starts an Envoy of its own")
def _(t):
    # The attack on a fetch owned by a request: a junk-signature token with an unknown kid, bound
    # to the attacker's own certificate (B), passes every cheap check and needs keys; the attacker
    # resets the stream. Envoy drops the response of a call whose context is gone; the worker used
    # to count it in flight and spend its cool-down, so a fresh worker stayed without keys (503).
    base = json.loads((stack.CONFIGS / "strict.json").read_text())
    path = t.s.state / "keyfetch.json"
    path.write_text(json.dumps({**base, "jwks_endpoint": "${IDP_URL}/jwks-slow"}, indent=1))
    junk_header = b64url(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "no-such-kid"}).encode())
    claims = {"iss": t.s.idp_url, "aud": API_AUDIENCE, "scope": "accounts:read", "sub": "attacker",
              "iat": int(time.time()), "exp": int(time.time()) + 300, "cnf": {"x5t#S256": t.s.thumbprints()["b"]}}
    junk = f"{junk_header}.{b64url(json.dumps(claims).encode())}.{b64url(b'not a signature')}"
    good = t.token("jwt")
    t.s.start_envoy("keyfetch", path, concurrency=1, warm=False)  # the first fetch is the point
    stop = threading.Event()
    resets = [0]

    def attack():
        while not stop.is_set():
            reset_after_sending(t.s, "keyfetch", "b", junk)
            resets[0] += 1

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    statuses = []
    try:
        # The attacker goes first, as on a worker that just started: its requests are the ones
        # that need the keys.
        time.sleep(0.5)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            r = t.s.request("keyfetch", "/accounts", cert="a", token=good)
            statuses.append(r.status)
            time.sleep(0.1)
    finally:
        stop.set()
        attacker.join(10)
        t.s.stop_service(t.s.gateway_proc("keyfetch"))
        t.s.envoy_configs.pop("keyfetch", None)
    t.later["keyfetch"] = (resets[0], statuses)
    print(f"      key fetch under attack: {resets[0]} reset requests, legitimate answers: "
          f"{statuses.count(200)} x 200, {len(statuses) - statuses.count(200)} other ({sorted(set(statuses), key=str)})")
    expect(resets[0] >= 20, f"the attacker managed only {resets[0]} resets")
    if t.kind == "kong":
        # Kong's engine cannot resume a request from another context's call: while the first
        # fetch (1.5 s slow here) is in flight, a request that needs keys gets 503 at once.
        # After it, only 200s: the resets did not cost the worker its keys.
        first_ok = statuses.index(200) if 200 in statuses else len(statuses)
        expect(first_ok <= 20, f"no 200 within 2 s: {statuses}")
        statuses = statuses[first_ok:]
    expect(len(statuses) >= 10 and all(s == 200 for s in statuses),
           f"legitimate client got {statuses}, expected only 200s")


@case("strict: the short-lived JWT once expired (exp + leeway passed) -> 401 invalid_token")
def _(t):
    exp = t.later.get("short_exp")
    if exp is None:  # run on its own (-k): get one now and wait it out
        exp = stack.decode_jwt(t.token("short", resource=RES_SHORT))[1]["exp"]
    wait = exp + LEEWAY + 1.05 - time.time()
    if wait > 0:
        time.sleep(wait)
    r = t.counted("strict", lambda: t.s.request("strict", cert="a", token=t.token("short")), requests_denied_token_expired=1)
    t.expect_denied(r, 401, "invalid_token")


@case("stats: counters of both Envoys moved as expected", native_only="reads Envoy's admin /stats",
      only=("envoy", "reads Envoy's admin /stats; the bare engine has no Status API (docs/kong.md)"))
def _(t):
    if not t.full_run:
        raise Skipped("its thresholds assume the full run")
    st = t.stats("strict")
    for name, low in [("requests_allowed", 5), ("requests_denied_binding_failed", 3), ("requests_denied_invalid_token", 4),
                      ("requests_denied_invalid_request", 4), ("requests_denied_missing_token", 1),
                      ("requests_denied_insufficient_scope", 2), ("requests_denied_token_expired", 1),
                      ("introspection_calls", 4), ("jwks_fetches", 1)]:
        expect(st.get(name, 0) >= low, f"strict: {name} = {st.get(name)}, expected >= {low}")
    for name in ("requests_denied_idp_unavailable", "introspection_failures", "jwks_fetch_failures"):
        expect(st.get(name) == 0, f"strict: {name} = {st.get(name)} before the IdP outage, expected 0")
    op = t.stats("optional")
    for name, low in [("requests_allowed", 3), ("requests_denied_binding_failed", 1), ("introspection_calls", 1), ("jwks_fetches", 1)]:
        expect(op.get(name, 0) >= low, f"optional: {name} = {op.get(name)}, expected >= {low}")


@case("IdP down: JWT still verified with the JWKS already fetched -> 200", native_only="stops the IdP")
def _(t):
    t.later["opaque_before_outage"] = t.token("opaque", resource=RES_OPAQUE)
    jwt = t.token("jwt")
    # Each Envoy worker holds its own keys, fetched on its first tick (1 s) or first JWT: give
    # every worker that chance when this case runs alone (-k) right after the start.
    time.sleep(max(0.0, t.started + 2.5 - time.monotonic()))
    t.s.stop_service("idp")
    t.later["idp_stopped"] = True
    # Several requests: Envoy spreads connections over its workers, each with its own keys.
    for i in range(6):
        r = t.s.request("strict", cert="a", token=jwt)
        expect(r.status == 200, f"request {i + 1}/6: expected 200, got {t.show(r)}")


@case("IdP down: opaque token -> 503 temporarily_unavailable, nothing forwarded upstream",
      native_only="stops the IdP, reads the upstream's log")
def _(t):
    if not t.later.get("idp_stopped"):
        t.s.stop_service("idp")
        t.later["idp_stopped"] = True
    probe = f"/idp-outage-probe-{int(time.time() * 1000)}"
    tok = t.later.get("opaque_before_outage") or "an-opaque-token-0123456789"
    r = t.counted("strict", lambda: t.s.request("strict", probe, cert="a", token=tok),
                  requests_denied_idp_unavailable=1, introspection_failures=1, requests_allowed=0)
    t.expect_status(r, 503)
    expect(r.header("www-authenticate") is None, f"a 503 must carry no WWW-Authenticate: {t.show(r)}")
    if not t.bodyless_ok(r):
        try:
            body = r.json()
        except ValueError:
            raise Failed(f"body is not JSON: {t.show(r)}") from None
        expect(body.get("error") == "temporarily_unavailable", f"JSON error {body.get('error')!r}, expected temporarily_unavailable")
    reached = [l for l in t.echo_requests() if probe in l]
    expect(not reached, f"the echo upstream logged the request: {reached}")


@case("IdP back: a new opaque token is introspected again -> 200", native_only="restarts the IdP")
def _(t):
    if t.later.get("idp_stopped"):
        t.s.start_idp()  # same port and signing key; opaque tokens issued before are gone
        t.later["idp_stopped"] = False
    tok = t.s.access_token("client-a", RES_OPAQUE)
    t.tokens["opaque-after-restart"] = tok
    t.upstream(t.s.request("strict", cert="a", token=tok))


# ---- the runner -----------------------------------------------------------------------------
def gateway_logs(s):
    return sorted(p for p in [*s.logs.glob("envoy-*.log"), *s.logs.glob("kong-*.log")] if not p.name.endswith(".access.log"))


def envoy_log_sizes(s):
    return {log: log.stat().st_size for log in gateway_logs(s)}


def new_filter_lines(s, sizes, limit=12):
    """Filter log lines written since `sizes` was taken, the last `limit` of them: Envoy's
    'wasm log' lines and errors, or nginx's [proxy-wasm] lines and errors on Kong's engine."""
    out = []
    for log in gateway_logs(s):
        with open(log, "rb") as f:
            f.seek(sizes.get(log, 0))
            for line in f.read().decode(errors="replace").splitlines():
                # Envoy: [time][thread][level][logger] [file:line] message
                m = re.match(r"\[[^]]*\]\[[^]]*\]\[(\w+)\]\[\w+\] \[[^]]*\] (.*)", line)
                if m and ("wasm log" in m[2] or m[1] in ("error", "critical")):
                    msg = re.sub(r"^wasm log [^:]*: ", "certbound: ", m[2])
                    out.append(f"{log.stem} [{m[1]}] {msg}")
                    continue
                # nginx: date time [level] pid#tid: [*conn ]message
                m = re.match(r"\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)", line)
                if m and ("[proxy-wasm]" in m[2] or m[1] in ("error", "crit", "alert", "emerg")):
                    msg = re.sub(r'^\[proxy-wasm\]\["certbound" #\d+\] ', "certbound: ", m[2])
                    out.append(f"{log.stem} [{m[1]}] {msg}")
    return out[-limit:]


def run_cases(run, selected, results):
    """Runs the cases in order, one PASS/FAIL/SKIP line each; appends (name, True|False|None) to
    results as it goes (so an interrupted run keeps what it has). On a failure: the reason, and
    for a stack of our own the filter's log lines of that case."""
    logs = run.s.logs is not None
    width = max((len(n) for n, _ in selected), default=0)
    for name, fn in selected:
        c0 = time.monotonic()
        sizes = envoy_log_sizes(run.s) if logs else {}
        try:
            fn(run)
            results.append((name, True))
            print(f"PASS  {name:<{width}}  {time.monotonic() - c0:5.2f}s", flush=True)
        except Skipped as e:
            results.append((name, None))
            print(f"SKIP  {name:<{width}}  ({e})", flush=True)
        except Failed as e:
            results.append((name, False))
            print(f"FAIL  {name:<{width}}  {time.monotonic() - c0:5.2f}s\n      {run.redact(str(e))}", flush=True)
            for line in new_filter_lines(run.s, sizes) if logs else []:
                print(f"      | {run.redact(line)}")
        except Exception as e:  # a harness or environment problem, not an expectation
            results.append((name, False))
            print(f"FAIL  {name:<{width}}  error: {run.redact(f'{type(e).__name__}: {e}')}", flush=True)
            tb = traceback.format_exc().strip().splitlines()
            for line in tb[-6:]:
                print(f"      | {run.redact(line)}")


def count(results):
    return (sum(1 for _, ok in results if ok), sum(1 for _, ok in results if ok is False),
            sum(1 for _, ok in results if ok is None))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="External mode (--external): see the module docstring or tests/compose/README.md.")
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                    help="run only cases whose name contains this (repeatable; case-insensitive)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--wasm", default=str(stack.DEFAULT_WASM))
    ap.add_argument("--host", choices=stack.HOSTS, default="envoy",
                    help="the gateways: Envoy 1.40 (default) or Kong's Wasm engine (nginx + ngx_wasm_module, "
                         "../shared/kong-engine; KONG_ENGINE_DIR)")
    ap.add_argument("--state", help="state and logs (default: target/e2e, or target/e2e-kong with --host kong)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the stack's start/stop lines")
    ext = ap.add_argument_group("external mode: the cases against gateways and an IdP already running (e.g. tests/compose)")
    ext.add_argument("--external", action="store_true", help="start nothing; needs --pki, --idp and --gateway")
    ext.add_argument("--pki", metavar="DIR", help="the directory tests/e2e/pki.sh made for that IdP and those gateways")
    ext.add_argument("--idp", metavar="URL", help="the IdP's issuer URL, e.g. https://idp:8443")
    ext.add_argument("--gateway", action="append", default=[], metavar="NAME=URL",
                     help="a strict-mode gateway with the settings of configs/strict.json, e.g. "
                          "envoy=https://envoy:8443 or kong-chain=https://kong:8443/chain (request paths go "
                          "below the URL's path); a NAME starting with 'kong' allows nginx's own answers "
                          "(400 to a certificate from another CA or to two Authorization lines); repeatable")
    ext.add_argument("--resolve", action="append", default=[], metavar="HOST=ADDRESS",
                     help="dial ADDRESS for HOST (its name is still sent as SNI and verified), "
                          "e.g. idp.localhost=127.0.0.1; repeatable")
    ext.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                     help="how long to wait for the IdP and each gateway to answer (default 30)")
    args = ap.parse_args(argv)

    selected = [(n, f) for n, f in CASES if not args.k or any(k.lower() in n.lower() for k in args.k)]
    if args.list:
        for n, _ in selected:
            print(n + (f"   [native only: {NATIVE_ONLY[n]}]" if args.external and n in NATIVE_ONLY else ""))
        return 0
    if not selected:
        print("no case matches", file=sys.stderr)
        return 2
    if args.external:
        return main_external(ap, args, selected)

    t0 = time.monotonic()
    results = []  # (name, ok or None for skipped)
    say = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else (lambda msg: None)
    state = args.state or (stack.DEFAULT_STATE if args.host == "envoy" else stack.TOP / "target" / "e2e-kong")
    s = stack.Stack(state, wasm=args.wasm, say=say, host=args.host)
    other_host = [(n, ONE_HOST[n]) for n, _ in selected if n in ONE_HOST and ONE_HOST[n][0] != args.host]
    selected = [(n, f) for n, f in selected if n not in dict(other_host)]
    if other_host:
        print(f"e2e: {len(other_host)} case(s) run on one host only, not on {args.host}:")
        width = max(len(n) for n, _ in other_host)
        for n, (host, why) in other_host:
            print(f"N/A   {n:<{width}}  ({host} only: {why})")
    interrupted = False
    try:
        gw = "Envoys" if args.host == "envoy" else "Kong engines"
        print(f"e2e [{args.host}]: starting the stack (IdP, echo, {gw} strict + optional; state {s.state})", flush=True)
        try:
            s.start()
        except Exception as e:
            print(f"FAIL  the stack did not start: {e}")
            results.append(("stack start", False))
            selected = []
        else:
            print(f"e2e [{args.host}]: up in {time.monotonic() - t0:.1f}s: IdP {s.idp_url}, {gw} strict :{s.ports['envoy-strict']}, "
                  f"optional :{s.ports['envoy-optional']}, logs in {s.logs}", flush=True)
        run_cases(Run(s, full_run=len(selected) + len(other_host) == len(CASES), kind=args.host), selected, results)
    except KeyboardInterrupt:
        interrupted = True
        print("\ne2e: interrupted")
    finally:
        s.stop()
    passed, failed, skipped = count(results)
    extra = f", {skipped} skipped" if skipped else ""
    print(f"{passed} passed, {failed} failed{extra} in {time.monotonic() - t0:.1f}s"
          + (f" on {args.host}" + (f", {len(other_host)} not applicable" if other_host else ""))
          + (f"  (logs: {s.logs})" if failed else ""))
    if interrupted:
        return 130
    return 1 if failed else 0


# ---- external mode --------------------------------------------------------------------------
def gateway_kind(name):
    return "kong" if name.lower().startswith("kong") else "envoy"


def wait_ready(ext, names, timeout):
    """Polls the IdP (discovery answers 200) and each gateway (a request with cert A and no token
    gets any answer but 404/502/503/504, which a gateway still starting gives) until `timeout`
    s. Prints one line each; returns the names of the gateways that answered (and whether the IdP did)."""
    deadline = time.monotonic() + timeout
    idp_ready = False
    ready, last = set(), {}
    while True:
        if not idp_ready:
            try:
                r = ext.idp("GET", "/.well-known/openid-configuration")
                idp_ready = r.status == 200
                last["IdP"] = ext.idp_url, (r.status or r.error)
            except OSError as e:
                last["IdP"] = ext.idp_url, f"{type(e).__name__}: {e}"
            if idp_ready:
                print(f"e2e: IdP {ext.idp_url} ready", flush=True)
        for name in names:
            if name in ready:
                continue
            try:
                r = ext.request(name, "/", cert="a")
                answer = r.status or r.error
            except OSError as e:
                r, answer = None, f"{type(e).__name__}: {e}"
            last[name] = ext.gateway_url(name), answer
            if r is not None and r.status is not None and r.status not in (404, 502, 503, 504):
                ready.add(name)
                print(f"e2e: gateway {name} {ext.gateway_url(name)} ready (cert A, no token: {r.status})", flush=True)
        if (idp_ready and len(ready) == len(names)) or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    for what, (url, answer) in last.items():
        if (what == "IdP" and not idp_ready) or (what != "IdP" and what not in ready):
            print(f"e2e: {what} {url} not ready after {timeout:.0f}s (last: {answer})", flush=True)
    return idp_ready, ready


def main_external(ap, args, selected):
    """The cases against gateways someone else started: each applicable case once per gateway."""
    if not (args.pki and args.idp and args.gateway):
        ap.error("--external needs --pki DIR, --idp URL and at least one --gateway NAME=URL")
    gateways, resolve = {}, {}
    for spec in args.gateway:
        name, sep, url = spec.partition("=")
        if not sep or not name or name in gateways:
            ap.error(f"--gateway {spec!r}: expected NAME=URL with a name not used before")
        gateways[name] = url
    for spec in args.resolve:
        host, sep, addr = spec.partition("=")
        if not sep or not host or not addr:
            ap.error(f"--resolve {spec!r}: expected HOST=ADDRESS")
        resolve[host] = addr
    try:
        probe = stack.External(args.pki, args.idp, gateways, resolve)
    except ValueError as e:
        ap.error(str(e))
    if not (probe.pki / "thumbprints.txt").is_file():
        ap.error(f"--pki {args.pki}: no thumbprints.txt there (the directory tests/e2e/pki.sh makes)")

    t0 = time.monotonic()
    applicable = [(n, f) for n, f in selected if n not in NATIVE_ONLY]
    not_applicable = [n for n, _ in selected if n in NATIVE_ONLY]
    print(f"e2e (external): IdP {probe.idp_url}, PKI {probe.pki}, gateways: "
          + ", ".join(f"{n} {probe.gateway_url(n)}" for n in gateways), flush=True)
    if not_applicable:
        print(f"e2e: {len(not_applicable)} case(s) not applicable in external mode (they need processes of their own, "
              "the optional-mode Envoy or Envoy's admin interface; `run_tests.py` without --external runs them):")
        width = max(len(n) for n in not_applicable)
        for n in not_applicable:
            print(f"N/A   {n:<{width}}  ({NATIVE_ONLY[n]})")
    print("e2e: counter checks (Envoy's /stats) inside the cases run in native mode only", flush=True)

    idp_ready, ready = wait_ready(probe, list(gateways), args.wait)
    per_gateway = {}  # name -> results
    interrupted = False
    try:
        for name, url in gateways.items():
            kind = gateway_kind(name)
            print(f"\n== {name}: {probe.gateway_url(name)} ({kind}, strict) ==", flush=True)
            results = per_gateway.setdefault(name, [])
            if not (idp_ready and name in ready):
                print(f"FAIL  {name}: {'the IdP' if not idp_ready else 'the gateway'} was not ready (see above); its cases were not run")
                results.append(("ready", False))
                continue
            # The gateway under test is "strict" to the cases: every external gateway is strict-mode.
            ext = stack.External(args.pki, args.idp, {"strict": url}, resolve)
            run_cases(Run(ext, full_run=False, external=True, kind=kind), applicable, results)
    except KeyboardInterrupt:
        interrupted = True
        print("\ne2e: interrupted")
    print("\nsummary:")
    width = max(len(n) for n in gateways)
    for name in gateways:
        passed, failed, skipped = count(per_gateway.get(name, []))
        print(f"  {name:<{width}}  {passed} passed, {failed} failed"
              + (f", {skipped} skipped" if skipped else "") + f", {len(not_applicable)} not applicable")
    passed, failed, skipped = count([r for res in per_gateway.values() for r in res])
    extra = f", {skipped} skipped" if skipped else ""
    print(f"{passed} passed, {failed} failed{extra} in {time.monotonic() - t0:.1f}s")
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
