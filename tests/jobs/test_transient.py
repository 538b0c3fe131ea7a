"""Issue 23: one exception tree, mapped at each boundary by type or status code, never by message text.
Milvus (pymilvus/gRPC) leaves hitline.store.index as IndexUnavailable; SQLAlchemy and Redis connection
errors are recognised by class; is_transient reads types only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.exceptions
from pymilvus.client.types import Status
from pymilvus.exceptions import ConnectError, MilvusException
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from db import crud
from db.session import init_db, session_scope
from hitline.errors import IndexUnavailable, InputError, TransientError
from hitline.jobs.context import get_runtime
from hitline.jobs.runner import is_transient, run_step
from hitline.store.index import HitIndex, unavailable

# words the old is_transient looked for in a MilvusException's text
OLD_WORDS = "unavailable connect deadline timeout timed out closed"


def _looped(e: MilvusException) -> MilvusException:
    """pymilvus' decorators re-raise `raise e from e`: the exception is its own cause."""
    e.__cause__ = e
    return e


class _Rpc(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def _closed_channel_error() -> MilvusException:
    """What pymilvus raises on the client of a restarted Milvus Lite: its 'unexpected error' around the
    ValueError grpc raises on a closed channel (a real closed channel here)."""
    ch = grpc.insecure_channel("127.0.0.1:1")
    ch.close()
    try:
        ch.unary_unary("/milvus.proto.milvus.MilvusService/Search")(b"")
    except ValueError as e:
        try:
            raise MilvusException(message=f"Unexpected error, message=<{e!s}>") from e
        except MilvusException as wrapped:
            return wrapped
    raise AssertionError("a closed channel accepted a call")


class _Client:
    """A MilvusClient whose every call raises `exc`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def call(*_a: Any, **_k: Any) -> Any:
            raise self.exc

        return call


def _through_index(exc: BaseException) -> BaseException:
    """What leaves the Milvus boundary when the client raises exc."""
    index = HitIndex("unused.db", "hits", 4, "local/x", client=_Client(exc))  # type: ignore[arg-type]
    with pytest.raises(Exception) as caught:
        index.count()
    return caught.value


DOWN = [
    pytest.param(_Rpc(grpc.StatusCode.UNAVAILABLE), id="grpc-unavailable"),
    pytest.param(_Rpc(grpc.StatusCode.DEADLINE_EXCEEDED), id="grpc-deadline"),
    # pymilvus' retry timeout: the gRPC status as the code, the text says nothing we look at
    pytest.param(MilvusException(grpc.StatusCode.UNAVAILABLE, "[search] Retry timeout: 10s"), id="retry-timeout"),
    pytest.param(ConnectError(message="Fail connecting to server"), id="pymilvus-connect"),
    pytest.param(MilvusException(9999, "server busy", retriable=True), id="server-retriable"),
    pytest.param(None, id="closed-channel"),
    # what a killed milvus-lite server gave (probed live): the reconnect's CONNECT_FAILED, its own cause
    pytest.param(
        _looped(MilvusException(Status.CONNECT_FAILED, "Fail connecting to server on 127.0.0.1:1")),
        id="connect-failed-looped",
    ),
]


@pytest.mark.parametrize("exc", DOWN)
def test_an_unreachable_milvus_leaves_the_store_as_a_transient_error(exc: BaseException | None) -> None:
    exc = exc if exc is not None else _closed_channel_error()
    assert unavailable(exc)
    out = _through_index(exc)
    assert isinstance(out, IndexUnavailable) and isinstance(out, TransientError) and out.__cause__ is exc
    assert is_transient(out)


BAD_INPUT = [
    # the text carries every word the old substring match looked for: only the type/code decide
    pytest.param(MilvusException(1100, f"invalid filter `{OLD_WORDS}`", is_input_error=True), id="input-error"),
    pytest.param(MilvusException(100, f"collection {OLD_WORDS!r} not found"), id="no-collection"),
    pytest.param(_Rpc(grpc.StatusCode.INVALID_ARGUMENT), id="grpc-invalid-argument"),
    pytest.param(_looped(MilvusException(1100, OLD_WORDS, is_input_error=True)), id="input-error-looped"),
    pytest.param(MilvusException(message=f"Unexpected error, message=<{OLD_WORDS}>"), id="unexpected-no-cause"),
]


@pytest.mark.parametrize("exc", BAD_INPUT)
def test_a_refused_request_is_not_transient_whatever_its_text(exc: BaseException) -> None:
    assert not unavailable(exc)
    out = _through_index(exc)
    assert out is exc  # passed through unchanged: the SKU fails with pymilvus' reason
    assert not is_transient(out)


def test_a_message_with_the_old_words_is_not_transient() -> None:
    assert not is_transient(ValueError(f"Milvus {OLD_WORDS}"))
    assert not is_transient(InputError(f"row 3: {OLD_WORDS}"))
    assert not is_transient(MilvusException(1100, OLD_WORDS, is_input_error=True))


def test_redis_and_sqlalchemy_connection_errors_are_transient_by_type() -> None:
    assert is_transient(redis.exceptions.ConnectionError("Error 111 connecting"))
    assert is_transient(redis.exceptions.TimeoutError("Timeout reading from socket"))
    assert not is_transient(redis.exceptions.ResponseError(f"WRONGTYPE {OLD_WORDS}"))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert is_transient(DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True))
    assert not is_transient(DBAPIError("SELECT 1", {}, Exception(OLD_WORDS)))
    assert not is_transient(IntegrityError("INSERT", {}, Exception(f"duplicate key {OLD_WORDS}")))


def test_the_runner_keeps_the_job_when_milvus_is_unreachable(hitline_env: Path) -> None:
    """IndexUnavailable is a HitlineError, yet the job is not failed: the task re-raises it to retry."""
    url = get_runtime().db_url
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(
            s,
            "B",
            catalog_dir="c",
            new_dir="n",
            out_dir="o",
            options={"presets": ["thumbnail"]},
            budget_usd=None,
            notes=[],
        )
        job = crud.add_job(s, "B", "sku", "SKU1", 1, {}, "embed")
        s.flush()
        job_id = job.id

    def down(_jc: Any) -> dict[str, Any]:
        raise _through_index(_Rpc(grpc.StatusCode.UNAVAILABLE))

    with pytest.raises(IndexUnavailable):
        run_step(get_runtime(), job_id, "embed", down, ["embed", "render"], token="t1")
    with session_scope(url) as s:
        assert crud.job(s, job_id).state != "failed"
