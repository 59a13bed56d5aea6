#!/usr/bin/env python3
"""Checks `make oci`'s image and the Kubernetes manifests in deploy/ (what `make oci-check` runs).

    python3 deploy/check.py --image ghcr.io/certbound/certbound:0.1.0 --wasm dist/certbound.wasm \
        --layout dist/oci --archive dist/certbound-oci.tar [--no-envoy]

Installs what it needs when missing: skopeo (Debian's package, apt-get), a venv in
.tools/deploy-venv with PyYAML and jsonschema (pinned, PyPI), deploy/schemas/'s npm packages in
.tools/deploy-schemas (npm ci), and, unless --no-envoy, the e2e stack's Envoy 1.40
(tests/e2e/tools.sh). Then, printing one line per check:

1. The image, with a real OCI tool (skopeo):
   - `skopeo inspect oci:LAYOUT:TAG` and `oci-archive:ARCHIVE:TAG` report the manifest digest
     deploy/oci.py wrote, and one layer of the compat media type;
   - `skopeo inspect --raw` / `--config`: the manifest's media types and variant annotation, the
     config's rootfs diff_id (the SHA-256 of the uncompressed layer);
   - `skopeo copy` to `dir:` (from the layout and from the archive), then the layer taken out the
     way Istio's and Envoy Gateway's fetchers do it (last layer, its media type, gunzip, untar,
     the entry whose base name is plugin.wasm) is byte-identical to the --wasm file;
   - deploy/oci.py run again in memory on the same wasm gives the same manifest digest.
2. The manifests (deploy/istio, deploy/envoy-gateway): every YAML document parses; the images they
   name are the --image `make oci` built (Istio: oci://IMAGE) and every mention of the image in
   deploy/ and README.md carries its tag; each kustomization lists every manifest; the certbound
   configs (WasmPlugin pluginConfig, EnvoyExtensionPolicy config) pass
   filter-config/certbound.schema.json; each IdP URL of a config resolves (as src/endpoint.rs
   does) to an Envoy cluster the manifests create (Istio: `outbound|<port>||<host>` of a
   ServiceEntry, with a DestinationRule originating TLS to that host; Envoy Gateway: a static
   cluster of the targeted Gateway's EnvoyProxy bootstrap, TLS with SNI = the host); fail closed
   (FAIL_CLOSE / failOpen: false); phase AUTHN; mutual TLS required at the gateway (Istio
   Gateway tls.mode MUTUAL; ClientTrafficPolicy clientValidation with a CA, not optional); the
   references between objects (selectors, targetRefs, parametersRef, namespaces) resolve.
3. Schemas: Istio and Gateway API objects against published schemas (deploy/schemas/validate.mjs:
   Istio 1.29.2's CRDs, the Gateway API types, as npm's @kubernetes-models packages ship them,
   plus an unknown-field check); the Envoy Gateway objects against
   deploy/schemas/envoy-gateway-subset.schema.json, OUR transcription of the fields used (no
   registry ships Envoy Gateway's CRDs).
4. Unless --no-envoy, real Envoy 1.40 (the e2e stack's): the static cluster of the EnvoyProxy
   bootstrap passes `envoy --mode validate`, and Envoy loads the plugin.wasm extracted from the
   image with each manifest's certbound config (the filter logs `configured:`).
Exits 1 on any failure, listing them.
"""

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

TOP = Path(__file__).resolve().parent.parent
DEPLOY = TOP / "deploy"
TOOLS = TOP / ".tools"
VENV = TOOLS / "deploy-venv"
VENV_PACKAGES = ["PyYAML==6.0.2", "jsonschema==4.23.0"]
SCHEMAS_SRC = DEPLOY / "schemas"
SCHEMAS = TOOLS / "deploy-schemas"
STATE = TOP / "target" / "oci-check"
CONFIG_SCHEMA = TOP / "filter-config" / "certbound.schema.json"
EG_SUBSET_SCHEMA = SCHEMAS_SRC / "envoy-gateway-subset.schema.json"
MANIFEST_DIRS = ("istio", "envoy-gateway")
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


# --- tools ------------------------------------------------------------------------------------
def in_venv():
    """Re-runs this script with the venv's Python (PyYAML, jsonschema), creating the venv first."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    stamp = VENV / ".certbound-packages"
    if not (python.is_file() and stamp.is_file() and stamp.read_text() == " ".join(VENV_PACKAGES)):
        print(f"tools: creating {VENV.relative_to(TOP)} with {' '.join(VENV_PACKAGES)} (pip)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *VENV_PACKAGES], check=True)
        stamp.write_text(" ".join(VENV_PACKAGES))
    os.execv(str(python), [str(python), *sys.argv])


def ensure_skopeo():
    if shutil.which("skopeo"):
        return
    print("tools: installing skopeo (apt-get)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "skopeo"], stdout=subprocess.DEVNULL).returncode:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "skopeo"], check=True, stdout=subprocess.DEVNULL)


def ensure_schemas():
    """deploy/schemas' npm packages in .tools/deploy-schemas, reinstalled when the lock changes."""
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copyfile(SCHEMAS_SRC / name, SCHEMAS / name)
    want = hashlib.sha256((SCHEMAS_SRC / "package-lock.json").read_bytes()).hexdigest()
    stamp = SCHEMAS / "node_modules" / ".certbound-lock.sha256"
    if not (stamp.is_file() and stamp.read_text() == want):
        print("tools: installing deploy/schemas' npm packages (npm ci in .tools/deploy-schemas)", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SCHEMAS, check=True)
        stamp.write_text(want)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


# --- reporting --------------------------------------------------------------------------------
class Checks:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def ok(self, what, detail=""):
        self.passed += 1
        print(f"ok    {what}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, what, detail):
        self.failures.append(f"{what}: {detail}")
        print(f"FAIL  {what}: {detail}", flush=True)

    def expect(self, cond, what, detail_ok="", detail_fail=""):
        (self.ok(what, detail_ok) if cond else self.fail(what, detail_fail or "not so"))
        return cond


def rel(path):
    try:
        return str(Path(path).resolve().relative_to(TOP))
    except ValueError:
        return str(path)


# --- 1. the image -----------------------------------------------------------------------------
def extract_like_istio(dir_path):
    """From a skopeo `dir:` copy, the wasm the way Istio's and Envoy Gateway's fetchers find it:
    the manifest's LAST layer, of media type tar+gzip, gunzipped and untarred, the entry whose base
    name is plugin.wasm. Returns (wasm bytes, uncompressed layer, manifest)."""
    manifest = json.loads((dir_path / "manifest.json").read_text())
    layer = manifest["layers"][-1]
    if layer["mediaType"] != LAYER_TYPE:
        raise ValueError(f"last layer is {layer['mediaType']}, not {LAYER_TYPE}")
    blob = (dir_path / layer["digest"].split(":", 1)[1]).read_bytes()
    if "sha256:" + hashlib.sha256(blob).hexdigest() != layer["digest"]:
        raise ValueError("the layer blob does not hash to its digest")
    uncompressed = gzip.decompress(blob)
    with tarfile.open(fileobj=io.BytesIO(uncompressed)) as tar:
        for member in tar:
            if os.path.basename(member.name) == "plugin.wasm":
                return tar.extractfile(member).read(), uncompressed, manifest
    raise ValueError("no plugin.wasm in the layer")


def check_image(c, args, tag):
    wasm = args.wasm.read_bytes()
    index = json.loads((args.layout / "index.json").read_text())
    entry = index["manifests"][0]
    c.expect(len(index["manifests"]) == 1 and entry["annotations"].get("io.containerd.image.name") == args.image
             and entry["annotations"].get("org.opencontainers.image.ref.name") == tag,
             "the layout holds the image make oci named", args.image,
             f"index.json names {entry.get('annotations')}, expected {args.image}")
    digest = entry["digest"]

    for transport, where in (("oci", args.layout), ("oci-archive", args.archive)):
        ref = f"{transport}:{where}:{tag}"
        inspect = json.loads(run(["skopeo", "inspect", ref]))
        layers = inspect.get("LayersData") or [{"Digest": d, "MIMEType": None} for d in inspect.get("Layers", [])]
        c.expect(inspect.get("Digest") == digest, f"skopeo inspect {rel(where) if transport == 'oci' else transport + ':' + rel(where)}",
                 f"Digest {inspect.get('Digest')}", f"Digest {inspect.get('Digest')}, index.json says {digest}")
        c.expect(len(layers) == 1 and layers[0].get("MIMEType") in (LAYER_TYPE, None),
                 f"  {transport}: one layer, {LAYER_TYPE}", layers[0]["Digest"] if layers else "",
                 f"layers {layers}")

    ref = f"oci:{args.layout}:{tag}"
    manifest = json.loads(run(["skopeo", "inspect", "--raw", ref]))
    c.expect(manifest.get("mediaType") == MANIFEST_TYPE and manifest["config"]["mediaType"] == CONFIG_TYPE
             and [l["mediaType"] for l in manifest["layers"]] == [LAYER_TYPE]
             and manifest.get("annotations", {}).get("module.wasm.image/variant") == "compat",
             "skopeo inspect --raw: compat variant manifest",
             f"{MANIFEST_TYPE}, one {LAYER_TYPE} layer, module.wasm.image/variant=compat",
             json.dumps(manifest)[:300])
    config = json.loads(run(["skopeo", "inspect", "--config", ref]))

    for transport, where in (("oci", args.layout), ("oci-archive", args.archive)):
        out = STATE / f"dir-{transport}"
        shutil.rmtree(out, ignore_errors=True)
        run(["skopeo", "copy", "--quiet", f"{transport}:{where}:{tag}", f"dir:{out}"])
        try:
            extracted, uncompressed, _ = extract_like_istio(out)
        except (ValueError, OSError, tarfile.TarError) as e:
            c.fail(f"skopeo copy {transport}: -> dir:", str(e))
            continue
        same = extracted == wasm
        c.expect(same, f"skopeo copy {transport}:{rel(where)} -> dir:{rel(out)}, plugin.wasm from the layer",
                 f"byte-identical to {rel(args.wasm)} ({len(wasm)} bytes, sha256:{hashlib.sha256(wasm).hexdigest()})",
                 f"differs from {rel(args.wasm)} ({len(extracted)} vs {len(wasm)} bytes)")
        if transport == "oci":
            (STATE / "plugin.wasm").write_bytes(extracted)
            diff_id = "sha256:" + hashlib.sha256(uncompressed).hexdigest()
            c.expect(config.get("rootfs", {}).get("diff_ids") == [diff_id],
                     "skopeo inspect --config: rootfs.diff_ids is the uncompressed layer's digest", diff_id,
                     f"config says {config.get('rootfs')}")

    spec = importlib.util.spec_from_file_location("certbound_oci", DEPLOY / "oci.py")
    oci = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oci)
    again = oci.build(wasm, args.image, manifest["annotations"].get("org.opencontainers.image.version", tag))
    c.expect("sha256:" + hashlib.sha256(again["manifest"]).hexdigest() == digest,
             "deterministic: deploy/oci.py on the same wasm gives the same manifest digest", digest)
    return digest


# --- 2. the manifests -------------------------------------------------------------------------
def load_manifests(c):
    import yaml
    docs = []  # (where, dir name, doc)
    for name in MANIFEST_DIRS:
        files = sorted((DEPLOY / name).glob("*.yaml")) + sorted((DEPLOY / name).glob("*.yml"))
        if not files:
            c.fail(f"deploy/{name}", "no manifests")
        for f in files:
            try:
                parsed = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
            except yaml.YAMLError as e:
                c.fail(f"{rel(f)} parses", str(e))
                continue
            for i, doc in enumerate(parsed, 1):
                docs.append((f"{rel(f)}#{i}", name, doc))
        c.ok(f"deploy/{name}/*.yaml parse (PyYAML)",
             ", ".join(f"{d['kind']} {d.get('metadata', {}).get('name', '')}".strip() for _, n, d in docs if n == name))
    return docs


def objects(docs, group_dir, kind):
    return [(w, d) for w, n, d in docs if n == group_dir and d.get("kind") == kind]


def resolve_upstream(url, upstreams):
    """The dispatch_http_call upstream certbound uses for `url` (src/endpoint.rs): upstreams[authority
    as written], else upstreams["host:port"] with the scheme's default port, else "host:port"."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host_port = f"{parts.hostname}:{port}"
    return upstreams.get(parts.netloc) or upstreams.get(host_port) or host_port, parts.hostname, port


def idp_urls(config):
    return [config[k] for k in ("jwks_endpoint", "introspection_endpoint") if config.get(k)]


def check_certbound_config(c, where, config, validator):
    if not isinstance(config, dict):
        return c.fail(f"{where}: certbound config", "missing or not a mapping")
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    c.expect(not errors, f"{where}: certbound config passes {rel(CONFIG_SCHEMA)}", f"{len(config)} fields",
             "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors))
    c.expect(config.get("client_certificate", {"source": "connection"}).get("source") == "connection",
             f"{where}: the certificate comes from the gateway's own mutual-TLS connection", "source: connection")
    c.expect(config.get("proof_of_possession_mtls", "strict") == "strict", f"{where}: binding enforced", "strict")
    c.expect(bool(idp_urls(config)), f"{where}: the config calls the IdP", ", ".join(idp_urls(config)))


def check_image_mentions(c, image):
    """Every mention of the image's repository in deploy/ and README.md carries the tag make oci builds."""
    repo, _, tag = image.rpartition(":")
    pattern = re.compile(re.escape(repo) + r"(?::([\w][\w.-]*)|@sha256:[0-9a-f]{64})?")
    files = [TOP / "README.md", *sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".md", ".yaml", ".yml"))]
    stale = []
    count = 0
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for m in pattern.finditer(line):
                count += 1
                if m.group(1) is not None and m.group(1) != tag:
                    stale.append(f"{rel(f)}:{n}: {m.group(0)}")
    c.expect(not stale, f"every tagged mention of {repo} in README.md and deploy/ is :{tag}", f"{count} mentions",
             "; ".join(stale) + f" (make oci builds {image}: update these, or the version in Cargo.toml)")


def check_kustomizations(c, docs):
    for name in MANIFEST_DIRS:
        kust = objects(docs, name, "Kustomization")
        files = sorted(p.name for p in (DEPLOY / name).glob("*.yaml") if p.name != "kustomization.yaml")
        if c.expect(len(kust) == 1, f"deploy/{name}/kustomization.yaml", "present", "missing"):
            listed = sorted(kust[0][1].get("resources", []))
            c.expect(listed == files, f"deploy/{name}/kustomization.yaml lists every manifest", ", ".join(listed),
                     f"lists {listed}, the folder has {files}")


def check_istio(c, docs, image, validator):
    plugins = objects(docs, "istio", "WasmPlugin")
    if not c.expect(len(plugins) >= 1, "deploy/istio: a WasmPlugin", "", "none"):
        return []
    configs = []
    gateways = objects(docs, "istio", "Gateway")
    entries = objects(docs, "istio", "ServiceEntry")
    rules = objects(docs, "istio", "DestinationRule")
    for where, p in plugins:
        spec, ns = p.get("spec", {}), p.get("metadata", {}).get("namespace")
        c.expect(spec.get("url") == f"oci://{image}", f"{where}: url names the image make oci builds",
                 spec.get("url"), f"{spec.get('url')!r}, expected oci://{image}")
        c.expect(spec.get("failStrategy") == "FAIL_CLOSE", f"{where}: failStrategy", "FAIL_CLOSE", str(spec.get("failStrategy")))
        c.expect(spec.get("phase") == "AUTHN", f"{where}: phase", "AUTHN", str(spec.get("phase")))
        labels = spec.get("selector", {}).get("matchLabels", {})
        served = [(w, g) for w, g in gateways if g.get("metadata", {}).get("namespace") == ns
                  and labels and all(g.get("spec", {}).get("selector", {}).get(k) == v for k, v in labels.items())]
        c.expect(bool(served), f"{where}: its selector picks the gateway of an Istio Gateway in {ns}",
                 ", ".join(w for w, _ in served), f"no Gateway in {ns} selects {labels}")
        for w, g in served:
            modes = [s.get("tls", {}).get("mode") for s in g.get("spec", {}).get("servers", [])]
            c.expect(modes and all(m == "MUTUAL" for m in modes), f"{w}: every server requires mutual TLS",
                     "tls.mode MUTUAL", f"tls modes {modes}")
        config = spec.get("pluginConfig")
        check_certbound_config(c, f"{where} pluginConfig", config, validator)
        if not isinstance(config, dict):
            continue
        configs.append((f"istio-{p['metadata']['name']}", config))
        clusters = {}
        for w, se in entries:
            s = se.get("spec", {})
            visible = se.get("metadata", {}).get("namespace") == ns or "*" in s.get("exportTo", ["*"])
            for host in s.get("hosts", []):
                for port in s.get("ports", []):
                    if visible:
                        clusters[f"outbound|{port.get('number')}||{host}"] = (w, host, port.get("number"))
        for url in idp_urls(config):
            upstream, host, port = resolve_upstream(url, config.get("upstreams", {}))
            if not c.expect(upstream in clusters, f"{where}: {url} goes to cluster {upstream}",
                            f"Istio's name for {clusters.get(upstream, ('',))[0]}'s port {port}",
                            f"no ServiceEntry visible in {ns} makes it (Istio names a ServiceEntry port's "
                            f"cluster outbound|<port>||<host>): have {sorted(clusters)}"):
                continue
            se_where, se_host, se_port = clusters[upstream]
            c.expect(se_host == host and se_port == port, f"{where}: cluster {upstream} is the URL's host and port",
                     f"{host}:{port}", f"cluster is {se_host}:{se_port}, the URL {host}:{port}")
            tls = []
            for w, dr in rules:
                s = dr.get("spec", {})
                if s.get("host") != host or dr.get("metadata", {}).get("namespace") != ns:
                    continue
                for pl in s.get("trafficPolicy", {}).get("portLevelSettings", []):
                    if pl.get("port", {}).get("number") == port:
                        tls.append((w, pl.get("tls", {})))
                if not tls and s.get("trafficPolicy", {}).get("tls"):
                    tls.append((w, s["trafficPolicy"]["tls"]))
            c.expect(any(t.get("mode") == "SIMPLE" and t.get("sni", host) == host for _, t in tls),
                     f"{where}: a DestinationRule originates TLS to {host}:{port}",
                     ", ".join(f"{w} (mode SIMPLE, sni {t.get('sni', host)})" for w, t in tls),
                     f"no DestinationRule in {ns} with tls.mode SIMPLE for {host} port {port}: the filter "
                     "speaks plain HTTP to the cluster, which must do the TLS")
    return configs


def bootstrap_clusters(proxy):
    import yaml
    boot = proxy.get("spec", {}).get("bootstrap", {})
    value = yaml.safe_load(boot.get("value") or "{}") or {}
    return {cl.get("name"): cl for cl in value.get("static_resources", {}).get("clusters", [])}, boot


def check_envoy_gateway(c, docs, image, validator):
    policies = objects(docs, "envoy-gateway", "EnvoyExtensionPolicy")
    if not c.expect(len(policies) >= 1, "deploy/envoy-gateway: an EnvoyExtensionPolicy", "", "none"):
        return [], {}
    gateways = {(g["metadata"].get("namespace"), g["metadata"]["name"]): (w, g)
                for w, g in objects(docs, "envoy-gateway", "Gateway")}
    proxies = {(p["metadata"].get("namespace"), p["metadata"]["name"]): (w, p)
               for w, p in objects(docs, "envoy-gateway", "EnvoyProxy")}
    ctps = objects(docs, "envoy-gateway", "ClientTrafficPolicy")
    configs, static_clusters = [], {}

    def targets(obj):
        ns = obj["metadata"].get("namespace")
        return [(ns, r.get("name")) for r in obj.get("spec", {}).get("targetRefs", [])
                if r.get("kind") == "Gateway" and r.get("group") == "gateway.networking.k8s.io"]

    for where, pol in policies:
        spec = pol.get("spec", {})
        targeted = [gateways.get(t) for t in targets(pol)]
        if not c.expect(targeted and all(targeted), f"{where}: targets a Gateway defined here",
                        ", ".join(f"{t[1]}" for t in targets(pol)), f"targetRefs {spec.get('targetRefs')}"):
            continue
        for gw_where, gw in targeted:
            listeners = gw.get("spec", {}).get("listeners", [])
            c.expect(listeners and all(l.get("protocol") == "HTTPS" and l.get("tls", {}).get("mode", "Terminate") == "Terminate"
                                       for l in listeners),
                     f"{gw_where}: HTTPS listeners terminating TLS", ", ".join(l.get("name", "") for l in listeners),
                     f"listeners {listeners}")
            key = (gw["metadata"].get("namespace"), gw["metadata"]["name"])
            req = [(w, p) for w, p in ctps if key in targets(p)]
            cv = [(w, p["spec"].get("tls", {}).get("clientValidation", {})) for w, p in req]
            c.expect(any(v and v.get("optional", False) is False and v.get("caCertificateRefs") for _, v in cv),
                     f"{gw_where}: a ClientTrafficPolicy requires client certificates",
                     ", ".join(f"{w} (clientValidation with a CA, optional false)" for w, _ in cv),
                     f"no ClientTrafficPolicy targeting {key[1]} with tls.clientValidation.caCertificateRefs "
                     f"and optional false: {cv}")
            pref = gw.get("spec", {}).get("infrastructure", {}).get("parametersRef", {})
            proxy = proxies.get((key[0], pref.get("name"))) if pref.get("kind") == "EnvoyProxy" \
                and pref.get("group") == "gateway.envoyproxy.io" else None
            if c.expect(proxy is not None, f"{gw_where}: infrastructure.parametersRef names an EnvoyProxy defined here",
                        str(pref.get("name")), f"parametersRef {pref}"):
                clusters, boot = bootstrap_clusters(proxy[1])
                c.expect(boot.get("type") == "Merge", f"{proxy[0]}: bootstrap merged into Envoy Gateway's",
                         f"type Merge, static clusters {sorted(clusters)}", f"bootstrap type {boot.get('type')}")
                for name, cl in clusters.items():
                    static_clusters[name] = (proxy[0], cl)
        for i, w in enumerate(spec.get("wasm", [])):
            at = f"{where} wasm[{i}]"
            code = w.get("code", {})
            c.expect(code.get("type") == "Image" and code.get("image", {}).get("url") == image,
                     f"{at}: code names the image make oci builds", code.get("image", {}).get("url"),
                     f"code {code}, expected type Image, image.url {image}")
            c.expect(w.get("failOpen") is False, f"{at}: fails closed", "failOpen: false (explicit)",
                     f"failOpen {w.get('failOpen')!r}")
            config = w.get("config")
            check_certbound_config(c, f"{at} config", config, validator)
            if not isinstance(config, dict):
                continue
            configs.append((f"eg-{pol['metadata']['name']}-{i}", config))
            for url in idp_urls(config):
                upstream, host, port = resolve_upstream(url, config.get("upstreams", {}))
                if not c.expect(upstream in static_clusters, f"{at}: {url} goes to cluster {upstream}",
                                f"a static cluster of {static_clusters.get(upstream, ('',))[0]}",
                                f"not a static cluster of the Gateway's EnvoyProxy: have {sorted(static_clusters)}"):
                    continue
                cl = static_clusters[upstream][1]
                addrs = [(e["endpoint"]["address"]["socket_address"].get("address"),
                          e["endpoint"]["address"]["socket_address"].get("port_value"))
                         for group in cl.get("load_assignment", {}).get("endpoints", [])
                         for e in group.get("lb_endpoints", [])]
                tls = cl.get("transport_socket", {}).get("typed_config", {})
                c.expect(addrs == [(host, port)] and tls.get("sni") == host
                         and tls.get("@type", "").endswith("UpstreamTlsContext"),
                         f"{at}: cluster {upstream} dials {host}:{port} over TLS with SNI {host}",
                         "", f"endpoints {addrs}, transport socket {tls.get('@type')} sni {tls.get('sni')}")
    return configs, static_clusters


# --- 3. schemas -------------------------------------------------------------------------------
def check_published_schemas(c, docs):
    objs = [{"where": w, "doc": d} for w, _, d in docs]
    STATE.mkdir(parents=True, exist_ok=True)
    path = STATE / "objects.json"
    path.write_text(json.dumps(objs))
    proc = subprocess.run(["node", str(SCHEMAS / "validate.mjs"), str(path)], capture_output=True, text=True)
    if proc.returncode:
        return c.fail("deploy/schemas/validate.mjs", proc.stderr.strip() or f"exit {proc.returncode}")
    unchecked = []
    for r in json.loads(proc.stdout):
        if r["status"] == "no-schema":
            unchecked.append(f"{r['kind']} ({r['where']})")
            continue
        c.expect(r["status"] == "valid", f"{r['where']} {r['kind']}: {r['apiVersion']} schema of {r['schema']}",
                 "valid, no unknown field", "; ".join(r["errors"]))
    return unchecked


def check_eg_subset(c, docs):
    import jsonschema
    schema = json.loads(EG_SUBSET_SCHEMA.read_text())
    for w, n, d in docs:
        if not str(d.get("apiVersion", "")).startswith("gateway.envoyproxy.io/"):
            continue
        titles = [s["title"] for s in schema["oneOf"]]
        branch = next((s for s in schema["oneOf"] if s["title"] == d.get("kind")), None)
        if branch is None:
            c.fail(f"{w} {d.get('kind')}", f"not in {rel(EG_SUBSET_SCHEMA)} ({titles})")
            continue
        sub = dict(branch, definitions=schema["definitions"])
        errors = list(jsonschema.Draft7Validator(sub).iter_errors(d))
        c.expect(not errors, f"{w} {d['kind']}: {rel(EG_SUBSET_SCHEMA)} (our transcription)", "valid",
                 "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors))


# --- 4. real Envoy ----------------------------------------------------------------------------
def check_in_envoy(c, configs, static_clusters, wasm):
    import yaml
    sys.path.insert(0, str(TOP / "tests" / "e2e"))
    import stack  # the e2e stack: Envoy 1.40 from PyPI in .tools/venv, tests/e2e's PKI, envoy/envoy.yaml

    stack.ensure_tools()
    for name, (where, cluster) in sorted(static_clusters.items()):
        path = STATE / f"bootstrap-{name}.yaml"
        path.write_text(yaml.safe_dump({"static_resources": {"clusters": [cluster]}}))
        proc = subprocess.run([str(stack.ENVOY_BIN), "--mode", "validate", "-c", str(path)], capture_output=True, text=True)
        c.expect(proc.returncode == 0, f"{where}: static cluster {name} passes `envoy --mode validate` (Envoy 1.40)", "OK",
                 (proc.stdout + proc.stderr).strip()[-400:])
    s = stack.Stack(state=STATE / "envoy", envoys={}, wasm=str(wasm), say=lambda m: None)
    try:
        s.prepare()
        for name, config in configs:
            path = STATE / f"{name}.json"
            path.write_text(json.dumps(config))
            log_path = s.logs / "envoy-k8s.log"
            start = log_path.stat().st_size if log_path.exists() else 0  # restarts append to the log
            try:
                s.start_envoy("k8s", path)
                with open(log_path, "rb") as f:
                    f.seek(start)
                    log = f.read().decode(errors="replace")
                configured = [line.split("configured: ", 1)[1] for line in log.splitlines() if "configured: " in line]
                # The filter's own parser names the upstream of each IdP URL: it must be the cluster
                # the manifests create (what the checks above resolved).
                want = [f"{url.split('?')[0]} via {resolve_upstream(url, config.get('upstreams', {}))[0]}"
                        for url in idp_urls(config)]
                c.expect(configured and all(w in configured[0] for w in want),
                         f"Envoy 1.40 loads plugin.wasm from the image with the {name} config",
                         "the filter logs configured: ... " + ", ".join(want),
                         f"filter said {configured[:1] or 'nothing'}, expected {want} (log {rel(log_path)})")
            except Exception as e:  # report every config
                c.fail(f"Envoy 1.40 with the {name} config", str(e))
            finally:
                s.stop_service("envoy-k8s")
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True, help="REPOSITORY:TAG make oci built")
    ap.add_argument("--wasm", required=True, type=Path)
    ap.add_argument("--layout", required=True, type=Path)
    ap.add_argument("--archive", required=True, type=Path)
    ap.add_argument("--no-envoy", action="store_true", help="skip the checks in real Envoy")
    args = ap.parse_args()
    in_venv()
    import jsonschema
    for p in ("wasm", "layout", "archive"):
        setattr(args, p, getattr(args, p).resolve())
        if not getattr(args, p).exists():
            raise SystemExit(f"no {getattr(args, p)}: run `make oci` first")
    tag = args.image.rpartition(":")[2]
    ensure_skopeo()
    ensure_schemas()
    STATE.mkdir(parents=True, exist_ok=True)
    c = Checks()

    print(f"== the image, with {run(['skopeo', '--version']).strip()}")
    try:
        check_image(c, args, tag)
    except subprocess.CalledProcessError as e:
        c.fail(" ".join(map(str, e.cmd)), (e.stderr or "").strip()[-400:] or f"exit {e.returncode}")

    print("== the manifests")
    validator = jsonschema.Draft4Validator(json.loads(CONFIG_SCHEMA.read_text()))
    docs = load_manifests(c)
    for w, _, d in docs:
        meta = d.get("metadata", {}) if isinstance(d, dict) else {}
        if d.get("kind") != "Kustomization":
            c.expect(bool(d.get("apiVersion") and d.get("kind") and meta.get("name") and meta.get("namespace")),
                     f"{w}: apiVersion, kind, metadata.name and namespace", f"{d.get('kind')} {meta.get('namespace')}/{meta.get('name')}",
                     f"{d.get('apiVersion')} {d.get('kind')} {meta}")
    check_image_mentions(c, args.image)
    check_kustomizations(c, docs)
    configs = check_istio(c, docs, args.image, validator)
    eg_configs, static_clusters = check_envoy_gateway(c, docs, args.image, validator)
    configs += eg_configs

    print("== schemas")
    unchecked = check_published_schemas(c, docs)
    check_eg_subset(c, docs)
    print("      no published schema here for: " + ", ".join(unchecked))

    if not args.no_envoy:
        print("== real Envoy")
        check_in_envoy(c, configs, static_clusters, STATE / "plugin.wasm")

    print(f"{c.passed} passed, {len(c.failures)} failed")
    if c.failures:
        print("\n".join(["failures:", *(f"  {f}" for f in c.failures)]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
