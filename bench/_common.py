"""What every benchmark script shares: writing its results as JSON with the machine and parameters."""

from __future__ import annotations

import json
import os
import platform
from datetime import date
from pathlib import Path
from typing import Any


def write_results(path: Path | None, bench: str, opts: Any, runs: Any, **extra: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "bench": bench, "date": date.today().isoformat(), "machine": platform.platform(), "cores": os.cpu_count(),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "runs": runs, **extra}, indent=2))
    print(f"wrote {path}")
