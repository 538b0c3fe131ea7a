"""kill -9 of a render worker mid-render, on Redis and on RabbitMQ: with no operator command the SKUs
end done, each (SKU, preset) is paid once (plus at most one repeat of each call cut mid-flight), the
charge table holds one settled charge per image, and the killed worker's rate-limit leases are freed."""

from __future__ import annotations

import time

import pytest

from .conftest import FAST_RECOVERY, RENDER_MODEL, check_no_double_render

N_SKUS = 16
# lease 6 s + a pass every 2 s + a render of ~2 s + queueing behind the others: 60 s is generous
RECOVERY_BOUND_S = 60.0
RATE_LEASE_S = 6.0


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_kill9_render_worker_mid_render(make_line, skus_factory, broker: str) -> None:  # noqa: ANN001
    import redis

    line = make_line(broker=broker, fake_args=("--latency", "image=1.5:2.0"))
    front = line.workers.start("embed,index,retrieve,analyze", concurrency=4, name="front")
    victim = line.workers.start("render", concurrency=2, name="render-a")
    line.workers.start("render", concurrency=2, name="render-b")
    batch = line.submit(skus_factory(N_SKUS))
    assert front.alive()

    # wait until both render workers are in provider calls (3+ in-flight leases), then kill one
    limiter = redis.Redis.from_url(line.env["HITLINE_REDIS_URL"])
    inflight_key = f"hitline:rl:{{{RENDER_MODEL}}}:inflight"
    line.wait_until("3 renders in flight", lambda: limiter.zcard(inflight_key) >= 3, 120, poll=0.05)
    leases = set(limiter.zrange(inflight_key, 0, -1))
    victim.kill9()
    running = line.states(batch)[("render", "running")]
    assert leases and running >= 3, (leases, running)
    killed_at = time.monotonic()

    # the leases held at the kill are gone within the lease (the victim's expire, the survivor's end)
    freed = line.wait_until(
        "leases of the kill freed", lambda: not (leases & set(limiter.zrange(inflight_key, 0, -1))), RATE_LEASE_S + 4
    )
    line.wait_terminal(batch, RECOVERY_BOUND_S + 60)
    recovered = time.monotonic() - killed_at
    states = line.states(batch)
    assert states == {("done", "done"): N_SKUS}, states
    assert recovered <= RECOVERY_BOUND_S, f"batch took {recovered:.0f} s after the kill"
    # no render paid twice beyond the calls cut mid-flight: at most the victim's 2 threads' calls
    check_no_double_render(line, batch, N_SKUS, cut_mid_flight=2)
    lost = line.sql(
        "SELECT count(*) FROM attempt a JOIN job j ON j.id = a.job_id WHERE j.batch_id = :b AND a.outcome = 'lost'",
        b=batch,
    )[0][0]
    assert lost >= 1  # the table says what happened: the dead worker's attempts are marked lost
    print(
        f"\n[{broker}] kill -9 with {running} renders running: leases freed after {freed:.1f} s, "
        f"batch done {recovered:.1f} s after the kill (lease {FAST_RECOVERY['HITLINE_CLAIM_LEASE_S']} s)"
    )
