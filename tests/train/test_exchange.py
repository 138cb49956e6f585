"""The train exchange's bookkeeping (pure asyncio, no Ray): what it tells the driver about
the trainer, and which batches a restored worker can still replay."""

import asyncio

import pytest

from rlaif_ray.sync.update import BroadcastUpdate, Sender
from rlaif_ray.train.exchange import TrainExchange


def run(coro):
    return asyncio.run(coro)


def test_status_shows_restore_point_waiting_and_fetched_batches():
    async def scenario():
        ex = TrainExchange()
        await ex.register_worker(0, 123, first_iteration=2)
        waiter = asyncio.create_task(ex.get_batch(2, rank=0))
        await asyncio.sleep(0)
        status = await ex.status()
        assert status["restored"] == {0: 2} and status["waiting"] == {0: 2}
        assert status["batches"] == [] and status["fetched"] == {}
        await ex.put_batch(2, [{"x": 1}])
        assert await waiter == [{"x": 1}]
        status = await ex.status()
        assert status["waiting"] == {} and status["fetched"] == {2: [0]}
        assert status["silent_s"] < 1.0

    run(scenario())


def test_batches_are_kept_until_a_checkpoint_covers_them():
    async def scenario():
        ex = TrainExchange()
        for k in range(4):
            await ex.put_batch(k, [k])
        await ex.put_update(1, {"v": 1})
        assert (await ex.status())["batches"] == [0, 1, 2, 3]  # no checkpoint yet
        await ex.checkpointed(1)
        assert (await ex.status())["batches"] == [2, 3]

    run(scenario())


def test_a_version_the_generators_serve_is_not_posted_again():
    async def scenario():
        ex = TrainExchange()
        await ex.put_update(1, {"v": 1})
        assert await ex.get_update(1) == {"v": 1}
        await ex.synced(1)
        await ex.put_update(1, {"v": "replayed"})
        assert await ex.broadcast_group(1) is None  # a replay skips its hand-over
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ex.get_update(1), 0.05)

    run(scenario())


def status(**changes):
    base = {"workers": {0: 11}, "restored": {0: 0}, "waiting": {}, "fetched": {},
            "batches": [], "silent_s": 0.0}
    return {**base, **changes}


def test_a_trainer_restored_to_another_iteration_stops_the_run_at_once():
    from rlaif_ray.errors import TrainerError
    from rlaif_ray.train.trainer import progress_error

    # the reported hang: the driver resumes at 2, a stale snapshot made the trainer restore 1
    error = progress_error(2, status(restored={0: 1}, waiting={0: 1}, batches=[2]),
                           waited_s=1, since_submit_s=1, stall_s=300, step_timeout_s=1800)
    assert isinstance(error, TrainerError)
    assert "iteration 1" in str(error) and "driver is at iteration 2" in str(error)
    # a worker restored within the fit replays a batch the exchange still holds: fine
    assert progress_error(2, status(waiting={0: 1}, batches=[1, 2]), 1, 1, 300, 1800) is None


def test_a_trainer_that_does_not_start_the_step_stalls_after_the_stated_time():
    from rlaif_ray.errors import StallError, TrainerError
    from rlaif_ray.train.trainer import progress_error

    quiet = status(batches=[3], silent_s=400)
    assert progress_error(3, quiet, 100, since_submit_s=100, stall_s=300,
                          step_timeout_s=1800) is None  # the batch is new
    error = progress_error(3, quiet, 400, since_submit_s=400, stall_s=300, step_timeout_s=1800)
    assert isinstance(error, StallError) and "did not start iteration 3" in str(error)
    busy = status(batches=[3], fetched={3: [0]}, silent_s=1000)  # started: the step bound
    assert progress_error(3, busy, 1000, 1000, 300, 1800) is None
    assert isinstance(progress_error(3, busy, 1800, 1800, 300, 1800), TrainerError)


def test_a_broadcast_payload_waits_for_the_drivers_verified_sync():
    """Rank 0 posts a broadcast version's object-store copy only after its send went
    through; the exchange still hands it on only once the driver has verified that version
    (a restarted generator must never catch up to unverified weights)."""
    async def scenario():
        ex = TrainExchange()  # no store: forwarding just releases the payload
        await ex.put_payload(2, ["ref-2"])
        await ex.synced(1, probe="p1")
        assert 2 in ex._handover.payloads  # version 2 not verified yet: held back
        await ex.synced(2, probe="p2")
        assert ex._handover.payloads == {} and ex._handover.probes == {1: "p1"}

    run(scenario())


def test_each_process_that_takes_a_rank_learns_how_many_held_it_before():
    async def scenario():
        ex = TrainExchange()
        assert await ex.register_worker(0, 11) == 0
        assert await ex.register_worker(1, 12) == 0
        assert await ex.register_worker(0, 13, first_iteration=1) == 1  # Ray Train restored it
        assert (await ex.status())["starts"] == {0: 2, 1: 1}

    run(scenario())


def test_a_failed_broadcast_is_a_lost_sender_only_when_another_process_holds_rank_0():
    """The driver's question after a failed broadcast: did the sender die (resend from its
    restored successor) or did the receivers fail (the sender reports its send ended)?"""
    async def scenario():
        ex = TrainExchange()
        await ex.register_worker(0, 11)
        assert await ex.sender_lost(2, 11, 0.05) is None  # neither yet: undecided
        asking = asyncio.create_task(ex.sender_lost(2, 11, 5.0))
        await asyncio.sleep(0)
        await ex.register_worker(0, 12, first_iteration=1)
        assert await asking is True
        await ex.sent(3, 12)  # the new sender is alive and ended its send of version 3
        assert await ex.sender_lost(3, 12, 5.0) is False

    run(scenario())


def test_a_group_formed_for_a_dead_sender_never_reaches_its_successor():
    """The driver formed a group for rank 0 process 11; it died before it took the group,
    and its successor 12 posts the version again."""
    from rlaif_ray.sync.collective import GroupSpec

    def broadcast(port, pid):
        return BroadcastUpdate(0, None, {}, layout=[], sender=Sender("10.0.0.1", port, pid))

    def group(port):
        return GroupSpec(f"g{port}", "10.0.0.1", port, 2, "gloo", 30.0)

    async def scenario():
        ex = TrainExchange()
        await ex.put_update(2, broadcast(100, 11))
        await ex.get_update(2)
        assert await ex.start_broadcast(2, group(100), 11) is True  # never taken: 11 died
        await ex.put_update(2, broadcast(200, 12))
        with pytest.raises(TimeoutError):  # the stale group is gone
            await asyncio.wait_for(ex.broadcast_group(2), 0.05)
        assert await ex.start_broadcast(2, group(100), 11) is False  # late, for the dead one
        assert await ex.start_broadcast(2, group(200), 12) is True
        assert await ex.broadcast_group(2) == group(200)
        # Every post names a fresh port, but a group is reused while its members live.
        await ex.put_update(3, broadcast(300, 12))
        assert await ex.start_broadcast(3, group(200), 12) is True

    run(scenario())
