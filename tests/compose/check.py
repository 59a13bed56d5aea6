#!/usr/bin/env python3
"""Checks the docker-compose harness (tests/compose/docker-compose.yml) without a Docker engine.

    python3 tests/compose/check.py [--no-make]          # make compose-check

1. `docker-compose -f tests/compose/docker-compose.yml config` validates the file and prints it
   normalised (Debian's docker-compose 1.29; installed with apt-get when missing).
2. From that normalised YAML (PyYAML, Debian's python3-yaml, which docker-compose depends on):
   - the services the harness promises are there;
   - every host path it bind-mounts exists in the repo; dist/ is the one exception: `make dist`
     makes it, and this script runs `make dist` when dist/ lacks certbound.wasm or
     certbound.meta.json (--no-make: fail instead);
   - every path a service's command names below a bind mount exists on the host (a path in a
     named volume is made at run time and only reported);
   - the rendered envoy.yaml lands where Envoy reads it, and what it names (certificates, the
     wasm) is mounted in the envoy service; the paths kong/kong.conf names are mounted in kong;
   - named volumes are declared, one-shot services are awaited with service_completed_successfully,
     and ports are published on 127.0.0.1 only.
Prints each check; on any failure, the reasons, and exits 1.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
COMPOSE_FILE = HERE / "docker-compose.yml"
DIST = TOP / "dist"
DIST_FILES = ("certbound.wasm", "certbound.meta.json")
BUILT_WASM = TOP / "target" / "wasm32-wasip1" / "release" / "certbound.wasm"
SERVICES = ("pki", "idp", "echo", "envoy-config", "envoy", "kong", "tests")
ONE_SHOTS = ("pki", "envoy-config")
# kong.conf keys whose values are paths inside the kong container.
KONG_PATH_KEYS = ("declarative_config", "wasm_filters_path", "ssl_cert", "ssl_cert_key",
                  "nginx_proxy_ssl_client_certificate", "lua_ssl_trusted_certificate",
                  "nginx_wasm_tls_trusted_certificate")
# render.py arguments of envoy-config that name files the envoy container opens.
ENVOY_PATH_VARS = ("SERVER_CERT", "SERVER_KEY", "CA_CERT", "WASM_PATH")
ABS_PATH = re.compile(r"(?<![\w.:/-])(/[\w.@+-]+(?:/[\w.@+-]+)*)")


class Checks:
    def __init__(self):
        self.problems = []

    def ok(self, what, detail=""):
        print(f"ok    {what}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, what, detail):
        self.problems.append(f"{what}: {detail}")
        print(f"FAIL  {what}: {detail}", flush=True)


def rel(path):
    try:
        return str(Path(path).relative_to(TOP))
    except ValueError:
        return str(path)


# ---- docker-compose and YAML ----------------------------------------------------------------
def ensure_docker_compose():
    exe = shutil.which("docker-compose")
    if exe:
        return exe
    print("==> compose-check: docker-compose is missing; installing Debian's package (apt-get install docker-compose)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for cmd in (sudo + ["apt-get", "update", "-qq"], sudo + ["apt-get", "install", "-y", "-qq", "docker-compose"]):
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"compose-check: `{' '.join(cmd)}` failed:\n{r.stderr.strip()}")
    exe = shutil.which("docker-compose")
    if not exe:
        sys.exit("compose-check: docker-compose still not on PATH after apt-get install docker-compose")
    return exe


def load_yaml(text):
    """The YAML as Python data: PyYAML here, or through Debian's /usr/bin/python3, which has
    python3-yaml whenever Debian's docker-compose is installed."""
    try:
        import yaml
        return yaml.safe_load(text)
    except ImportError:
        pass
    for py in ("/usr/bin/python3", shutil.which("python3")):
        if not py or Path(py).resolve() == Path(sys.executable).resolve():
            continue
        r = subprocess.run([py, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
                           input=text, capture_output=True, text=True)
        if r.returncode == 0:
            return json.loads(r.stdout)
    sys.exit("compose-check: no YAML parser: install Debian's python3-yaml (or PyYAML for this python3)")


# ---- the normalised compose data ------------------------------------------------------------
def mounts(service):
    """[(kind 'bind'|'volume', source, target, read_only)] of a service, short or long syntax."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            kind, src, dst, ro = v.get("type", "volume"), v.get("source", ""), v["target"], bool(v.get("read_only"))
        else:
            parts = v.split(":")
            if len(parts) == 1:
                kind, src, dst, ro = "volume", "", parts[0], False  # anonymous volume
            else:
                src, dst = parts[0], parts[1]
                ro = len(parts) > 2 and "ro" in parts[2].split(",")
                kind = "bind" if src.startswith(("/", ".", "~")) else "volume"
        out.append((kind, src, dst, ro))
    return out


def locate(service, path):
    """Where a container path of `service` lives: ('bind', host Path) or ('volume', name, path
    inside it), by the deepest mount that holds it; None if it is the image's own."""
    p = PurePosixPath(path)
    best = None
    for kind, src, dst, _ in mounts(service):
        d = PurePosixPath(dst)
        if p == d or d in p.parents:
            if best is None or len(d.parts) > len(PurePosixPath(best[2]).parts):
                best = (kind, src, dst)
    if best is None:
        return None
    kind, src, dst = best
    inner = p.relative_to(PurePosixPath(dst))
    if kind == "bind":
        return "bind", Path(src) / inner
    return "volume", src, str(inner)


def command_words(service):
    words = []
    for key in ("entrypoint", "command"):
        v = service.get(key)
        if isinstance(v, str):
            words.append(v)
        elif isinstance(v, list):
            words.extend(str(w) for w in v)
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, list):
        words.extend(str(w) for w in test)
    elif isinstance(test, str):
        words.append(test)
    return words


def ports(service):
    """[(host_ip, published, target)] of a service, short or long syntax."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), str(p.get("published", "")), str(p.get("target", ""))))
            continue
        spec = str(p).split("/")[0]
        parts = spec.split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))
    return out


# ---- the checks -----------------------------------------------------------------------------
def check_dist(c, make):
    missing = [f for f in DIST_FILES if not (DIST / f).is_file()]
    if missing and make:
        print(f"==> compose-check: dist/ lacks {', '.join(missing)}: running `make dist` (the folder the gateways mount)", flush=True)
        r = subprocess.run(["make", "--no-print-directory", "dist"], cwd=TOP)
        if r.returncode != 0:
            c.fail("dist/", "`make dist` failed")
            return
        missing = [f for f in DIST_FILES if not (DIST / f).is_file()]
    if missing:
        c.fail("dist/", f"no {', '.join(missing)}: run `make dist` first (the gateways mount dist/ as the filter folder)")
        return
    try:
        meta = json.loads((DIST / "certbound.meta.json").read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("config_schema"), dict):
            raise ValueError("no config_schema object")
    except ValueError as e:
        c.fail("dist/certbound.meta.json", f"not what Kong reads ({e}): run `make dist`")
        return
    size = (DIST / "certbound.wasm").stat().st_size
    c.ok("dist/", f"certbound.wasm ({size} bytes), certbound.meta.json (config_schema)")
    if BUILT_WASM.is_file() and BUILT_WASM.read_bytes() != (DIST / "certbound.wasm").read_bytes():
        print(f"note  dist/certbound.wasm differs from {rel(BUILT_WASM)}: run `make dist` to put the latest build in the harness", flush=True)


def check_bind_sources(c, services):
    seen, dist_used, before = [], False, len(c.problems)
    for name, svc in services.items():
        for kind, src, dst, _ in mounts(svc):
            if kind != "bind":
                continue
            host = Path(src)
            if not host.is_absolute():
                host = (HERE / host).resolve()
            try:
                host.resolve().relative_to(TOP)
            except ValueError:
                c.fail(f"{name}: bind mount {src}", "outside the repository")
                continue
            if host.resolve() == DIST or DIST in host.resolve().parents:
                dist_used = True
                continue  # check_dist
            if not host.exists():
                c.fail(f"{name}: bind mount {rel(host)} -> {dst}", "no such file or directory in the repo")
            else:
                seen.append(rel(host))
    if len(c.problems) == before:
        c.ok("bind-mounted repo paths exist", ", ".join(sorted(set(seen))))
    return dist_used


def check_volumes_declared(c, data, services):
    declared = set((data.get("volumes") or {}).keys())
    used = {src for svc in services.values() for kind, src, _, _ in mounts(svc) if kind == "volume" and src}
    if used - declared:
        c.fail("named volumes", f"used but not declared: {', '.join(sorted(used - declared))}")
    else:
        c.ok("named volumes declared", ", ".join(sorted(used)))


def check_path(c, where, service_name, service, path, volumes_seen):
    """A container path named by a command or a config: its bind-mounted host file must exist."""
    loc = locate(service, path)
    if loc is None:
        return None
    if loc[0] == "bind":
        host = loc[1]
        if not host.is_absolute():
            host = (HERE / host).resolve()
        if host == DIST or DIST in host.parents:
            if not host.exists():
                c.fail(where, f"{path} is {rel(host)}, which `make dist` did not make")
                return None
        elif not host.exists():
            c.fail(where, f"{path} is {rel(host)} in the repo, which does not exist")
            return None
        return rel(host)
    volumes_seen.add(f"{loc[1]}:{loc[2]}" if loc[2] != "." else loc[1])
    return None


def check_command_paths(c, services):
    files, volumes_seen, before = set(), set(), len(c.problems)
    for name, svc in services.items():
        for word in command_words(svc):
            for path in ABS_PATH.findall(word):
                found = check_path(c, f"{name}: command path", name, svc, path, volumes_seen)
                if found:
                    files.add(found)
    if len(c.problems) == before:
        c.ok("repo files named by commands exist", ", ".join(sorted(files)))
    if volumes_seen:
        print(f"info  made at run time in named volumes: {', '.join(sorted(volumes_seen))}", flush=True)


def check_envoy_render(c, services):
    """envoy-config renders for envoy: its output is envoy's -c file, its file paths are envoy's."""
    render, envoy = services["envoy-config"], services["envoy"]
    args = [str(w) for w in render.get("command") or []]
    try:
        out = args[args.index("-o") + 1]
    except (ValueError, IndexError):
        c.fail("envoy-config", "no `-o FILE` in its render.py command")
        return
    eargs = [str(w) for w in envoy.get("command") or []]
    try:
        conf = eargs[eargs.index("-c") + 1]
    except (ValueError, IndexError):
        c.fail("envoy", "no `-c FILE` in its command")
        return
    a, b = locate(render, out), locate(envoy, conf)
    if not (a and b and a[0] == "volume" and a == b):
        c.fail("envoy-config -> envoy", f"render.py writes {out} ({a}) but Envoy reads {conf} ({b}): not the same file of one volume")
    else:
        c.ok("rendered envoy.yaml is Envoy's config", f"volume {a[1]}, {a[2]}")
    named, vols, before = [], set(), len(c.problems)
    for word in args:
        key, sep, value = word.partition("=")
        if sep and key in ENVOY_PATH_VARS:
            if locate(envoy, value) is None:
                c.fail(f"envoy-config {key}", f"{value} is not mounted in the envoy service")
            else:
                found = check_path(c, f"envoy-config {key}", "envoy", envoy, value, vols)
                named.append(f"{key}={value}" + (f" ({found})" if found else ""))
    missing = [k for k in ENVOY_PATH_VARS if not any(w.startswith(k + "=") for w in args)]
    if missing:
        c.fail("envoy-config", f"no {', '.join(missing)} argument for render.py")
    if len(c.problems) == before:
        c.ok("paths in the rendered config are mounted in envoy", ", ".join(named))


def check_kong(c, services):
    kong = services["kong"]
    loc = locate(kong, "/etc/kong/kong.conf")
    conf_env = (kong.get("environment") or {}).get("KONG_CONF") if isinstance(kong.get("environment"), dict) else None
    if not loc or loc[0] != "bind" or conf_env:
        c.fail("kong", "kong/kong.conf is not mounted at /etc/kong/kong.conf (the path Kong reads by default)")
        return
    conf = Path(loc[1])
    if not conf.is_file():
        c.fail("kong", f"{rel(conf)} does not exist")
        return
    pki_sh = (TOP / "tests" / "e2e" / "pki.sh").read_text()
    named, before = [], len(c.problems)
    for line in conf.read_text().splitlines():
        m = re.match(r"\s*(\w+)\s*=\s*(.*?)\s*(?:#.*)?$", line)
        if not m or m[1] not in KONG_PATH_KEYS:
            continue
        for value in m[2].split(","):
            value = value.strip()
            if not value.startswith("/"):
                continue  # e.g. "system"
            where = locate(kong, value)
            if where is None:
                c.fail(f"kong.conf {m[1]}", f"{value} is not mounted in the kong service")
            elif where[0] == "volume":
                base = PurePosixPath(value).name
                if where[1] == "pki" and not re.search(rf"\b{re.escape(base)}\b", pki_sh):
                    c.fail(f"kong.conf {m[1]}", f"{value}: tests/e2e/pki.sh makes no {base}")
                else:
                    named.append(f"{m[1]}={value} (volume {where[1]})")
            else:
                found = check_path(c, f"kong.conf {m[1]}", "kong", kong, value, set())
                if found:
                    named.append(f"{m[1]}={value} ({found})")
    if len(c.problems) == before:
        c.ok("kong.conf paths are mounted in kong", ", ".join(named))


def check_depends(c, services):
    bad = []
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, how in deps.items():
            if dep in ONE_SHOTS and (how or {}).get("condition") != "service_completed_successfully":
                bad.append(f"{name} -> {dep}")
    if bad:
        c.fail("one-shot services", f"not awaited with condition service_completed_successfully: {', '.join(bad)}")
    else:
        c.ok("one-shots awaited with service_completed_successfully", ", ".join(ONE_SHOTS))


def check_ports(c, services):
    published, bad = [], []
    for name, svc in services.items():
        for host_ip, pub, target in ports(svc):
            (published if host_ip == "127.0.0.1" else bad).append(f"{name} {host_ip or '*'}:{pub}->{target}")
    if bad:
        c.fail("ports", f"published beyond 127.0.0.1: {', '.join(bad)}")
    else:
        c.ok("ports published on 127.0.0.1 only", ", ".join(published))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-make", action="store_true", help="fail when dist/ is missing instead of running `make dist`")
    args = ap.parse_args()
    c = Checks()

    exe = ensure_docker_compose()
    version = subprocess.run([exe, "version", "--short"], capture_output=True, text=True).stdout.strip()
    r = subprocess.run([exe, "-f", str(COMPOSE_FILE), "config"], cwd=TOP, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL  docker-compose {version} config: {rel(COMPOSE_FILE)} is invalid:\n{r.stderr.strip()}")
        return 1
    c.ok(f"docker-compose {version} config", f"{rel(COMPOSE_FILE)} is valid")
    data = load_yaml(r.stdout)
    services = data.get("services") or {}

    missing = [s for s in SERVICES if s not in services]
    if missing:
        c.fail("services", f"missing {', '.join(missing)} (has {', '.join(services)})")
        return 1
    c.ok("services", ", ".join(services))

    dist_used = check_bind_sources(c, services)
    if dist_used:
        check_dist(c, make=not args.no_make)
    check_volumes_declared(c, data, services)
    check_command_paths(c, services)
    check_envoy_render(c, services)
    check_kong(c, services)
    check_depends(c, services)
    check_ports(c, services)

    if c.problems:
        print(f"compose-check: FAILED, {len(c.problems)} problem(s):")
        for p in c.problems:
            print(f"  - {p}")
        return 1
    print(f"compose-check: {rel(COMPOSE_FILE)} passed every check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
