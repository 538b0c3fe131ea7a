"""The same new-products file and options submitted three times with one idempotency key (two at the
same moment, as a client retrying a timed-out request would, and one later): one batch, each SKU
rendered and charged once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .conftest import check_no_double_render

N_SKUS = 10


def test_same_idempotency_key_makes_one_batch(make_line, skus_factory) -> None:  # noqa: ANN001
    line = make_line(fake_args=("--latency", "image=0.3:0.6"))
    line.workers.start("embed,index,retrieve,analyze,render", concurrency=6, name="all")
    new = skus_factory(N_SKUS)
    with ThreadPoolExecutor(2) as pool:
        first = list(pool.map(lambda _: line.submit(new, idempotency_key="merchant-42-2026-11-26"), range(2)))
    line.wait_until("a few SKUs done", lambda: line.states(first[0])[("done", "done")] >= 1, 180)
    again = line.submit(new, idempotency_key="merchant-42-2026-11-26")
    assert first[0] == first[1] == again
    line.wait_terminal(again, 120)
    assert line.sql("SELECT count(*) FROM batch")[0][0] == 1
    assert line.states(again) == {("done", "done"): N_SKUS}
    check_no_double_render(line, again, N_SKUS)
    # a different request under the same key is refused, not merged into the batch
    other = skus_factory(N_SKUS + 1)
    try:
        line.submit(other, idempotency_key="merchant-42-2026-11-26")
    except AssertionError as e:
        assert "different request" in str(e)
    else:
        raise AssertionError("a different request under a used key was accepted")
    assert line.sql("SELECT count(*) FROM job WHERE kind = 'sku'")[0][0] == N_SKUS
