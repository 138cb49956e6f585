"""The collective weight broadcast's packing and a real gloo broadcast between threads
(the NCCL run is in tests/commands/test_gpu.py)."""

import threading

import pytest
import torch

from rlaif_ray.sync import collective
from rlaif_ray.sync.collective import (
    GroupSpec,
    buckets,
    close_group,
    layout_of,
    open_group,
    receive,
    send,
)


def mixed_state_dict():
    torch.manual_seed(0)
    return {"embed": torch.randn(33, 7), "norm": torch.randn(7).bfloat16(),
            "odd": torch.arange(5, dtype=torch.int8), "scalar": torch.tensor(3.5),
            "big": torch.randn(64, 64).half(), "last": torch.randn(3, 5, dtype=torch.float64)}


def test_buckets_respect_size_and_alignment():
    layout = layout_of(mixed_state_dict())
    packed = buckets(layout, bucket_bytes=1024)
    assert [item for bucket in packed for item, _ in bucket] == layout  # order kept
    for bucket in packed:
        assert all(offset % collective.ALIGN == 0 for _, offset in bucket)
        if len(bucket) > 1:
            last, offset = bucket[-1]
            assert offset + last.nbytes <= 1024
    assert any(len(b) == 1 and b[0][0].nbytes > 1024 for b in packed)  # "big" goes alone


@pytest.mark.parametrize("bucket_bytes", [64, 1 << 20])
def test_gloo_broadcast_round_trips_every_dtype(bucket_bytes):
    state = mixed_state_dict()
    layout = layout_of(state)
    spec = GroupSpec(f"test-{bucket_bytes}", "127.0.0.1", collective.free_port(), 3, "gloo",
                     timeout_s=60)
    received: dict[int, dict[str, torch.Tensor]] = {}
    errors: list[BaseException] = []

    def member(rank):
        try:
            group = open_group(spec, rank)
            assert open_group(spec, rank) is group  # reused, not formed again
            if rank == 0:
                send(group, state, bucket_bytes, torch.device("cpu"))
            else:  # clone: the yielded tensors are views of the bucket buffers
                received[rank] = {k: v.clone() for k, v in
                                  receive(group, layout, bucket_bytes, torch.device("cpu"))}
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=member, args=(rank,)) for rank in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for rank in range(3):  # every member leaves: none is left to the interpreter's exit
        close_group(spec, rank)
    assert not any(name == spec.name for name, _ in collective._open_groups)
    for rank in (1, 2):
        assert list(received[rank]) == list(state)
        for name, tensor in state.items():
            assert received[rank][name].dtype == tensor.dtype
            assert torch.equal(received[rank][name], tensor), name


class TensorParallelWorker:
    """What `receive_into_worker` uses of a vLLM worker: its TP rank, device and weight
    reload (a seam: this machine cannot run a tensor-parallel engine)."""

    def __init__(self, rank):
        self.rank, self.device, self.loaded = rank, torch.device("cpu"), {}

    def reload_weights(self, weights_iterator):
        self.loaded = {name: tensor.clone() for name, tensor in weights_iterator}


def test_two_replicas_of_two_tp_ranks_each_take_their_own_rank_and_every_tensor():
    from rlaif_ray.rollout.generator import receive_into_worker
    from rlaif_ray.sync.collective import receiver_ranks
    from rlaif_ray.sync.digest import tensor_digest

    firsts, world_size = receiver_ranks(replicas=2, tensor_parallel=2)
    assert (firsts, world_size) == ([1, 3], 5)
    state = mixed_state_dict()
    layout = layout_of(state)
    spec = GroupSpec("test-tp", "127.0.0.1", collective.free_port(), world_size, "gloo",
                     timeout_s=60)
    workers = {(first, tp): TensorParallelWorker(tp) for first in firsts for tp in (0, 1)}
    digests, errors = {}, []

    def member(key):
        try:
            if key is None:
                send(open_group(spec, 0), state, 256, torch.device("cpu"))
            else:
                digests[key] = receive_into_worker(workers[key], spec, key[0], layout, 256)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=member, args=(key,)) for key in [None, *workers]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(r for (name, r) in collective._open_groups if name == "test-tp") == [
        0, 1, 2, 3, 4]
    for rank in range(world_size):
        close_group(spec, rank)
    for key, worker in workers.items():
        assert digests[key] == {k: tensor_digest(v) for k, v in state.items()}
        assert all(torch.equal(worker.loaded[k], v) for k, v in state.items()), key
