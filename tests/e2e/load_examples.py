#!/usr/bin/env python3
"""Every example config in filter-config/examples/ loads in real Envoy 1.40 with certbound.

    python3 tests/e2e/load_examples.py [--wasm PATH]

For each example: Envoy starts with the filter configured from it, reaches /ready, and the
filter's log says `configured:`. The IdP is not needed (nothing is called at load time).
The refusal of broken configs is a case of run_tests.py.
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
    args = ap.parse_args()
    s = stack.Stack(state=stack.TOP / "target" / "e2e-examples", envoys={}, wasm=args.wasm, say=lambda m: None)
    failures = []
    start = time.monotonic()
    try:
        s.prepare()
        for example in sorted(EXAMPLES.glob("*.json")):
            name = example.stem
            try:
                s.start_envoy("example", example)
                log = (s.logs / "envoy-example.log").read_text()
                if "configured:" not in log:
                    raise RuntimeError("no 'configured:' line from the filter in the Envoy log")
                print(f"PASS  {example.relative_to(stack.TOP)} loads in Envoy")
            except Exception as e:  # report every example, not just the first failure
                failures.append(name)
                print(f"FAIL  {example.relative_to(stack.TOP)}: {e}")
            finally:
                s.stop_service("envoy-example")
    finally:
        s.stop()
    total = len(list(EXAMPLES.glob("*.json")))
    print(f"{total - len(failures)} of {total} example configs load in Envoy ({time.monotonic() - start:.1f}s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
