"""Claims that prove their worker is alive: while a stage runs, its job's `claimed_at` is renewed every
`heartbeat_s` seconds by one thread per process. A claim whose heartbeat stopped for longer than the
lease belongs to a dead worker, and `hitline.jobs.reconcile` takes it back (no operator, no 1 h broker
visibility timeout).

    with held_claims(db_url, [job_id], "render", every_s=10):
        ...  # the stage's work
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import update

from db.models import Job, utcnow
from db.session import rowcount, session_scope

__all__ = ["held_claims", "Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """The claims this process holds, renewed together in one UPDATE per beat."""

    def __init__(self, db_url: str, every_s: float) -> None:
        self.db_url, self.every_s = db_url, every_s
        self._held: Counter[tuple[int, str]] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hitline-heartbeat", daemon=True)
        self._thread.start()

    def add(self, job_ids: Iterable[int], stage: str) -> None:
        with self._lock:
            self._held.update((j, stage) for j in job_ids)

    def remove(self, job_ids: Iterable[int], stage: str) -> None:
        with self._lock:
            self._held.subtract((j, stage) for j in job_ids)
            self._held = +self._held  # drop zero counts

    def beat(self) -> int:
        """Renew every held claim that is still running at its stage; returns how many rows moved."""
        with self._lock:
            held = list(self._held)
        if not held:
            return 0
        n = 0
        with session_scope(self.db_url) as s:
            for stage in {st for _, st in held}:
                ids = [j for j, st in held if st == stage]
                n += rowcount(
                    s.execute(
                        update(Job)
                        .where(Job.id.in_(ids), Job.stage == stage, Job.state == "running")
                        .values(claimed_at=utcnow())
                    )
                )
        return n

    def _run(self) -> None:
        while not self._wake.wait(self.every_s):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the job table may be restarting; beat again later
                log.warning("heartbeat could not renew claims: %s", exc)


_beats: dict[tuple[int, str], Heartbeat] = {}
_beats_lock = threading.Lock()


def _heartbeat(db_url: str, every_s: float) -> Heartbeat:
    # one per process and database: a forked worker child starts its own thread
    key = (os.getpid(), db_url)
    with _beats_lock:
        if key not in _beats:
            _beats[key] = Heartbeat(db_url, every_s)
        return _beats[key]


@contextmanager
def held_claims(db_url: str, job_ids: Iterable[int], stage: str, every_s: float) -> Iterator[None]:
    """Keep the claims of `job_ids` at `stage` alive while the block runs."""
    ids = list(job_ids)
    hb = _heartbeat(db_url, every_s)
    hb.add(ids, stage)
    try:
        yield
    finally:
        hb.remove(ids, stage)
