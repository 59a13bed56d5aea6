#!/usr/bin/env python3
"""Every example config in filter-config/examples/ loads in real Envoy 1.40 and in Kong's engine.

    python3 tests/e2e/load_examples.py [--wasm PATH] [--host envoy|kong|both]

For each example and host: the gateway starts with the filter configured from it (Envoy reaches
/ready; nginx's worker loads the module), and the filter's log says `configured:` (on Kong's
engine a refused config would say `refusing every request` instead). The IdP is not needed
(nothing is called at load time). The refusal of broken configs is a case of run_tests.py.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402

EXAMPLES = stack.TOP / "filter-config" / "examples"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", default=str(stack.DEFAULT_WASM))
    ap.add_argument("--host", choices=[*stack.HOSTS, "both"], default="both")
    args = ap.parse_args()
    hosts = stack.HOSTS if args.host == "both" else (args.host,)
    s = stack.Stack(state=stack.TOP / "target" / "e2e-examples", envoys={}, wasm=args.wasm, say=lambda m: None)
    failures = []
    start = time.monotonic()
    try:
        s.prepare()
        for example in sorted(EXAMPLES.glob("*.json")):
            for host in hosts:
                name = f"{example.stem} ({host})"
                # A gateway of its own per example: logs append across restarts.
                gateway = f"ex-{example.stem}"
                try:
                    if host == "envoy":
                        s.start_envoy(gateway, example)
                        log = (s.logs / f"envoy-{gateway}.log").read_text()
                    else:
                        s.start_kong(gateway, example, workers=1, warm=False)  # no IdP here: ready once the filter took its config
                        log = (s.logs / f"kong-{gateway}.log").read_text()
                    if "configured:" not in log:
                        raise RuntimeError(f"no 'configured:' line from the filter in the {host} log")
                    print(f"PASS  {example.relative_to(stack.TOP)} loads in {host}")
                except Exception as e:  # report every example, not just the first failure
                    failures.append(name)
                    print(f"FAIL  {example.relative_to(stack.TOP)} in {host}: {e}")
                finally:
                    s.stop_service(f"envoy-{gateway}")
                    s.stop_service(f"kong-{gateway}")
    finally:
        s.stop()
    total = len(list(EXAMPLES.glob("*.json"))) * len(hosts)
    print(f"{total - len(failures)} of {total} example loads passed ({', '.join(hosts)}; {time.monotonic() - start:.1f}s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
