"""``python -m bench [circuit] [contracts] [batch] [relay] [models] [scale] [sweep]``: run, record.

Each benchmark measures its baseline in the same run and prints a comparison table. With no
argument every benchmark runs. Results of benchmarks not run are kept from earlier runs.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results.json"
BENCHMARKS = ("circuit", "contracts", "batch", "relay", "models", "scale", "sweep")


def main(argv: list[str]) -> int:
    """Run the selected benchmarks in one process and report."""
    selected = argv or list(BENCHMARKS)
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    data: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    tables = []
    for name in selected:
        module = importlib.import_module(f"bench.{name}")
        print(f"» {name} benchmark …", file=sys.stderr)
        started = time.time()
        result = module.run()
        result[f"{name}_measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        result[f"{name}_elapsed_s"] = round(time.time() - started, 1)
        data.update(result)
        tables.append(module.table(result))
        RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print("\n\n".join(tables))
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
