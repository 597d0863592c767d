"""``python -m bench``: run every benchmark, write bench/results.json, print tables."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from bench import circuit

RESULTS = Path(__file__).parent / "results.json"


def main() -> int:
    """Run the benchmarks in one process and report."""
    started = time.time()
    data: dict[str, object] = {
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    print("» circuit benchmark (baseline and tuned, same run) …", file=sys.stderr)
    result = circuit.run()
    data.update(result)
    data["elapsed_s"] = round(time.time() - started, 1)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(circuit.table(result))
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
