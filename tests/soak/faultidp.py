#!/usr/bin/env python3
"""A fault-injecting HTTPS proxy between Envoy and the test IdP, for tests/soak/soak.py.

    python3 tests/soak/faultidp.py --port P --control-port C --pki DIR --idp-port I
        [--idp-host idp.localhost] [--issuer URL] [--thumbprint-a X5T]

Serves HTTPS on 127.0.0.1:P with the test PKI's server certificate (SAN idp.localhost), so the
filter's TLS cluster to the IdP still verifies it, and passes requests through to the real IdP on
127.0.0.1:I, unless told otherwise. What it does is chosen per route at run time through a plain
HTTP control port on 127.0.0.1:C:

    GET /mode?route=jwks|introspection|other&mode=MODE[&delay=SECONDS]
    GET /down      close the listener and every open connection (connect: refused)
    GET /up        listen again on the same port
    GET /stats     {"route mode outcome": count}, JSON
    GET /reset-stats

Modes: pass (to the IdP), slow (pass, `delay` s late), reset (close the connection, no answer),
status500, html (200 text/html), truncated (200, half of the IdP's JSON, consistent length),
cut (200, Content-Length of the full answer, half of it sent, then the connection closed), huge
(the IdP's JSON with a padding member: 2.5 x the filter's limit), huge_tail (the IdP's complete
JSON, then blanks up to the limit, then bytes that make the whole body invalid JSON), active_string
(introspection: `active` as a JSON string), nokey (JWKS whose keys are all unusable for signatures),
flap (alternates per request: pass, status500, pass, reset, pass, html, ...), stub (introspection
answered here at once: tokens starting with `soak-active-` are active and bound to client A,
everything else inactive; nothing reaches the IdP).

Python stdlib only. Logs one line per request (route, mode, outcome): never a header or a body,
which carry tokens and secrets.
"""

import argparse
import http.client
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCAL = "127.0.0.1"
LIMITS = {"introspection": 64 * 1024, "jwks": 256 * 1024, "other": 64 * 1024}
MODES = {"pass", "slow", "reset", "status500", "html", "truncated", "cut", "huge", "huge_tail",
         "active_string", "nokey", "flap", "stub"}
FLAP_FAILURES = ("status500", "reset", "html")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def route_of(path):
    p = path.split("?", 1)[0]
    if p.startswith("/jwks"):
        return "jwks"
    if p == "/token/introspection":
        return "introspection"
    return "other"


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.modes = {"jwks": ("pass", 0.0), "introspection": ("pass", 0.0), "other": ("pass", 0.0)}
        self.flap = {}  # route -> requests seen in flap mode
        self.stats = {}

    def mode(self, route):
        with self.lock:
            mode, delay = self.modes[route]
            if mode == "flap":
                n = self.flap.get(route, 0)
                self.flap[route] = n + 1
                mode = "pass" if n % 2 == 0 else FLAP_FAILURES[(n // 2) % len(FLAP_FAILURES)]
            return mode, delay

    def count(self, route, mode, outcome):
        with self.lock:
            key = f"{route} {mode} {outcome}"
            self.stats[key] = self.stats.get(key, 0) + 1


class FaultProxy:
    def __init__(self, args):
        self.args = args
        self.state = State()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(f"{args.pki}/server.pem", f"{args.pki}/server.key")
        self.up_ctx = ssl.create_default_context(cafile=f"{args.pki}/ca.pem")
        self.listener = None
        self.conns = {}  # id -> the connection's current socket object (raw, then TLS)
        self.conns_lock = threading.Lock()
        self.listen_lock = threading.Lock()

    # ---- listener ------------------------------------------------------------------------
    def up(self):
        with self.listen_lock:
            if self.listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LOCAL, self.args.port))
            s.listen(256)
            self.listener = s
            threading.Thread(target=self.accept_loop, args=(s,), daemon=True).start()

    def down(self):
        with self.listen_lock:
            s, self.listener = self.listener, None
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        with self.conns_lock:
            conns = list(self.conns.values())
        for c in conns:
            abort(c)

    def accept_loop(self, s):
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            if self.listener is not s:
                abort(conn)
                return
            threading.Thread(target=self.serve_conn, args=(conn,), daemon=True).start()

    # ---- one connection from Envoy -------------------------------------------------------
    def serve_conn(self, raw):
        key = id(raw)
        with self.conns_lock:
            self.conns[key] = raw
        upstream = [None]
        tls = None
        try:
            raw.settimeout(60)
            tls = self.ctx.wrap_socket(raw, server_side=True)  # takes over raw's descriptor
            with self.conns_lock:
                self.conns[key] = tls
            if self.listener is None:  # went down during the handshake
                return
            rfile = tls.makefile("rb", buffering=65536)
            while True:
                req = read_request(rfile)
                if req is None:
                    return
                if not self.handle(tls, req, upstream):
                    return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            with self.conns_lock:
                self.conns.pop(key, None)
            if upstream[0] is not None:
                upstream[0].close()
            for sock in (tls, raw):
                try:
                    if sock is not None:
                        sock.close()
                except OSError:
                    pass

    def handle(self, tls, req, upstream):
        """Answers one request; False: the connection is finished."""
        method, path, headers, body = req
        route = route_of(path)
        mode, delay = self.state.mode(route)
        if mode == "reset":
            self.state.count(route, mode, "reset")
            abort(tls)
            return False
        if mode == "status500":
            return self.reply(tls, route, mode, 500, "application/json", b'{"error":"server_error"}')
        if mode == "html":
            return self.reply(tls, route, mode, 200, "text/html",
                              b"<!doctype html><html><body><h1>Service temporarily unavailable</h1></body></html>")
        if mode == "stub" and route == "introspection":
            return self.reply(tls, route, mode, 200, "application/json", self.stub_answer(body))
        if mode == "nokey" and route == "jwks":
            return self.reply(tls, route, mode, 200, "application/json", self.no_usable_key(upstream))
        if mode == "slow":
            time.sleep(delay or 3.0)
        try:
            status, ctype, data = self.forward(method, path, headers, body, upstream)
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            self.state.count(route, mode, f"idp-unreachable {type(e).__name__}")
            return self.reply(tls, route, mode, 502, "application/json", b'{"error":"bad_gateway"}')
        limit = LIMITS[route]
        if mode == "truncated":
            data = data[: max(1, len(data) // 2)]
        elif mode == "cut":
            self.state.count(route, mode, "cut")
            head = response_head(status, ctype, len(data))
            try:
                tls.sendall(head + data[: len(data) // 2])
            except OSError:
                pass
            abort(tls)
            return False
        elif mode == "huge":
            data = padded(data, int(limit * 2.5))
        elif mode == "huge_tail":
            # The complete answer, blanks up to past the limit, then a stray token: the body as
            # a whole is not JSON, but its first `limit` bytes parse.
            data = data + b" " * (limit + 16 - len(data)) + b'"not json"'
        elif mode == "active_string" and route == "introspection":
            try:
                doc = json.loads(data)
                if isinstance(doc, dict) and "active" in doc:
                    doc["active"] = "true" if doc["active"] is True else "false"
                data = json.dumps(doc).encode()
            except ValueError:
                pass
        return self.reply(tls, route, mode, status, ctype, data)

    def reply(self, tls, route, mode, status, ctype, data):
        self.state.count(route, mode, str(status))
        try:
            tls.sendall(response_head(status, ctype, len(data)) + data)
        except OSError:
            return False
        return True

    def forward(self, method, path, headers, body, upstream):
        """The IdP's answer to the same request: (status, content type, body)."""
        for attempt in (0, 1):  # a kept-alive connection the IdP closed meanwhile: once more
            conn = upstream[0]
            if conn is None:
                conn = upstream[0] = _Conn(self.args.idp_port, self.args.idp_host, context=self.up_ctx, timeout=30)
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for n, v in headers:
                    if n.lower() not in HOP_BY_HOP and n.lower() != "content-length":
                        conn.putheader(n, v)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                r = conn.getresponse()
                data = r.read()
                return r.status, r.getheader("content-type", "application/json"), data
            except (OSError, http.client.HTTPException):
                conn.close()
                upstream[0] = None
                if attempt:
                    raise
        raise OSError("unreachable")

    def stub_answer(self, body):
        form = urllib.parse.parse_qs(body.decode("ascii", "replace"))
        token = (form.get("token") or [""])[0]
        if not token.startswith("soak-active-"):
            return b'{"active":false}'
        now = int(time.time())
        return json.dumps({
            "active": True, "client_id": "client-a", "token_type": "Bearer",
            "scope": "accounts:read accounts:write", "aud": "https://api.example",
            "iss": self.args.issuer, "iat": now, "exp": now + 300,
            "cnf": {"x5t#S256": self.args.thumbprint_a},
        }).encode()

    def no_usable_key(self, upstream):
        """The IdP's keys made unusable for signatures: marked for encryption, plus an HMAC
        secret and a key type nobody verifies with."""
        keys = []
        try:
            status, _, data = self.forward("GET", "/jwks", [("Host", f"{self.args.idp_host}")], b"", upstream)
            if status == 200:
                keys = json.loads(data).get("keys", [])
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
            pass
        unusable = [{**k, "use": "enc"} for k in keys]
        unusable.append({"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": "c29hay1obWFjLXNlY3JldA"})
        unusable.append({"kty": "XYZ", "kid": "weird-1", "use": "sig"})
        return json.dumps({"keys": unusable}).encode()


class _Conn(http.client.HTTPSConnection):
    """Dials 127.0.0.1 but checks the IdP's certificate for its name (nothing resolves it)."""

    def __init__(self, port, sni, **kw):
        super().__init__(LOCAL, port, **kw)
        self.sni = sni

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.sni)


def read_request(rfile):
    line = rfile.readline(65537)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError("bad request line")
    method, path, _ = parts
    headers = []
    while True:
        h = rfile.readline(65537)
        if not h:
            return None
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
    body = rfile.read(length) if length else b""
    return method, path, headers, body


def response_head(status, ctype, length):
    reason = http.client.responses.get(status, "Status")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
            f"Cache-Control: no-store\r\n\r\n").encode("latin-1")


def padded(data, size):
    """The JSON object `data` with a "padding" member that makes it `size` bytes or more."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {"value": doc}
    doc["padding"] = "x" * max(0, size - len(data))
    return json.dumps(doc).encode()


def abort(sock):
    """Ends a connection at once, with SO_LINGER 0 (a TCP RST when the descriptor closes). The
    shutdown also wakes a thread reading from it: close() alone leaves the descriptor open while
    a makefile() reader holds it."""
    for step in (lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
                 lambda: socket.socket.shutdown(sock, socket.SHUT_RDWR), sock.close):
        try:
            step()
        except OSError:
            pass


def control_server(proxy, port):
    class Control(BaseHTTPRequestHandler):
        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(u.query))
            code, out = 200, {"ok": True}
            if u.path == "/mode":
                route, mode = q.get("route"), q.get("mode")
                if route not in proxy.state.modes or mode not in MODES:
                    code, out = 400, {"error": f"route {route!r} / mode {mode!r}"}
                else:
                    with proxy.state.lock:
                        proxy.state.modes[route] = (mode, float(q.get("delay", 0) or 0))
                        proxy.state.flap[route] = 0
                    print(f"faultidp: {route} -> {mode}", flush=True)
            elif u.path == "/down":
                proxy.down()
                print("faultidp: down", flush=True)
            elif u.path == "/up":
                proxy.up()
                print("faultidp: up", flush=True)
            elif u.path == "/stats":
                with proxy.state.lock:
                    out = dict(proxy.state.stats)
            elif u.path == "/reset-stats":
                with proxy.state.lock:
                    proxy.state.stats.clear()
            else:
                code, out = 404, {"error": "no such control"}
            data = json.dumps(out).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *a):
            pass

    ThreadingHTTPServer.daemon_threads = True
    return ThreadingHTTPServer((LOCAL, port), Control)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--pki", required=True)
    ap.add_argument("--idp-port", type=int, required=True)
    ap.add_argument("--idp-host", default="idp.localhost")
    ap.add_argument("--issuer", default="")
    ap.add_argument("--thumbprint-a", default="")
    args = ap.parse_args()
    proxy = FaultProxy(args)
    proxy.up()
    ctl = control_server(proxy, args.control_port)
    print(f"faultidp: listening on {LOCAL}:{args.port}, control on {LOCAL}:{args.control_port}, "
          f"IdP {LOCAL}:{args.idp_port}", flush=True)
    try:
        ctl.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
