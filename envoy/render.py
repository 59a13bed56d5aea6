#!/usr/bin/env python3
"""Render envoy/envoy.yaml: fill its ${VAR} placeholders, embed the filter's JSON config.

    python3 envoy/render.py [-o out.yaml] [--template T] [--no-wasm] KEY=VALUE ...

Values come from KEY=VALUE arguments, then the environment, then DEFAULTS. A placeholder with no
value is an error naming every missing variable. FILTER_CONFIG names the filter's JSON config file; its own
${VAR} placeholders (such as ${IDP_URL}) are filled from the same values, the result must parse as
JSON, and it is embedded as FILTER_CONFIG_JSON. --no-wasm drops the "# BEGIN certbound" ..
"# END certbound" block, for testing the listener, TLS and clusters without the filter.
"""

import argparse
import json
import os
import re
import string
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("envoy.yaml")
# Placeholders that may be left out.
DEFAULTS = {"FORWARD_CLIENT_CERT": "SANITIZE", "XFF_NUM_TRUSTED_HOPS": "0"}
WASM_BLOCK = re.compile(r"^[ \t]*# BEGIN certbound\b.*?^[ \t]*# END certbound[^\n]*\n", re.M | re.S)


class RenderError(Exception):
    pass


def _fill(text, values, what, quote):
    """Substitutes every ${VAR} of text, quoting each value with quote(); all missing ones fail at once."""
    tmpl = string.Template(text)
    if not tmpl.is_valid():
        raise RenderError(f"{what}: a '$' that is not a ${{VAR}} placeholder (write $$ for a literal $)")
    missing = sorted(n for n in set(tmpl.get_identifiers()) if n not in values)
    if missing:
        raise RenderError(f"{what}: no value for {', '.join(missing)}")
    return tmpl.substitute({n: quote(values[n]) for n in tmpl.get_identifiers()})


def _yaml_scalar(value):
    # Ports stay bare integers; anything else becomes a JSON string, which is also a valid YAML
    # double-quoted scalar: paths with spaces, colons or '#' cannot break the YAML.
    return value if re.fullmatch(r"[0-9]+", value) else json.dumps(value)


def filter_config_json(path, values):
    """The filter config file with its placeholders filled, checked and compacted to one line."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise RenderError(f"FILTER_CONFIG: {e}") from None
    # Values land inside JSON strings: escape them as JSON string content.
    filled = _fill(text, values, path, lambda v: json.dumps(v)[1:-1])
    try:
        return json.dumps(json.loads(filled), separators=(",", ":"))
    except json.JSONDecodeError as e:
        raise RenderError(f"{path}: not valid JSON after substitution: {e}") from None


def render(values, template=TEMPLATE, wasm=True):
    """Returns the rendered Envoy config. values: dict of str -> str."""
    text = Path(template).read_text()
    values = {**DEFAULTS, **values}
    if wasm:
        if "FILTER_CONFIG" not in values:
            raise RenderError(f"{template}: no value for FILTER_CONFIG (or use --no-wasm)")
        values["FILTER_CONFIG_JSON"] = filter_config_json(values["FILTER_CONFIG"], values)
    else:
        text, n = WASM_BLOCK.subn("", text)
        if n != 1:
            raise RenderError(f"{template}: expected one '# BEGIN certbound' .. '# END certbound' block, found {n}")
    return _fill(text, values, str(template), _yaml_scalar)


def fill_template(template, values):
    """Any other YAML template with ${VAR} placeholders (e.g. the e2e tests' front Envoy)."""
    return _fill(Path(template).read_text(), {**DEFAULTS, **values}, str(template), _yaml_scalar)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    ap.add_argument("-o", "--output", help="file to write (default: stdout)")
    ap.add_argument("--template", default=str(TEMPLATE))
    ap.add_argument("--no-wasm", action="store_true", help="leave the certbound filter out")
    args = ap.parse_args(argv)
    values = dict(os.environ)
    for a in args.assignments:
        key, sep, value = a.partition("=")
        if not sep or not key:
            ap.error(f"expected KEY=VALUE, got {a!r}")
        values[key] = value
    try:
        out = render(values, args.template, wasm=not args.no_wasm)
    except RenderError as e:
        sys.exit(f"render.py: {e}")
    if args.output:
        Path(args.output).write_text(out)
    else:
        sys.stdout.write(out)


if __name__ == "__main__":
    main()
