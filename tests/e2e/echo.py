#!/usr/bin/env python3
"""Echo upstream for the e2e tests: answers every request with 200 and a JSON description of it,
so a test sees exactly which headers the filter let through, added or removed.

    python3 tests/e2e/echo.py [--port 8080] [--bind 127.0.0.1]

Body: {"method": ..., "path": ... (with query), "headers": {lower-case name: [every value, in order]},
"body_length": n}. Repeated headers keep every value: a smuggled second copy must be visible.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's upstream connection pool expects

    def _echo(self):
        length = int(self.headers.get("content-length") or 0)
        body_length = len(self.rfile.read(length)) if length else 0
        headers = {}
        for name, value in self.headers.items():  # items() keeps duplicates, in arrival order
            headers.setdefault(name.lower(), []).append(value)
        out = json.dumps(
            {"method": self.command, "path": self.path, "headers": headers, "body_length": body_length},
            indent=1,
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _echo

    def log_message(self, fmt, *args):
        # Method, path and status only: request headers carry tokens.
        sys.stdout.write("%s %s\n" % (self.log_date_time_string(), fmt % args))
        sys.stdout.flush()

    def log_request(self, code="-", size="-"):
        self.log_message("%s %s %s", self.command, self.path.split("?", 1)[0], code)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--bind", default="127.0.0.1")
    args = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((args.bind, args.port), Echo)
    print("echo: listening on %s:%d" % (args.bind, args.port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
