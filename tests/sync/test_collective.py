"""The collective weight broadcast's packing and a real gloo broadcast between threads
(the NCCL run is in tests/commands/test_gpu.py)."""

import os
import socket
import subprocess
import sys
import threading

import pytest
import torch
import torch.distributed as dist

from rlaif_ray.sync import collective
from rlaif_ray.sync.collective import (
    GroupSpec,
    SenderGoneError,
    buckets,
    close_group,
    layout_of,
    open_group,
    receive,
    send,
    serve_rendezvous,
)
from tests.watch import wait_for


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
    spec = GroupSpec(f"test-{bucket_bytes}", "127.0.0.1", serve_rendezvous("127.0.0.1", 60), 3,
                     "gloo", timeout_s=60, sender_pid=os.getpid())
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
    spec = GroupSpec("test-tp", "127.0.0.1", serve_rendezvous("127.0.0.1", 60), world_size, "gloo",
                     timeout_s=60, sender_pid=os.getpid())
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


SENDER = ("import sys; from rlaif_ray.sync.collective import serve_rendezvous; "
          "print(serve_rendezvous('127.0.0.1', 600), flush=True); sys.stdin.readline()")


def serving_sender():
    """A process serving a rendezvous, and its port."""
    sender = subprocess.Popen([sys.executable, "-c", SENDER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    return sender, int(sender.stdout.readline())


def test_receivers_of_a_sender_that_died_fail_at_once_not_after_the_timeout():
    """The sender serves its group's store before its address is out, for as long as it
    lives. A receiver already waiting there for the sender fails the moment the sender's
    process dies; one that arrives after finds nothing listening and fails at once, naming
    the address (both would have waited the group's 600 s before)."""
    sender, port = serving_sender()
    waiting = GroupSpec("test-waiting", "127.0.0.1", port, 2, "gloo", 600, sender.pid)
    watcher = dist.TCPStore("127.0.0.1", port, is_master=False)
    keys_before = watcher.num_keys()
    errors: list[BaseException] = []

    def receiver():
        try:
            open_group(waiting, 1)
        except BaseException as err:  # surfaced below
            errors.append(err)

    thread = threading.Thread(target=receiver)
    thread.start()
    wait_for(lambda: watcher.num_keys() > keys_before, 60, "the receiver at the store")
    sender.kill()
    sender.wait()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the receiver still waits for a dead sender"
    assert len(errors) == 1 and isinstance(errors[0], dist.DistNetworkError), errors
    late = GroupSpec("test-late", "127.0.0.1", port, 2, "gloo", 600, sender.pid)
    with pytest.raises(SenderGoneError, match=f"nothing listens at 127.0.0.1:{port}, where "
                                              "the sender of test-late meets its group"):
        open_group(late, 1)


def test_a_dead_senders_port_serving_something_else_is_no_rendezvous(monkeypatch):
    """The port a dead sender served, taken since by another listener (a Ray worker's gRPC
    server took one in a suite; TCPStore's own handshake would wait for it forever) or by
    another process's rendezvous: the receiver fails within the handshake's bound, not the
    group's 600 s."""
    monkeypatch.setattr(collective, "HANDSHAKE_S", 1.0)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = silent.getsockname()[1]
    with silent, pytest.raises(SenderGoneError, match="serves something else now"):
        open_group(GroupSpec("test-silent", "127.0.0.1", port, 2, "gloo", 600, 1), 1)
    other, port = serving_sender()
    try:
        with pytest.raises(SenderGoneError, match=f"process {other.pid} serves .* not its "
                                                  f"sender {other.pid + 1}"):
            open_group(GroupSpec("test-other", "127.0.0.1", port, 2, "gloo", 600,
                                 other.pid + 1), 1)
    finally:
        other.kill()
        other.wait()
