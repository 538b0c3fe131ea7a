"""What every benchmark script shares: writing its results as JSON with the machine and parameters, and a
scratch database on the machine's PostgreSQL."""

from __future__ import annotations

import json
import os
import platform
import secrets
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Iterator

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def write_results(path: Path | None, bench: str, opts: Any, runs: Any, **extra: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "bench": bench,
                "date": date.today().isoformat(),
                "machine": platform.platform(),
                "cores": os.cpu_count(),
                "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
                "runs": runs,
                **extra,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database (its SQLAlchemy URL) on the machine's server, dropped afterwards."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
