"""The collective weight broadcast's packing and a real gloo broadcast between threads
(the NCCL run is in tests/commands/test_gpu.py)."""

import threading

import pytest
import torch

from rlaif_ray.sync import collective
from rlaif_ray.sync.collective import (
    GroupSpec,
    buckets,
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
    for rank in (1, 2):
        assert list(received[rank]) == list(state)
        for name, tensor in state.items():
            assert received[rank][name].dtype == tensor.dtype
            assert torch.equal(received[rank][name], tensor), name
