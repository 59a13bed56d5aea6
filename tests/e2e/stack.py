#!/usr/bin/env python3
"""The e2e stack: test IdP (oidc-provider), echo upstream and Envoys running the certbound filter,
all on 127.0.0.1 free ports, started and stopped by this module. Python stdlib only.

CLI (from the repo top):
    python3 tests/e2e/stack.py up [--detach] [--no-wasm] [--wasm PATH] [--envoy NAME=CONFIG.json ...]
    python3 tests/e2e/stack.py down | status
    python3 tests/e2e/stack.py token [--client client-a] [--resource URL] [--scope S]
    python3 tests/e2e/stack.py request [--envoy strict] [--cert a|b|c|none] [--token T] [PATH]
`up` stays in the foreground until Ctrl-C unless --detach; `down` stops a detached stack.
Default envoys: strict and optional (tests/e2e/configs/*.json). State: target/e2e/ (--state):
pki/ (certs, IdP signing key), logs/<name>.log, run/<name>.pid, envoy-<name>.yaml, state.json.

Library:
    with Stack(envoys={"strict": CONFIGS / "strict.json"}) as s:
        t = s.access_token("client-a", resource="https://api.example/jwt")
        r = s.request("strict", cert="a", token=t)   # Response(status, headers, body, error)
start() = prepare() + start_echo() + start_idp() + start_envoy() per Envoy (demo.py calls them one by
one); Stack(say=...) takes the progress lines. tests/e2e/run_tests.py and demo.py build on this.
External(pki, idp_url, {name: gateway_url}) has the same helpers for gateways and an IdP that run
elsewhere (run_tests.py --external, the docker-compose harness).
"""

import argparse
import atexit
import base64
import contextlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import ssl
import string
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
CONFIGS = HERE / "configs"
DEFAULT_STATE = TOP / "target" / "e2e"
DEFAULT_WASM = TOP / "target" / "wasm32-wasip1" / "release" / "certbound.wasm"
DEFAULT_ENVOYS = {"strict": CONFIGS / "strict.json", "optional": CONFIGS / "optional.json"}
ENVOY_BIN = Path(os.environ.get("ENVOY_BIN", TOP / ".tools" / "venv" / "bin" / "envoy"))
# Kong's Wasm engine, as ../shared/kong-engine/build.sh installs it (tools.sh --kong builds it).
KONG_ENGINE_DIR = Path(os.environ.get("KONG_ENGINE_DIR", Path.home() / ".cache" / "certbound" / "kong-engine"))
KONG_NGINX = KONG_ENGINE_DIR / "nginx" / "sbin" / "nginx"
KONG_TEMPLATE = HERE / "kong-engine.conf"
HOSTS = ("envoy", "kong")
IDP_HOST = "idp.localhost"  # the issuer's host name; nothing resolves it, every client dials 127.0.0.1
ENVOY_HOST = "localhost"  # a SAN of server.pem, checked by our client
LOCAL = "127.0.0.1"

def _load_renderer():
    # envoy/render.py, loaded by path: "render" on sys.path could shadow or be shadowed.
    spec = importlib.util.spec_from_file_location("certbound_envoy_render", TOP / "envoy" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_renderer()

# Which certificate each test client authenticates with at the IdP; the rest use secrets.
CLIENT_CERTS = {"client-a": "a", "client-b": "b", "client-c": "c", "client-d": "d"}
CLIENT_SECRETS = {
    "client-unbound": "client-unbound-secret",
    "gateway": "gateway-secret",
    "gateway-post": "gateway-post-secret",
    "client-dpop": "client-dpop-secret",
}


@dataclass
class Response:
    status: int | None  # None: no HTTP response at all (e.g. the TLS handshake was refused)
    headers: list = field(default_factory=list)  # [(lower-case name, value)], repeats kept
    body: bytes = b""
    error: str | None = None

    def header(self, name):
        """The first value of a header, or None."""
        return next((v for n, v in self.headers if n == name.lower()), None)

    def json(self):
        return json.loads(self.body)


def free_port():
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def decode_jwt(token):
    """(header, payload) of a JWS, unverified: for looking at what the IdP issued."""
    def part(p):
        return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    h, p, _ = token.split(".")
    return part(h), part(p)


class _Conn(http.client.HTTPSConnection):
    """Dials `host` (default 127.0.0.1) but sends SNI and checks the certificate for `sni`:
    nothing resolves idp.localhost."""

    def __init__(self, port, sni, host=LOCAL, **kw):
        super().__init__(host, port, **kw)
        self.sni = sni

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.sni)


def https(port, method, path, *, sni, ca, cert=None, headers=None, body=None, timeout=10.0, host=LOCAL):
    """One HTTPS/1.1 request to host:port (default 127.0.0.1), verifying the server as `sni`.
    cert: (pem, key) or None."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = _Conn(port, sni, host, context=ctx, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if not any(n.lower() == "host" for n, _ in hdrs):
            hdrs.insert(0, ("Host", f"{sni}:{port}"))
        if body is not None:
            hdrs.append(("Content-Length", str(len(body))))
        for n, v in hdrs:  # a list of pairs may repeat a header on purpose
            conn.putheader(n, v)
        conn.endheaders(body)
        r = conn.getresponse()
        return Response(r.status, [(n.lower(), v) for n, v in r.getheaders()], r.read())
    except (ssl.SSLError, ConnectionError, socket.timeout) as e:
        return Response(None, error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


class Proc:
    """A started process, recorded in run/<name>.pid so another process can stop it."""

    def __init__(self, name, pid, run_dir):
        self.name, self.pid, self.pidfile = name, pid, run_dir / f"{name}.pid"

    @staticmethod
    def start_time(pid):
        """Field 22 of /proc/<pid>/stat: tells our process from a later one that reused the pid.
        None when there is no such process, or only its zombie (dead, waiting for a reaper that
        may be slow: an orphan's is whatever runs as pid 1)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if len(fields) < 20 or fields[0] in ("Z", "X"):
            return None
        return fields[19]

    @classmethod
    def spawn(cls, name, argv, log, run_dir, cwd=None):
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            # Own session: a Ctrl-C in the terminal reaches us, and we stop the children in order.
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, start_new_session=True)
        proc = cls(name, p.pid, run_dir)
        proc.popen = p
        proc.pidfile.write_text(json.dumps({"pid": p.pid, "start": cls.start_time(p.pid), "argv": argv[:2]}))
        return proc

    def alive(self):
        if hasattr(self, "popen"):
            return self.popen.poll() is None
        return self.start_time(self.pid) is not None

    def stop(self, grace=5.0):
        if not hasattr(self, "popen"):
            return stop_pidfile(self.pidfile, grace)
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.pidfile.unlink(missing_ok=True)


def stop_pidfile(pidfile, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` s, the process a pid file names, if it is still the same one."""
    try:
        rec = json.loads(pidfile.read_text())
    except (OSError, ValueError):
        return
    pid = rec["pid"]
    if Proc.start_time(pid) == rec["start"] and rec["start"] is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it ended in between
            pidfile.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and Proc.start_time(pid) == rec["start"]:
            time.sleep(0.05)
        if Proc.start_time(pid) == rec["start"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and Proc.start_time(pid) == rec["start"]:
                time.sleep(0.05)
        try:  # reap it if it is our child (start_time already says a zombie is gone)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    pidfile.unlink(missing_ok=True)


class Stack:
    def __init__(self, state=DEFAULT_STATE, envoys=None, wasm=DEFAULT_WASM, log_level="info", say=None, host="envoy"):
        """envoys: {name: filter config path}: the gateways, each running the filter with that
        config. wasm: the filter, or None to run Envoy without it. host: "envoy" (Envoy 1.40)
        or "kong" (Kong's Wasm engine, nginx + ngx_wasm_module: kong-engine.conf); the
        gateways keep their names ("strict", ...) on both. say: where progress lines go
        (default: stderr); e.g. `lambda msg: None` to keep quiet."""
        if host not in HOSTS:
            raise ValueError(f"host {host!r}: expected one of {HOSTS}")
        self.host = host
        self.say = say or (lambda msg: print(msg, file=sys.stderr))
        self.state = Path(state).resolve()
        self.pki = self.state / "pki"
        self.logs = self.state / "logs"
        self.run = self.state / "run"
        self.envoy_configs = {n: Path(c).resolve() for n, c in (DEFAULT_ENVOYS if envoys is None else envoys).items()}
        self.wasm = Path(wasm).resolve() if wasm else None
        self.log_level = log_level
        self.procs = {}
        self.ports = {}
        self.kong_workers = {}  # gateway name -> (nginx workers, its log's size at the start)

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.prepare()
        try:
            self.start_echo(wait=False)
            self.start_idp()
            self._wait("echo", lambda: _tcp_open(self.ports["echo"]))
            for name, config in self.envoy_configs.items():
                self.start_envoy(name, config, wait=False)
            for name in self.envoy_configs:
                self._wait_envoy(name)
            self.save()
        except BaseException:
            self.stop()
            raise
        return self

    def prepare(self):
        """What start() does before starting anything: tools, the filter's presence, leftovers of
        an earlier run on this state dir stopped, the PKI, empty logs, ports. For a caller that
        starts the pieces one by one (start_echo, start_idp, start_envoy), as the demo does."""
        self._stop_on_exit()
        ensure_tools()
        if self.wasm and not self.wasm.is_file():
            raise RuntimeError(f"no filter at {self.wasm}: build it (cargo build --release --target wasm32-wasip1) or run with wasm=None / --no-wasm")
        down(self.state, say=self.say)  # leftovers of a run that was killed (one stack per state dir)
        subprocess.run(["bash", str(HERE / "pki.sh"), str(self.pki)], check=True, stdout=subprocess.DEVNULL)
        self.logs.mkdir(parents=True, exist_ok=True)
        for old in self.logs.glob("*.log"):  # each run's logs start empty; restarts within it append
            old.unlink()
        self.ports["idp"] = free_port()
        self.ports["echo"] = free_port()

    def start_echo(self, wait=True):
        self._spawn("echo", [sys.executable, str(HERE / "echo.py"), "--port", str(self.ports["echo"]), "--bind", LOCAL])
        if wait:
            self._wait("echo", lambda: _tcp_open(self.ports["echo"]))

    def start_idp(self):
        """Starts the IdP on its port (again, after stop_service("idp"): its signing key is kept,
        its in-memory tokens are not, so opaque tokens issued before are unknown afterwards)."""
        self._spawn("idp", ["node", str(HERE / "idp" / "server.mjs"), "--port", str(self.ports["idp"]),
                            "--state", str(self.pki), "--host", IDP_HOST, "--bind", LOCAL])
        self._wait("idp", lambda: self.idp("GET", "/.well-known/openid-configuration").status == 200)

    def stop_service(self, name):
        """Stops one piece: "idp", "echo" or "envoy-<name>" (e.g. to test an IdP outage)."""
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop()

    def start_envoy(self, name, config, wait=True, extra_vars=None, concurrency=2, warm=True):
        """Starts (or restarts, or adds) gateway `name` with filter config file `config`, whose
        ${VAR}s are filled from render_vars() plus extra_vars, with `concurrency` workers: an
        Envoy, or on host "kong" an nginx running Kong's engine (process "kong-<name>")."""
        if self.host == "kong":
            return self.start_kong(name, config, wait, extra_vars, concurrency, warm=warm)
        self.stop_service(f"envoy-{name}")
        self.envoy_configs[name] = Path(config).resolve()
        self.ports[f"envoy-{name}"] = free_port()
        self.ports[f"admin-{name}"] = free_port()
        yaml_path = self.state / f"envoy-{name}.yaml"
        yaml_path.write_text(render.render(self.render_vars(name, extra_vars), wasm=self.wasm is not None))
        self._spawn(f"envoy-{name}", [str(ENVOY_BIN), "-c", str(yaml_path), "--disable-hot-restart",
                                      "--concurrency", str(concurrency), "--log-level", self.log_level])
        if wait:
            self._wait_envoy(name)
            self.save()

    def gateway_proc(self, name):
        """The process name of gateway `name` ("envoy-strict", "kong-strict")."""
        return f"kong-{name}" if f"kong-{name}" in self.procs or self.host == "kong" else f"envoy-{name}"

    def kong_filter_config(self, name, extra=None):
        """The filter config of gateway `name` for Kong's engine: as for Envoy, with each
        `upstreams` value that names an Envoy cluster of envoy/envoy.yaml ("idp") replaced by
        the host:port it stands for (the engine dials IP:port; the URL keeps its host name for
        SNI and certificate checks)."""
        values = self.render_vars(name, extra)
        config = json.loads(render.filter_config_json(self.envoy_configs[name], values))
        clusters = {"idp": f"{LOCAL}:{self.ports['idp']}"}
        if isinstance(config.get("upstreams"), dict):
            config["upstreams"] = {k: clusters.get(v, v) for k, v in config["upstreams"].items()}
        return config

    def start_kong(self, name, config, wait=True, extra_vars=None, workers=2, wasm=None, filter_json=None, warm=True):
        """Starts (or restarts) gateway `name` on Kong's engine, whatever this stack's host:
        nginx with kong-engine.conf, the filter `wasm` (default: the stack's) and its config
        `filter_json` as the exact text to hand over (default: kong_filter_config()). warm:
        with a jwks_endpoint, ready once every worker has its keys (its first tick fetches
        them): on this engine a request that needs keys cannot wait for another's fetch, so
        the cases would otherwise depend on which worker takes a connection first."""
        proc = f"kong-{name}"
        self.stop_service(proc)
        if not KONG_NGINX.is_file():
            raise RuntimeError(f"no Kong engine at {KONG_NGINX}: build it with ../shared/kong-engine/build.sh "
                               "(or set KONG_ENGINE_DIR)")
        wasm = Path(wasm).resolve() if wasm else self.wasm
        if wasm is None:
            raise RuntimeError("host kong: the engine always runs the filter (wasm=None is for Envoy)")
        self.envoy_configs[name] = Path(config).resolve()
        self.ports[f"envoy-{name}"] = free_port()
        prefix = self.state / f"kong-{name}"
        prefix.mkdir(parents=True, exist_ok=True)
        if filter_json is None:
            filter_json = json.dumps(self.kong_filter_config(name, extra_vars), separators=(",", ":"))
        if len(filter_json) > 4000:
            # nginx reads at most 4096 bytes per config token (NGX_CONF_BUFFER); Kong itself
            # hands the config over from Lua, without this limit.
            raise RuntimeError(f"{name}: filter config of {len(filter_json)} bytes is too long for an nginx directive")
        warm = warm and '"jwks_endpoint"' in filter_json
        # An nginx quoted string: every backslash and quote escaped, so the JSON arrives intact.
        quoted = filter_json.replace("\\", "\\\\").replace("'", "\\'")
        values = {
            "WORKERS": str(workers), "ERROR_LOG": str(self.logs / f"{proc}.log"), "LOG_LEVEL": "info",
            "PID_FILE": str(prefix / "nginx.pid"), "PREFIX": str(prefix), "WASM_PATH": str(wasm),
            "CA_CERT": str(self.pki / "ca.pem"), "ACCESS_LOG": str(self.logs / f"{proc}.access.log"),
            "LISTEN_ADDRESS": LOCAL, "LISTEN_PORT": str(self.ports[f"envoy-{name}"]), "HTTP2": "on",
            "SERVER_CERT": str(self.pki / "server.pem"), "SERVER_KEY": str(self.pki / "server.key"),
            "UPSTREAM_ADDRESS": LOCAL, "UPSTREAM_PORT": str(self.ports["echo"]),
            "FILTER_CONFIG_NGINX": quoted,
        }
        conf = prefix / "nginx.conf"
        conf.write_text(string.Template(KONG_TEMPLATE.read_text()).substitute(values))
        log = self.logs / f"{proc}.log"
        self.kong_workers[name] = (workers, log.stat().st_size if log.exists() else 0, warm)
        self._spawn(proc, [str(KONG_NGINX), "-p", str(prefix), "-c", str(conf)])
        if wait:
            self._wait_envoy(name)
            self.save()

    def start_front(self, name, target):
        """Starts front Envoy `name` (tests/e2e/front-envoy.yaml): it requires a client certificate,
        sets x-forwarded-client-cert (SANITIZE_SET, with Subject, URI and DNS) and forwards to the
        Envoy `target` of this stack. Requests go through it as through any Envoy: request(name, ...)."""
        self.stop_service(f"envoy-{name}")
        self.ports[f"envoy-{name}"] = free_port()
        self.ports[f"admin-{name}"] = free_port()
        yaml_path = self.state / f"envoy-{name}.yaml"
        yaml_path.write_text(render.fill_template(HERE / "front-envoy.yaml", {
            "LISTEN_ADDRESS": LOCAL, "LISTEN_PORT": str(self.ports[f"envoy-{name}"]),
            "ADMIN_PORT": str(self.ports[f"admin-{name}"]), "TARGET_ADDRESS": LOCAL,
            "TARGET_PORT": str(self.ports[f"envoy-{target}"]), "SERVER_CERT": str(self.pki / "server.pem"),
            "SERVER_KEY": str(self.pki / "server.key"), "CA_CERT": str(self.pki / "ca.pem"),
            # The front presents client B's certificate as its own (trusted_proxy_certificates).
            "PROXY_CERT": str(self.pki / "client-b.pem"), "PROXY_KEY": str(self.pki / "client-b.key")}))
        self._spawn(f"envoy-{name}", [str(ENVOY_BIN), "-c", str(yaml_path), "--disable-hot-restart",
                                      "--concurrency", "1", "--log-level", self.log_level])
        # Always an Envoy, in front of either host's gateway.
        self._wait(f"envoy-{name}", lambda: self.admin_ready(name))

    def render_vars(self, name, extra=None):
        v = {
            "LISTEN_ADDRESS": LOCAL, "LISTEN_PORT": self.ports[f"envoy-{name}"], "ADMIN_PORT": self.ports.get(f"admin-{name}", 0),
            "SERVER_CERT": self.pki / "server.pem", "SERVER_KEY": self.pki / "server.key", "CA_CERT": self.pki / "ca.pem",
            "UPSTREAM_ADDRESS": LOCAL, "UPSTREAM_PORT": self.ports["echo"],
            "IDP_ADDRESS": LOCAL, "IDP_PORT": self.ports["idp"], "IDP_HOST": IDP_HOST,
            "IDP_URL": self.idp_url, "IDP_AUTHORITY": f"{IDP_HOST}:{self.ports['idp']}",
            "WASM_PATH": self.wasm or "", "FILTER_CONFIG": self.envoy_configs[name],
            # The origin clients use (DPoP configs set it as dpop_external_url).
            "GATEWAY_ORIGIN": f"https://{ENVOY_HOST}:{self.ports[f'envoy-{name}']}",
        }
        v.update(extra or {})
        return {k: str(x) for k, x in v.items()}

    def stop(self):
        """Stops everything this object started, Envoys first."""
        for name in sorted(self.procs, key=lambda n: not n.startswith(("envoy-", "kong-"))):
            self.procs[name].stop()
        self.procs.clear()

    def save(self):
        (self.state / "state.json").write_text(json.dumps(
            {"ports": self.ports, "host": self.host, "envoys": {n: str(c) for n, c in self.envoy_configs.items()},
             "wasm": str(self.wasm) if self.wasm else None}, indent=1))

    @classmethod
    def attach(cls, state=DEFAULT_STATE):
        """A Stack for one already running (started by `up --detach` or another process): helpers only."""
        rec = json.loads((Path(state).resolve() / "state.json").read_text())
        s = cls(state, host=rec.get("host", "envoy"))
        s.ports, s.envoy_configs = rec["ports"], {n: Path(c) for n, c in rec["envoys"].items()}
        return s

    def _spawn(self, name, argv):
        log = self.logs / f"{name}.log"
        self.procs[name] = Proc.spawn(name, argv, log, self.run, cwd=TOP)
        self.say(f"stack: started {name} (pid {self.procs[name].pid}), log {log}")

    def _wait(self, name, ready, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                raise RuntimeError(f"{name} exited during start-up; end of {self.logs / (name + '.log')}:\n{self.log_tail(name)}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s; end of its log:\n{self.log_tail(name)}")

    def _wait_envoy(self, name):
        if f"kong-{name}" in self.procs:
            # The listener accepts once the master has bound it, but each worker compiles the
            # module first (seconds, on a busy machine more): ready once every worker's filter
            # has taken its config, or refused it (the broken-config cases).
            proc = f"kong-{name}"
            log = self.logs / f"{proc}.log"
            workers, offset, warm = self.kong_workers.get(name, (1, 0, False))

            def configured():
                text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
                done = sum(text.count(m) for m in ("] configured: ", "invalid configuration"))
                if warm and "invalid configuration" not in text:
                    done = min(done, text.count("] JWKS refreshed"))
                return done >= workers and _tcp_open(self.ports[f"envoy-{name}"])
            self._wait(proc, configured, timeout=60.0)
            return
        # /ready answers 200 once listeners and clusters are initialised (the wasm VM loaded).
        self._wait(f"envoy-{name}", lambda: self.admin_ready(name))

    def log_tail(self, name, lines=30):
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _stop_on_exit(self):
        atexit.register(self.stop)
        # SIGTERM would end the interpreter without atexit; make it an ordinary exit instead.
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            try:
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            except ValueError:  # not the main thread
                pass

    # ---- talking to the pieces ------------------------------------------------------------
    @property
    def idp_url(self):
        return f"https://{IDP_HOST}:{self.ports['idp']}"

    def thumbprints(self):
        """{'a': x5t#S256 of client-a.pem, 'b': ..., 'x': ...} as pki.sh computed them with openssl."""
        pairs = (line.split() for line in (self.pki / "thumbprints.txt").read_text().splitlines())
        return {n.removeprefix("client-"): t for n, t in pairs}

    def cert(self, which):
        """(pem, key) of client cert 'a', 'b', 'c', 'd' or 'x' (pki.sh); None for None/'none'."""
        if which in (None, "none"):
            return None
        return self.pki / f"client-{which}.pem", self.pki / f"client-{which}.key"

    def idp(self, method, path, *, form=None, cert=None, basic=None, headers=None):
        hdrs = dict(headers or {})
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if basic:
            # RFC 6749 2.3.1: form-encode id and secret before Basic.
            user, pw = (urllib.parse.quote_plus(x) for x in basic)
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        host, port, sni = self.idp_endpoint()
        return https(port, method, path, sni=sni, host=host, ca=self.pki / "ca.pem",
                     cert=self.cert(cert), headers=hdrs, body=body)

    def idp_endpoint(self):
        """(address to dial, port, TLS name) of the IdP."""
        return LOCAL, self.ports["idp"], IDP_HOST

    def _client_auth(self, client, form, auth="basic"):
        """Adds client authentication for `client`: its cert (mTLS clients) or its secret."""
        if client in CLIENT_CERTS:
            form["client_id"] = client
            return {"cert": CLIENT_CERTS[client]}
        secret = CLIENT_SECRETS[client]
        if auth == "post":
            form.update(client_id=client, client_secret=secret)
            return {}
        return {"basic": (client, secret)}

    def token(self, client="client-a", resource=None, scope="accounts:read accounts:write", cert=None):
        """Token response (dict) for the client_credentials grant; raises on an error answer.
        cert overrides the certificate sent (e.g. 'b' for client-a, or 'c' for client-unbound)."""
        form = {"grant_type": "client_credentials"}
        if resource:
            form["resource"] = resource
        if scope:
            form["scope"] = scope
        kw = self._client_auth(client, form)
        if cert is not None:
            kw["cert"] = cert
        r = self.idp("POST", "/token", form=form, **kw)
        if r.status != 200:
            raise RuntimeError(f"token request for {client} failed: {r.status} {r.error or r.body.decode(errors='replace')}")
        return r.json()

    def access_token(self, client="client-a", resource="https://api.example/jwt", **kw):
        return self.token(client, resource, **kw)["access_token"]

    def dpop_proof(self, key, htu, htm="GET", token=None, nonce=None):
        """A DPoP proof made by npm `dpop` (tests/e2e/idp/dpop_client.mjs) with the key pair in
        file `key` (made on first use): for `htm htu`, with `ath` of `token` and `nonce` if given."""
        argv = ["node", str(HERE / "idp" / "dpop_client.mjs"), "proof", "--key", str(key), "--htm", htm, "--htu", htu]
        if token is not None:
            argv += ["--token", token]
        if nonce is not None:
            argv += ["--nonce", nonce]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"dpop_client.mjs failed: {out.stderr.strip()[-300:]}")
        return out.stdout.strip()

    def dpop_token(self, key, resource="https://api.example/jwt", scope="accounts:read accounts:write"):
        """Token response for client-dpop: a token bound to the key pair in file `key` (cnf.jkt)."""
        form = {"grant_type": "client_credentials", "resource": resource, "scope": scope}
        proof = self.dpop_proof(key, f"{self.idp_url}/token", "POST")
        r = self.idp("POST", "/token", form=form, basic=("client-dpop", CLIENT_SECRETS["client-dpop"]),
                     headers={"DPoP": proof})
        if r.status != 200:
            raise RuntimeError(f"DPoP token request failed: {r.status} {r.error or r.body.decode(errors='replace')}")
        return r.json()

    def envoy_url(self, envoy):
        """The origin clients use for Envoy `envoy` (what a DPoP proof's htu starts with)."""
        return f"https://{ENVOY_HOST}:{self.ports[f'envoy-{envoy}']}"

    def introspect(self, token, client="gateway", auth=None):
        """Introspection Response. auth: 'basic' or 'post' (default: what the client is registered for)."""
        auth = auth or ("post" if client == "gateway-post" else "basic")
        form = {"token": token}
        return self.idp("POST", "/token/introspection", form=form, **self._client_auth(client, form, auth))

    def revoke(self, token, client="client-a"):
        form = {"token": token}
        return self.idp("POST", "/token/revocation", form=form, **self._client_auth(client, form))

    def request(self, envoy="strict", path="/", *, cert=None, token=None, method="GET", headers=None, body=None, scheme="Bearer"):
        """A request through Envoy `envoy` with client cert 'a'/'b'/'c'/None. headers: dict or [(n, v)]."""
        hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if token is not None:
            hdrs.append(("Authorization", f"{scheme} {token}"))
        return https(self.ports[f"envoy-{envoy}"], method, path, sni=ENVOY_HOST, ca=self.pki / "ca.pem",
                     cert=self.cert(cert), headers=hdrs, body=body)

    def admin_ready(self, envoy):
        return self.admin(envoy, "/ready").status == 200

    def admin(self, envoy, path):
        """GET path on Envoy `envoy`'s admin interface (Kong's engine has none)."""
        if f"admin-{envoy}" not in self.ports:
            raise RuntimeError(f"{envoy}: no admin interface (on Kong's engine, Kong's Status API would serve the counters)")
        conn = http.client.HTTPConnection(LOCAL, self.ports[f"admin-{envoy}"], timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return Response(r.status, [(n.lower(), v) for n, v in r.getheaders()], r.read())
        finally:
            conn.close()


class External(Stack):
    """Gateways and an IdP that run elsewhere (e.g. the docker-compose harness): Stack's helpers
    (tokens, introspection, revocation, requests through a gateway) and nothing that starts,
    stops or reads logs.
        ext = External("/pki", "https://idp:8443", {"kong-chain": "https://kong:8443/chain"})
        ext.request("kong-chain", "/accounts", cert="a", token=t)  # GET https://kong:8443/chain/accounts
    pki: the directory pki.sh made (ca.pem, client certificates, thumbprints.txt). A gateway URL
    may end in a path prefix; request paths go below it. resolve: {host name: address to dial
    instead}, like curl --resolve (e.g. {"idp.localhost": "127.0.0.1"} for a native stack);
    the name is still the one sent as SNI and verified in the server's certificate."""

    def __init__(self, pki, idp_url, gateways, resolve=None):
        super().__init__(say=lambda msg: None)
        self.pki = Path(pki).resolve()
        self.logs = None  # not ours to read
        self.resolve = dict(resolve or {})
        self._idp = _https_url(idp_url, "IdP")
        if self._idp[2]:
            raise ValueError(f"IdP URL {idp_url!r}: expected no path (the issuer)")
        self.gateways = {name: _https_url(url, f"gateway {name}") for name, url in gateways.items()}

    def start(self):
        raise RuntimeError("External: the gateways and the IdP run elsewhere; nothing to start")

    @property
    def idp_url(self):
        host, port, _ = self._idp
        return f"https://{host}" + ("" if port == 443 else f":{port}")

    def gateway_url(self, name):
        host, port, prefix = self.gateways[name]
        return f"https://{host}" + ("" if port == 443 else f":{port}") + prefix

    def idp_endpoint(self):
        host, port, _ = self._idp
        return self.resolve.get(host, host), port, host

    def request(self, envoy="strict", path="/", *, cert=None, token=None, method="GET", headers=None, body=None, scheme="Bearer"):
        """A request through gateway `envoy` (a name given to the constructor), as Stack.request."""
        host, port, prefix = self.gateways[envoy]
        hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if token is not None:
            hdrs.append(("Authorization", f"{scheme} {token}"))
        return https(port, method, prefix + path, sni=host, host=self.resolve.get(host, host), ca=self.pki / "ca.pem",
                     cert=self.cert(cert), headers=hdrs, body=body)

    def admin(self, envoy, path):
        raise RuntimeError("External: no access to a gateway's admin interface")


def _https_url(url, what):
    """(host, port, path prefix without a trailing /) of an https:// URL."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "https" or not u.hostname or u.query or u.fragment:
        raise ValueError(f"{what}: expected https://HOST[:PORT][/PREFIX], got {url!r}")
    return u.hostname, u.port or 443, u.path.rstrip("/")


def _tcp_open(port):
    with socket.create_connection((LOCAL, port), timeout=1):
        return True


def ensure_tools():
    """Runs tests/e2e/tools.sh when Envoy or the IdP's packages are missing."""
    if not ENVOY_BIN.exists() or not (HERE / "idp" / "node_modules" / "oidc-provider").is_dir():
        print("stack: tools missing, running tests/e2e/tools.sh", file=sys.stderr)
        subprocess.run(["bash", str(HERE / "tools.sh")], check=True)


def down(state=DEFAULT_STATE, say=None):
    """Stops every process a stack on this state dir recorded in run/*.pid (one started by another
    process, e.g. `up --detach`, or left behind by a killed run). Returns how many pid files it handled."""
    say = say or (lambda msg: print(msg, file=sys.stderr))
    run = Path(state).resolve() / "run"
    pidfiles = sorted(run.glob("*.pid"), key=lambda p: not p.name.startswith(("envoy-", "kong-")))  # gateways first: they call the IdP
    for pidfile in pidfiles:
        say(f"stack: stopping {pidfile.stem}")
        stop_pidfile(pidfile)
    return len(pidfiles)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", default=str(DEFAULT_STATE))
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the stack")
    up.add_argument("--envoy", action="append", metavar="NAME=CONFIG", help="an Envoy with this filter config (repeatable)")
    up.add_argument("--wasm", default=str(DEFAULT_WASM))
    up.add_argument("--no-wasm", action="store_true", help="Envoy without the filter (plumbing only)")
    up.add_argument("--detach", action="store_true", help="leave it running; stop with `down`")
    up.add_argument("--log-level", default="info")
    sub.add_parser("down", help="stop a detached stack")
    sub.add_parser("status", help="ports and processes")
    tok = sub.add_parser("token", help="print an access token")
    tok.add_argument("--client", default="client-a")
    tok.add_argument("--resource", default="https://api.example/jwt")
    tok.add_argument("--scope", default="accounts:read accounts:write")
    req = sub.add_parser("request", help="send a request through an Envoy, print status, headers and body")
    req.add_argument("path", nargs="?", default="/")
    req.add_argument("--envoy", default="strict")
    req.add_argument("--cert", default="a", choices=["a", "b", "c", "d", "x", "none"])
    req.add_argument("--token")
    args = ap.parse_args(argv)

    if args.cmd == "down":
        down(args.state)
        return
    if args.cmd == "up":
        envoys = dict(e.split("=", 1) for e in args.envoy) if args.envoy else None
        s = Stack(args.state, envoys=envoys, wasm=None if args.no_wasm else args.wasm, log_level=args.log_level).start()
        print(json.dumps(s.ports, indent=1))
        if args.detach:
            atexit.unregister(s.stop)
            return
        print("stack: up; Ctrl-C to stop", file=sys.stderr)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        return
    s = Stack.attach(args.state)
    if args.cmd == "status":
        for pidfile in sorted(s.run.glob("*.pid")):
            rec = json.loads(pidfile.read_text())
            print(f"{pidfile.stem}: pid {rec['pid']} {'running' if Proc.start_time(rec['pid']) == rec['start'] else 'GONE'}")
        print(json.dumps(s.ports, indent=1))
        print(f"idp: {s.idp_url} (dial 127.0.0.1:{s.ports['idp']})")
    elif args.cmd == "token":
        print(s.access_token(args.client, args.resource, scope=args.scope))
    elif args.cmd == "request":
        r = s.request(args.envoy, args.path, cert=args.cert, token=args.token)
        print(r.status if r.status else f"no response: {r.error}")
        for n, v in r.headers:
            print(f"{n}: {v}")
        print()
        sys.stdout.write(r.body.decode(errors="replace"))


if __name__ == "__main__":
    main()
