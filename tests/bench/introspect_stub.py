#!/usr/bin/env python3
"""A stand-in for the IdP's introspection endpoint (RFC 7662) during `make bench`, counting calls.

    python3 introspect_stub.py --port P --cert server.pem --key server.key --tokens tokens.json

HTTPS on 127.0.0.1:P (the filter's `idp` cluster verifies it as idp.localhost). tokens.json maps
the SHA-256 (hex) of each opaque token the harness made to its introspection answer; any other
token is inactive. POST /introspect (client_secret_basic gateway:gateway-secret) answers;
GET /counts gives {"total": n, "by_token": {sha256: n}} so the harness can tell how often the
filter asked about each token. Never logs a token. Python stdlib only.
"""

import argparse
import base64
import hashlib
import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPECTED_AUTH = "Basic " + base64.b64encode(b"gateway:gateway-secret").decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--tokens", required=True)
    args = ap.parse_args()
    with open(args.tokens) as f:
        answers = json.load(f)
    counts, total, lock = {}, [0], threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path != "/counts":
                return self.reply(404, {"error": "not_found"})
            with lock:
                return self.reply(200, {"total": total[0], "by_token": dict(counts)})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if self.path != "/introspect":
                return self.reply(404, {"error": "not_found"})
            if self.headers.get("Authorization") != EXPECTED_AUTH:
                return self.reply(401, {"error": "invalid_client"})
            token = urllib.parse.parse_qs(body).get("token", [""])[0]
            digest = hashlib.sha256(token.encode()).hexdigest()
            with lock:
                total[0] += 1
                counts[digest] = counts.get(digest, 0) + 1
            self.reply(200, answers.get(digest, {"active": False}))

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
