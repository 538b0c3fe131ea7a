"""What an operator does to a batch, shared by the HTTP API, the CLI and the Celery contract: summarise
it, list its jobs a page at a time, retry failed jobs, cancel and reopen it, and manage API tokens.

Functions take an open session and never enqueue: the ones that make work return Dispatches (the job
layer's "chains to send"), which tasks.chains.send sends once the session has committed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import crud
from db.models import DEFAULT_TENANT, ApiToken, Attempt, Batch, Job, Tenant, utcnow
from db.session import rowcount
from hitline.errors import Conflict, InputError, NotFound
from hitline.jobs.quality import OUTCOMES, digest
from hitline.jobs.results import (
    BatchQuality,
    Digest,
    DraftSummary,
    InputCheckCounts,
    InputFindings,
    InputRecord,
    PlanSaving,
    RenderFacts,
    RenderResult,
    read,
)
from hitline.jobs.stages import CATALOG_LINE, result_stage
from hitline.jobs.submit import Dispatch, chunks

__all__ = [
    "NotFound",
    "Conflict",
    "JobFilter",
    "BatchSummary",
    "JobPage",
    "summary",
    "list_batches",
    "list_jobs",
    "job_detail",
    "quality_summary",
    "render_facts",
    "resolve_job_refs",
    "retry_failed",
    "cancel",
    "reopen",
    "is_rejected",
    "batch_tenant",
    "DEFAULT_TENANT",
    "ensure_tenant",
    "require_tenant",
    "can",
    "ROLES",
    "create_token",
    "verify_token",
    "revoke_token",
    "dispatches_for",
    "reason_group",
    "REJECTED_HINT",
]

FAILED = "failed"
MAX_ID = 2**63 - 1  # the largest id a job table (BIGINT in PostgreSQL, INTEGER in SQLite) can hold
REJECTED_HINT = "rejected at validation: fix the CSV row and submit the batch again"


def batch_tenant(s: Session, batch_id: str) -> str | None:
    return s.scalar(select(Batch.tenant_id).where(Batch.id == batch_id))


def get_batch(s: Session, batch_id: str, tenant: str | None = None) -> Batch:
    """The batch; with `tenant`, only one of that tenant's (another tenant's batch is as unknown as none)."""
    b = s.get(Batch, batch_id)
    if b is None or (tenant is not None and b.tenant_id != tenant):
        raise NotFound(f"no batch {batch_id!r}: GET /batches (or `hitline status`) lists the batches")
    return b


# --- filters and pages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """Which jobs of a batch: all conditions must hold. `reason` is a case-insensitive substring;
    `reason_group` is a group label from summary() (the reason with row numbers and file names taken out)."""

    state: str | None = None
    stage: str | None = None
    reason: str | None = None
    kind: str | None = None
    job_ids: tuple[int, ...] | None = None
    reason_group: str | None = None

    def apply(self, q: Any) -> Any:
        if self.state:
            q = q.where(Job.state == self.state)
        if self.stage:
            q = q.where(Job.stage == self.stage)
        if self.kind:
            q = q.where(Job.kind == self.kind)
        if self.reason:
            q = q.where(func.lower(Job.error).contains(self.reason.lower(), autoescape=True))
        if self.job_ids is not None:
            q = q.where(Job.id.in_(self.job_ids))
        if self.reason_group is not None:
            q = q.where(Job.error.like(_group_pattern(self.reason_group), escape="\\"))
        return q


# what differs from SKU to SKU in otherwise equal reasons: the row number, a file name
_ROW, _FILE = "row <n>: ", "<file>"
_VARIABLE = (
    (re.compile(r"^row \d+: "), _ROW),
    (re.compile(r"[\w.-]+\.(?:jpe?g|png|webp|gif|tiff?|bmp|csv)\b", re.I), _FILE),
)


def reason_group(error: str | None) -> str:
    """The label failures are grouped under: 3,000 "cannot read image NEW0001.jpg" are one group."""
    label = error or ""
    for pattern, placeholder in _VARIABLE:
        label = pattern.sub(placeholder, label)
    return label


def _group_pattern(label: str) -> str:
    """A LIKE pattern matching the reasons of a group (the label's literal text escaped)."""
    out, i = [], 0
    while i < len(label):
        for placeholder, like in ((_ROW, "row %: "), (_FILE, "%")):
            if label.startswith(placeholder, i):
                out.append(like)
                i += len(placeholder)
                break
        else:
            ch = label[i]
            out.append("\\" + ch if ch in "%_\\" else ch)
            i += 1
    return "".join(out)


@dataclass
class JobPage:
    jobs: list[Job]
    next_cursor: str | None  # pass back as `cursor` for the next page; None on the last page


def list_jobs(
    s: Session, batch_id: str, flt: JobFilter = JobFilter(), *, cursor: str | None = None, limit: int = 100
) -> JobPage:
    """Jobs in id order, `limit` at a time. The cursor is the last id seen (keyset paging: a page costs
    the same at row 3,000 as at row 0, and jobs changing state do not shift later pages)."""
    get_batch(s, batch_id)
    after = _cursor(cursor)
    q = flt.apply(select(Job).where(Job.batch_id == batch_id, Job.id > after)).order_by(Job.id).limit(limit + 1)
    rows = list(s.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return JobPage(rows, str(rows[-1].id) if more and rows else None)


def _cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        after = int(cursor)
    except ValueError:
        after = -1
    if not 0 <= after <= MAX_ID:  # a 64-bit column: a larger number is no id this API returned
        raise InputError(f"cursor {cursor[:40]!r} is not one this API returned: use next_cursor of the previous page")
    return after


def list_batches(
    s: Session, *, cursor: str | None = None, limit: int = 50, tenant: str | None = None
) -> tuple[list[Batch], str | None]:
    """Newest first; the cursor is the id of the last batch seen (ids start with a UTC timestamp). With
    `tenant`, only that tenant's batches."""
    q = select(Batch).order_by(Batch.id.desc()).limit(limit + 1)
    if tenant is not None:
        q = q.where(Batch.tenant_id == tenant)
    if cursor:
        q = q.where(Batch.id < cursor)
    rows = list(s.scalars(q))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


# --- summary ---------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    batch_id: str
    created_at: Any
    cancelled: bool
    options: dict[str, Any]
    budget_usd: float | None
    spent_usd: float
    # kind -> state -> n, and kind -> stage -> state -> n (where the unfinished ones stand)
    by_state: dict[str, dict[str, int]] = field(default_factory=dict)
    by_stage: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # [{reason, stage, kind, count, retryable}]
    quality: BatchQuality = field(default_factory=BatchQuality)  # input checks, gate, render plan

    def total(self, kind: str = "sku") -> int:
        return sum(self.by_state.get(kind, {}).values())

    def count(self, state: str, kind: str = "sku") -> int:
        return self.by_state.get(kind, {}).get(state, 0)

    @property
    def open(self) -> int:
        return sum(n for states in self.by_state.values() for st, n in states.items() if st in crud.OPEN)


def summary(s: Session, batch_id: str, *, max_reasons: int = 50) -> BatchSummary:
    """Counts by kind/stage/state, failures grouped by reason (largest group first) and cost: a few
    GROUP BY queries, so a batch of thousands of SKUs summarises as fast as one of ten."""
    b = get_batch(s, batch_id)
    out = BatchSummary(
        b.id, b.created_at, b.cancelled_at is not None, dict(b.options or {}), b.budget_usd, crud.spent(s, batch_id)
    )
    rows = s.execute(
        select(Job.kind, Job.stage, Job.state, func.count())
        .where(Job.batch_id == batch_id)
        .group_by(Job.kind, Job.stage, Job.state)
    )
    for kind, stage, state, n in rows:
        out.by_state.setdefault(kind, {}).setdefault(state, 0)
        out.by_state[kind][state] += n
        out.by_stage.setdefault(kind, {}).setdefault(stage, {})[state] = n
    # grouped by the reason with row numbers and file names taken out; a rejected row never ran (no
    # attempt): retrying it cannot help, the CSV must change
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    failed = s.execute(
        select(Job.error, Job.stage, Job.kind, func.count(), func.max(Job.attempts))
        .where(Job.batch_id == batch_id, Job.state == FAILED)
        .group_by(Job.error, Job.stage, Job.kind)
    )
    for err, stage, kind, n, attempts in failed:
        g = groups.setdefault(
            (reason_group(err), stage, kind),
            {
                "reason": reason_group(err),
                "example": err or "",
                "stage": stage,
                "kind": kind,
                "count": 0,
                "retryable": False,
            },
        )
        g["count"] += n
        g["retryable"] = g["retryable"] or (attempts or 0) > 0
    out.failures = sorted(groups.values(), key=lambda g: (-g["count"], g["reason"]))[:max_reasons]
    out.quality = quality_summary(s, batch_id)
    from hitline.jobs.review import draft_summary

    drafts = draft_summary(s, batch_id, _prices())
    out.quality.drafts = DraftSummary.model_validate(drafts) if drafts else None
    return out


def _prices() -> Any:
    from hitline.jobs.context import get_runtime

    return get_runtime().prices


def quality_summary(s: Session, batch_id: str) -> BatchQuality:
    """What the rendered SKUs' digests (hitline.jobs.quality.digest) add up to: SKUs per input-check
    finding, outputs per gate outcome, and the render plan's saving (list prices without the plan vs
    with it; `paid_usd` is what the batch's render calls were charged). Equal digests are grouped in
    SQL, so a batch of thousands of SKUs costs one small GROUP BY."""
    # job.digest is the render result's digest, kept by crud.advance: counted from an index (batch_id,
    # digest) - parsing each SKU's ~5 KB result took seconds per 10,000 SKUs on PostgreSQL
    rows = s.execute(
        select(Job.digest, func.count()).where(Job.batch_id == batch_id, Job.digest.is_not(None)).group_by(Job.digest)
    )
    # SKUs per finding (low_res, background, touches_frame) and, per preset, how many were downsized
    # (to which size), failed, or needed a white background their flat-lay lacks
    inputs = InputCheckCounts()
    gate = {k: 0 for k in OUTCOMES}
    plan = PlanSaving()
    words: dict[str, Any] = {
        "mode": None,
        "skus": 0,
        "refused": 0,
        "machine_translated": 0,
        "model_usd_5_locales": 0.0,
        "overlay_usd_5_locales": 0.0,
        "saving_usd_5_locales": 0.0,
    }
    for raw, n in rows:
        d = Digest.model_validate_json(raw or "{}")
        found = d.inputs
        inputs.low_res += n if found.downsized or found.failed else 0
        for preset, size in found.downsized.items():
            by_size = inputs.downsized.setdefault(preset, {})
            by_size[size] = by_size.get(size, 0) + n
        for preset in found.failed:
            inputs.failed[preset] = inputs.failed.get(preset, 0) + n
        for preset in found.background:
            inputs.background_presets[preset] = inputs.background_presets.get(preset, 0) + n
        inputs.background += n if found.background else 0
        inputs.touches_frame += n if found.touches_frame else 0
        for k, m in d.gate.items():
            gate[k] = gate.get(k, 0) + m * n
        plan.skus += n
        plan.renders += d.plan.renders * n
        plan.derived += d.plan.derived * n
        plan.naive_usd += d.plan.naive_usd * n
        plan.cost_usd += d.plan.cost_usd * n
        if d.text:  # words on the pictures (hitline/jobs/localise.py)
            t = d.text
            words["mode"] = t.mode
            words["skus"] += n
            words["refused"] += t.refused * n
            words["machine_translated"] += t.machine_translated * n
            words["model_usd_5_locales"] += t.saving.model_usd * n
            words["overlay_usd_5_locales"] += t.saving.overlay_usd * n
            words["saving_usd_5_locales"] += t.saving.saving_usd * n
    plan.saving_usd = round(plan.naive_usd - plan.cost_usd, 6)
    plan.naive_usd, plan.cost_usd = round(plan.naive_usd, 6), round(plan.cost_usd, 6)
    plan.paid_usd = round(crud.spent(s, batch_id, stage=result_stage(RenderResult)), 6)
    if words["skus"]:  # per SKU: what 5 locales cost with the model writing the words vs hitline's overlay
        for k in ("model_usd_5_locales", "overlay_usd_5_locales", "saving_usd_5_locales"):
            words[f"{k}_per_sku"] = round(words.pop(k) / words["skus"], 6)
    return BatchQuality(input_checks=inputs, gate=gate, render_plan=plan, text=words if words["skus"] else None)


def render_facts(job: Job) -> RenderFacts | None:
    """One SKU's input checks (findings with their messages), gate outcomes and render plan, for the
    job rows of `hitline status --json` and GET /jobs/{id}; None before its render stage ran."""
    render = read(job, RenderResult)
    if render is None:
        return None
    inputs = render.inputs or InputRecord()
    # rows written before the digest existed: made from the result as it is
    d = render.digest or Digest.model_validate(digest(render.model_dump(mode="json", exclude_unset=True)))
    found = InputFindings(
        downsized=d.inputs.downsized,
        failed=inputs.failed_presets,
        background=d.inputs.background,
        touches_frame=d.inputs.touches_frame,
        warnings=inputs.warnings,
    )
    return RenderFacts(input_checks=found, gate=d.gate, render_plan=render.plan)


def is_rejected(job: Job) -> bool:
    """A row rejected at validation: failed without ever running. Its row is what the CSV said (any path)."""
    return job.state == FAILED and not job.attempts


def job_detail(s: Session, job_id: int, tenant: str | None = None) -> tuple[Job, list[Attempt]]:
    job = s.get(Job, job_id)
    if job is None or (
        tenant is not None and s.scalar(select(Batch.tenant_id).where(Batch.id == job.batch_id)) != tenant
    ):
        raise NotFound(f"no job {job_id}: GET /batches/{{id}}/jobs lists a batch's jobs")
    attempts = list(s.scalars(select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.id)))
    return job, attempts


def resolve_job_refs(s: Session, batch_id: str, refs: Iterable[str]) -> tuple[int, ...]:
    """Job ids from what a person types: a job id (digits) or a SKU / product id of the batch."""
    ids: list[int] = []
    for ref in refs:
        if ref.isdigit():
            ids.append(int(ref))
            continue
        found = list(s.scalars(select(Job.id).where(Job.batch_id == batch_id, Job.item_id == ref)))
        if not found:
            raise NotFound(f"batch {batch_id} has no job {ref!r} (`hitline status {batch_id} --jobs` lists them)")
        ids += found
    return tuple(ids)


# --- retry, cancel, reopen -------------------------------------------------------------------------


def retry_failed(s: Session, batch_id: str, flt: JobFilter = JobFilter()) -> list[Dispatch]:
    """Put the batch's failed jobs that match back to `pending` at the stage they failed in and return
    what to enqueue. Rows rejected at validation never ran and are left alone (they need a new CSV).
    The update is conditional on `failed`, so two operators clicking retry enqueue each job once."""
    b = get_batch(s, batch_id)
    if b.cancelled_at is not None:
        raise Conflict(f"batch {batch_id} is cancelled: resume it first (POST /batches/{batch_id}/resume)")
    q = flt.apply(
        select(Job.id, Job.kind, Job.stage).where(Job.batch_id == batch_id, Job.state == FAILED, Job.attempts > 0)
    )
    won: list[tuple[str, int, str]] = []
    for jid, kind, stage in s.execute(q.order_by(Job.id)).all():
        res = s.execute(
            update(Job)
            .where(Job.id == jid, Job.state == FAILED)
            .values(state="pending", error=None, claimed_at=None, claimed_by=None, enqueued_at=None)
            .execution_options(synchronize_session=False)
        )
        if rowcount(res) == 1:
            won.append((kind, jid, stage))
    return dispatches_for(batch_id, won)


def dispatches_for(batch_id: str, todo: list[tuple[str, int, str]]) -> list[Dispatch]:
    """Catalog jobs in chunks per stage (one batched call each), one chain per SKU from its stage on."""
    out: list[Dispatch] = []
    for stage in (st.name for st in CATALOG_LINE):
        ids = [i for k, i, st in todo if k == "hit" and st == stage]
        out += [Dispatch(batch_id, "hit", stage, tuple(c)) for c in chunks(ids)]
    return out + [Dispatch(batch_id, "sku", st, (i,)) for k, i, st in todo if k == "sku"]


def cancel(s: Session, batch_id: str) -> int:
    """Stop the batch: waiting jobs become `cancelled` now; running ones finish (and keep) their current
    stage and stop before the next (crud.claim refuses a cancelled batch). Returns the jobs stopped now."""
    b = get_batch(s, batch_id)
    if b.cancelled_at is None:
        b.cancelled_at = utcnow()
    s.flush()
    res = s.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.state.in_(("pending", "retrying", "budget_exceeded")))
        .values(state=crud.CANCELLED, error="cancelled", claimed_at=None, claimed_by=None, enqueued_at=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(res)


def reopen(s: Session, batch_id: str) -> int:
    """Undo a cancel: cancelled jobs go back to `pending` at the stage they stopped at (resume enqueues
    them). Returns how many."""
    b = get_batch(s, batch_id)
    b.cancelled_at = None
    # their messages were dropped when they stopped: enqueued_at=None tells resume to send them again
    res = s.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.state == crud.CANCELLED)
        .values(state="pending", error=None, enqueued_at=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(res)


# --- API tokens ------------------------------------------------------------------------------------


def _digest(token: str) -> str:
    # tokens are 256-bit random strings, so a plain SHA-256 suffices (no password stretching needed)
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


ROLES = ("read", "submit", "operate")  # each can do what the ones before it can


def ensure_tenant(s: Session, tenant: str) -> Tenant:
    """The tenant row, made on first use (embedded mode's default tenant needs no set-up)."""
    tenant = tenant.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", tenant):
        raise InputError(f"tenant {tenant[:80]!r}: 1 to 64 letters, digits, '_', '.' or '-', e.g. acme")
    row = s.get(Tenant, tenant)
    if row is None:
        row = Tenant(id=tenant)
        s.add(row)
        s.flush()
    return row


def require_tenant(s: Session, tenant: str) -> Tenant:
    """An existing tenant (the default one is made on first use, as everywhere in embedded mode); another
    name is an InputError saying how a server's admin makes it."""
    if tenant == DEFAULT_TENANT:
        return ensure_tenant(s, tenant)
    row = s.get(Tenant, tenant)
    if row is None:
        raise InputError(
            f"no tenant {tenant[:80]!r} on this server: its admin makes one with `hitline tenant create {tenant[:80]}`"
        )
    return row


def create_token(
    s: Session, name: str, *, tenant: str = DEFAULT_TENANT, role: str = "operate", expires_in: timedelta | None = None
) -> str:
    """A new token for `name` in `tenant` with `role`; returns the only copy of the token (the table keeps
    its hash)."""
    name = name.strip()
    if not name or len(name) > 64:
        raise InputError("a token name is 1 to 64 characters, e.g. the service or person using it")
    if role not in ROLES:
        raise InputError(f"role {role!r}: one of {', '.join(ROLES)}")
    if s.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"a token named {name!r} exists: pick another name (or `hitline token revoke {name}`)")
    ensure_tenant(s, tenant)
    token = "hl_" + secrets.token_urlsafe(32)
    s.add(
        ApiToken(
            name=name,
            token_sha256=_digest(token),
            tenant_id=tenant.strip(),
            role=role,
            expires_at=utcnow() + expires_in if expires_in else None,
        )
    )
    s.flush()
    return token


def can(token: ApiToken, role: str) -> bool:
    return ROLES.index(token.role if token.role in ROLES else "read") >= ROLES.index(role)


def verify_token(s: Session, token: str | None) -> ApiToken | None:
    """The live token row for a presented token, or None."""
    if not token:
        return None
    row = s.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token), ApiToken.revoked_at.is_(None)))
    now = utcnow()
    if row is not None and row.expires_at is not None and _aware(row.expires_at) <= now:
        return None
    if row is not None and (row.last_used_at is None or _aware(row.last_used_at) < now - _TOUCH_EVERY):
        row.last_used_at = now  # at most once a minute: a busy client does not write on every request
    return row


_TOUCH_EVERY = timedelta(minutes=1)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def revoke_token(s: Session, name: str) -> None:
    row = s.scalar(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)))
    if row is None:
        raise NotFound(f"no live token named {name!r} (`hitline token list`)")
    row.revoked_at = utcnow()


def tokens(s: Session) -> Iterable[ApiToken]:
    return list(s.scalars(select(ApiToken).order_by(ApiToken.id)))
