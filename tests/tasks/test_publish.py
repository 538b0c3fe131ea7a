"""tasks.publish: a bulk submission sends one message per chain, in a few Redis pipelines, and each message
is the one Celery itself sends (tasks.publish.apply_chain, as main did) but for the task id and the job
id; so is each task-sent event Flower reads. A broker that fails mid-submit leaves exactly the unsent jobs
for `hitline resume`. Real brokers: a private redis-server, the in-memory one, a private RabbitMQ vhost.
The sender runs in a subprocess because the Celery app reads its broker URL at import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hitline.domain.fairness import sku_priority
from hitline.jobs.stages import SKU_LINE
from testkit.services import RabbitVhost, RedisServer

ROOT = Path(__file__).resolve().parents[2]
N = 1200  # more than two groups of tasks.publish.GROUP
REF = (
    999_999  # the reference job, sent by Celery itself; the bulk jobs are 1_000_001.. (no id is a substring of another)
)
FIRST = 1_000_001

SENDER = r"""
import json, sys
import redis.connection
from hitline.jobs.context import get_runtime
from hitline.jobs.submit import Dispatch
from tasks.chains import send, steps_for
from tasks.publish import GROUP, apply_chain
from workers.app import app

n, first, ref, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with app.producer_or_acquire() as producer:  # the reference: Celery's own send of one chain
    apply_chain(steps_for(Dispatch("B", "sku", "embed", (ref,))), producer)
trips = []
real = redis.connection.Connection.send_packed_command
redis.connection.Connection.send_packed_command = lambda self, *a, **k: (trips.append(1), real(self, *a, **k))[1]
send(get_runtime(), [Dispatch("B", "sku", "embed", (i,)) for i in range(first, first + n)])
redis.connection.Connection.send_packed_command = real
messages = []
with app.connection_for_read() as conn:
    queue = conn.SimpleQueue(app.amqp.queues["embed"], no_ack=True)
    while True:
        try:
            m = queue.get(timeout=2)
        except queue.Empty:
            break
        messages.append({"headers": m.headers, "properties": m.properties, "body": m.decode(),
                         "content_type": m.content_type, "content_encoding": m.content_encoding})
json.dump({"group": GROUP, "round_trips": len(trips), "messages": messages}, open(out, "w"))
"""


def _env(tmp_path: Path, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
    env.update(HITLINE_BROKER_URL=broker, HITLINE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    return env


def _run(script: str, args: list[str], env: dict[str, str]) -> None:
    res = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]


def _without_ids(m: dict[str, Any], job: int) -> str:
    """The message with its task id, job id, fair-sharing priority and transport-assigned fields taken
    out: what must be the same for every chain of a kind, whoever built it."""
    m = json.loads(json.dumps(m))
    for transport_field in ("delivery_tag", "delivery_info", "priority"):
        m["properties"].pop(transport_field, None)
    for step in m["body"][2]["chain"] or []:
        if step["task"] != "hitline.contact_sheet":
            step["options"].pop("priority", None)
    return json.dumps(m, sort_keys=True).replace(m["headers"]["id"], "<task id>").replace(str(job), "<job>")


def _job_of(m: dict[str, Any]) -> int:
    args, _kwargs, _embed = m["body"]
    return args[0]


@pytest.fixture(params=["redis", "memory", "amqp"])
def broker(request, tmp_path: Path):  # noqa: ANN001, ANN201
    if request.param == "memory":
        yield "memory://"
        return
    if request.param == "redis":
        if not shutil.which("redis-server"):
            pytest.skip("redis-server not installed; .ci/run provides it")
        server = RedisServer(tmp_path).start()
        yield server.url()
        server.stop()
        return
    if not shutil.which("rabbitmqctl"):
        pytest.skip("RabbitMQ not installed; .ci/run starts it")
    vhost = RabbitVhost().create()
    try:
        yield vhost.url()
    finally:
        vhost.delete()


def test_bulk_send_is_one_message_per_sku_as_celery_sends_it(tmp_path: Path, broker: str) -> None:
    out = tmp_path / "sent.json"
    _run(SENDER, [str(N), str(FIRST), str(REF), str(out)], _env(tmp_path, broker))
    res = json.loads(out.read_text())
    by_job: dict[int, list[dict[str, Any]]] = {}
    for m in res["messages"]:
        by_job.setdefault(_job_of(m), []).append(m)
    # every SKU exactly once, and nothing else
    assert sorted(by_job) == [REF, *range(FIRST, FIRST + N)]
    assert all(len(ms) == 1 for ms in by_job.values())
    (reference,) = by_job.pop(REF)
    _args, _kwargs, embed = reference["body"]
    # the registry's stages, then the contact sheet at the lowest priority (off the SKU's critical path)
    assert [reference["headers"]["task"], *(s["task"] for s in reversed(embed["chain"]))] == [
        *(st.task_name for st in SKU_LINE),
        "hitline.contact_sheet",
    ]
    assert embed["chain"][0]["options"]["priority"] == 9
    expected = _without_ids(reference, REF)
    task_ids = set()
    for job, (m,) in by_job.items():
        assert _without_ids(m, job) == expected, job
        # fair sharing: the n-th SKU of the batch, at its priority on every stage of its chain (the sheet at 9)
        prio = sku_priority(job - FIRST)
        assert m["properties"]["priority"] == prio, job
        assert [s["options"]["priority"] for s in m["body"][2]["chain"]] == [9] + [prio] * (len(SKU_LINE) - 1), job
        assert m["headers"]["root_id"] == m["headers"]["id"] == m["properties"]["correlation_id"]
        task_ids.add(m["headers"]["id"])
    assert len(task_ids) == N  # a task id of its own for each message
    if broker.startswith("redis"):
        # one pipeline per group of chains (+ a few for the producer's connection); one by one it was 2 per chain
        assert res["round_trips"] <= -(-N // res["group"]) + 5, res["round_trips"]


class _Recorder:
    """A producer that keeps what is published through it."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.calls.append((body, kwargs))


def _published(calls: list[tuple[Any, dict[str, Any]]], job: int) -> str:
    """Each publish call as the broker would get it (bodies decoded), without the ids and what may
    differ legitimately: the event's Lamport clock and timestamp, and which entities are declared."""
    from kombu.serialization import loads

    out = []
    for body, kwargs in calls:
        kwargs = dict(kwargs)
        if "content_type" in kwargs:  # sent pre-serialized
            body = loads(body, kwargs.pop("content_type"), kwargs.pop("content_encoding"))
            kwargs.pop("serializer", None)
        else:
            body = json.loads(json.dumps(body))
            kwargs.pop("serializer")
        kwargs.pop("declare", None)
        if isinstance(body, dict):  # the task-sent event
            body = {k: v for k, v in body.items() if k not in ("clock", "timestamp")}
        out.append({"body": body, **kwargs})
    task_id = calls[0][1]["headers"]["id"]
    return json.dumps(out, sort_keys=True).replace(task_id, "<task id>").replace(str(job), "<job>")


@pytest.mark.parametrize("inside_a_task", [False, True])
def test_templated_publishes_are_celerys_own_but_for_the_ids(inside_a_task: bool) -> None:
    """What reaches kombu, the message and its task-sent event (Flower's PENDING), field by field;
    inside a worker task (the submit_batch contract task) Celery sets root and parent ids from it."""
    from celery._state import _task_stack

    from hitline.jobs.submit import Dispatch
    from tasks.chains import publish, steps_for
    from tasks.publish import ChainSender, apply_chain
    from workers.app import app

    parent = app.tasks["hitline.embed"]  # any registered task, as the worker runs it
    if inside_a_task:
        parent.push_request(id="parent-task", root_id="root-task", called_directly=False)
        _task_stack.push(parent)
    try:
        with app.connection_for_write() as conn:
            celery = _Recorder(conn)
            apply_chain(steps_for(Dispatch("B", "sku", "embed", (REF,))), celery)
            ours = _Recorder(conn)
            sender = ChainSender(app, ours)
            for job in range(FIRST, FIRST + 3):
                publish(sender, Dispatch("B", "sku", "embed", (job,)))
    finally:
        if inside_a_task:
            _task_stack.pop()
            parent.pop_request()
    assert len(celery.calls) == 2  # the task and its task-sent event
    assert len(ours.calls) == 6
    expected = _published(celery.calls, REF)
    for n, job in enumerate(range(FIRST, FIRST + 3)):
        calls = ours.calls[2 * n : 2 * n + 2]
        assert _published(calls, job) == expected
        headers, event = calls[0][1]["headers"], calls[1][0]
        assert event["uuid"] == headers["id"] and event["type"] == "task-sent"
        assert (headers["root_id"], headers["parent_id"]) == (
            ("root-task", "parent-task") if inside_a_task else (headers["id"], None)
        )
        assert event["root_id"] == headers["root_id"]
    # the queue and the event exchange are declared with the first message of a producer only
    assert [bool(kw.get("declare")) for _, kw in ours.calls] == [True, True, False, False, False, False]
    clocks = [body["clock"] for body, _ in ours.calls[1::2]]
    assert clocks == sorted(set(clocks))  # the Lamport clock moves on with each event


FAILING = r"""
import json, sys
import redis.client
from sqlalchemy import select
from db import crud
from db.models import Job
from db.session import session_scope
from hitline.jobs.context import get_runtime
from hitline.jobs.resume import plan_resume
from hitline.jobs.submit import Dispatch
from tasks.chains import EnqueueFailed, send
from tasks.publish import GROUP
from workers.app import app

n, out = int(sys.argv[1]), sys.argv[2]
rt = get_runtime()
with session_scope(rt.db_url) as s:
    crud.create_batch(s, "B", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[])
    ids = crud.add_jobs(s, "B", "sku", [(f"SKU{i:05d}", {}) for i in range(n)], "embed")
real, flushes = redis.client.Pipeline.execute, []

def broker_dies_at_the_second_group(self, *a, **k):
    if len(self.command_stack) > 100:  # a group's pipeline, not a declaration
        flushes.append(len(self.command_stack))
        if len(flushes) >= 2:
            raise redis.exceptions.ConnectionError("Error 111 connecting to the broker. Connection refused.")
    return real(self, *a, **k)

redis.client.Pipeline.execute = broker_dies_at_the_second_group
try:
    send(rt, [Dispatch("B", "sku", "embed", (j,)) for j in ids])
    error = None
except EnqueueFailed as e:
    error = str(e)
redis.client.Pipeline.execute = real

def queued():
    r = redis.Redis.from_url(app.conf.broker_url)
    return sorted(json.loads(__import__("base64").b64decode(json.loads(m)["body"]))[0][0]
                  for key in r.scan_iter("embed*") for m in r.lrange(key, 0, -1))

with session_scope(rt.db_url) as s:
    stamped = sorted(s.scalars(select(Job.id).where(Job.enqueued_at.is_not(None))))
after_failure = queued()
todo = plan_resume(rt, "B")
send(rt, todo)  # `hitline resume B` once the broker is back
json.dump({"group": GROUP, "ids": ids, "error": error, "flushes": flushes, "stamped": stamped,
           "after_failure": after_failure, "resumed": sorted(j for d in todo for j in d.job_ids),
           "after_resume": queued()}, open(out, "w"))
"""


def test_a_broker_failure_mid_submit_leaves_exactly_the_unsent_jobs_for_resume(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed; .ci/run provides it")
    server = RedisServer(tmp_path).start()
    try:
        out = tmp_path / "failure.json"
        _run(FAILING, [str(N), str(out)], _env(tmp_path, server.url()))
    finally:
        server.stop()
    res = json.loads(out.read_text())
    ids, group = res["ids"], res["group"]
    assert res["error"] and "hitline resume B" in res["error"] and f"{group} of {N} jobs queued" in res["error"]
    # the first group reached the broker and is stamped; nothing of the failed group or after it is
    assert res["after_failure"] == res["stamped"] == ids[:group]
    assert res["resumed"] == ids[group:]
    assert res["after_resume"] == ids  # every job exactly once
