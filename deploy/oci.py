#!/usr/bin/env python3
"""Builds certbound's OCI image for Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy.

    python3 deploy/oci.py --wasm dist/certbound.wasm --image ghcr.io/certbound/certbound:0.1.0 \
        --layout dist/oci --archive dist/certbound-oci.tar            # what `make oci` runs

The image follows the "compat" variant of the Wasm image spec that Istio and Envoy Gateway
fetch (istio/istio pkg/wasm/imagefetcher.go, envoyproxy/gateway internal/wasm/imagefetcher.go:
both take the LAST layer of an OCI image manifest, require the media type
application/vnd.oci.image.layer.v1.tar+gzip, gunzip and untar it and read the entry whose
base name is plugin.wasm):

    manifest  application/vnd.oci.image.manifest.v1+json,
              annotation module.wasm.image/variant=compat
    config    application/vnd.oci.image.config.v1+json (os wasi, architecture wasm,
              rootfs.diff_ids = the SHA-256 of the uncompressed layer)
    layer     application/vnd.oci.image.layer.v1.tar+gzip: a tar with one file, plugin.wasm

Written twice, with no container engine:
  --layout   an OCI image layout directory (oci-layout, index.json, blobs/sha256/...), the tag in
             index.json's org.opencontainers.image.ref.name (so `skopeo inspect oci:DIR:TAG`);
  --archive  the same layout as one uncompressed tar (`skopeo copy oci-archive:FILE:TAG ...`).

Deterministic: tar entries with mtime 0, uid/gid 0, no user or group names, fixed modes; gzip
without a name or timestamp; JSON with sorted keys and no spaces. The same wasm gives the same
digests (with the same zlib: another zlib version may compress differently). Stdlib only.
"""

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_NAME = "plugin.wasm"  # the name the compat variant requires
VARIANT_ANNOTATION = "module.wasm.image/variant"


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, annotations=None):
    d = {"mediaType": media_type, "digest": f"sha256:{sha256(data)}", "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def tar_bytes(entries):
    """A deterministic tar of (name, data or None for a directory) entries, in the given order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def gzip_bytes(data):
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


def split_image(image):
    """ghcr.io/certbound/certbound:0.1.0 -> (ghcr.io/certbound/certbound, 0.1.0)."""
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or not tag or not repo:
        raise SystemExit(f"--image must be REPOSITORY:TAG, got {image!r}")
    return repo, tag


def build(wasm, image, version):
    """The image's blobs and descriptors, as {"blobs": {digest: bytes}, "manifest": ..., ...}."""
    if not wasm.startswith(b"\0asm"):
        raise SystemExit("the input is not a WebAssembly module (no \\0asm magic)")
    _, tag = split_image(image)
    layer_tar = tar_bytes([(WASM_NAME, wasm)])
    layer = gzip_bytes(layer_tar)
    config = canonical_json({
        "architecture": "wasm",
        "os": "wasi",
        "config": {"Labels": {"org.opencontainers.image.title": "certbound",
                              "org.opencontainers.image.version": version}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(layer_tar)}"]},
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": [descriptor(LAYER_TYPE, layer, {"org.opencontainers.image.title": WASM_NAME})],
        "annotations": {
            VARIANT_ANNOTATION: "compat",
            "org.opencontainers.image.title": "certbound",
            "org.opencontainers.image.description":
                "proxy-wasm filter enforcing OAuth 2.0 certificate-bound access tokens (RFC 8705)",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [descriptor(MANIFEST_TYPE, manifest, {
            "org.opencontainers.image.ref.name": tag,   # skopeo's oci:DIR:TAG
            "io.containerd.image.name": image,          # ctr / nerdctl import of the archive
        })],
    })
    blobs = {f"sha256:{sha256(b)}": b for b in (layer, config, manifest)}
    return {"blobs": blobs, "index": index, "manifest": manifest, "config": config, "layer": layer,
            "layer_tar": layer_tar}


def layout_entries(image):
    """The layout's files in a fixed order: (relative path, bytes or None for a directory)."""
    entries = [("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
               ("index.json", image["index"]), ("blobs", None), ("blobs/sha256", None)]
    for digest in sorted(image["blobs"]):
        entries.append((f"blobs/sha256/{digest.split(':', 1)[1]}", image["blobs"][digest]))
    return entries


def write_layout(entries, directory):
    if directory.exists():
        shutil.rmtree(directory)
    for rel, data in entries:
        path = directory / rel
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", required=True, type=Path, help="the filter, e.g. dist/certbound.wasm")
    ap.add_argument("--image", required=True, help="REPOSITORY:TAG the image is named (no registry is contacted)")
    ap.add_argument("--version", help="org.opencontainers.image.version (default: the tag)")
    ap.add_argument("--layout", type=Path, help="write an OCI image layout directory here (replaced)")
    ap.add_argument("--archive", type=Path, help="write the layout as a tar file here")
    ap.add_argument("--summary", type=Path, help="write the digests as JSON here")
    args = ap.parse_args()
    if not (args.layout or args.archive):
        ap.error("nothing to write: give --layout and/or --archive")
    _, tag = split_image(args.image)
    wasm = args.wasm.read_bytes()
    image = build(wasm, args.image, args.version or tag)
    entries = layout_entries(image)
    if args.layout:
        write_layout(entries, args.layout)
    if args.archive:
        args.archive.parent.mkdir(parents=True, exist_ok=True)
        args.archive.write_bytes(tar_bytes(entries))
    manifest = json.loads(image["manifest"])
    summary = {
        "image": args.image,
        "tag": tag,
        "manifest_digest": f"sha256:{sha256(image['manifest'])}",
        "config_digest": manifest["config"]["digest"],
        "layer_digest": manifest["layers"][0]["digest"],
        "layer_media_type": manifest["layers"][0]["mediaType"],
        "wasm_sha256": sha256(wasm),
        "wasm_size": len(wasm),
        "layout": str(args.layout) if args.layout else None,
        "archive": str(args.archive) if args.archive else None,
    }
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"==> OCI image {args.image} (compat variant: one {LAYER_TYPE} layer holding {WASM_NAME})")
    print(f"    manifest {summary['manifest_digest']}")
    print(f"    layer    {summary['layer_digest']} ({len(image['layer'])} bytes)")
    print(f"    wasm     sha256:{summary['wasm_sha256']} ({len(wasm)} bytes)")
    for what, path in (("layout", args.layout), ("archive", args.archive)):
        if path:
            print(f"    {what:8} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
