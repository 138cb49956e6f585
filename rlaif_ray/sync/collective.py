"""Weight broadcast over a torch.distributed process group: the trainer's rank 0 sends, and
every engine worker of every generator replica receives and loads in place. NCCL between
GPUs (no host copy, no object store: the path large policies need), gloo between CPU
processes (the same code, exercised by the CPU tests).

Tensors travel packed into byte buckets of at most `bucket_bytes` (a bigger tensor goes
alone). A group is opened once per membership, named by `GroupSpec.name`, and reused; the
driver names a new one when a member process changed (a restart) or a broadcast failed.

The members meet at a store the sender serves from before it tells anyone its address
(`serve_rendezvous`), for as long as it lives, holding the sender's process id. A receiver
that finds nothing listening there, something else (the port reused since), or another
process's store knows the sender is gone and fails within seconds, instead of waiting out
the group's timeout for a sender that will never come."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where tensors move: the driver only describes groups
    import torch

ALIGN = 16  # bytes; every tensor starts aligned in its bucket so it can be re-viewed
# Per process: (group name, rank) -> group. One name at a time in production; several ranks
# of one group share a process only in tests.
_open_groups: dict[tuple[str, int], torch.distributed.ProcessGroup] = {}
# Per process: port -> the rendezvous store this process serves to the groups it sends to.
_served_stores: dict[int, torch.distributed.TCPStore] = {}


# The key under which a served store holds its process id, and how long a receiver waits
# for it: a live store answers in milliseconds.
SENDER_KEY = "rlaif/sender-pid"
HANDSHAKE_S = 5.0


class SenderGoneError(ConnectionError):
    """A group's rendezvous is not its sender's any more: the sender's process ended."""


@dataclass(frozen=True)
class GroupSpec:
    """Where and how the members of one weight-broadcast group meet (rank 0 sends)."""

    name: str
    host: str
    port: int
    world_size: int
    backend: str  # "nccl" | "gloo"
    timeout_s: float
    sender_pid: int | None = None  # checked against the store's (None: not checked)


def receiver_ranks(replicas: int, tensor_parallel: int) -> tuple[list[int], int]:
    """(first rank of each replica's engine, the group's world size). Rank 0 sends; replica
    i's tensor-parallel workers join as its first rank plus their own TP rank."""
    return [1 + i * tensor_parallel for i in range(replicas)], 1 + replicas * tensor_parallel


@dataclass(frozen=True)
class TensorLayout:
    """One tensor of the broadcast: name, dtype name (e.g. "bfloat16") and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        import torch

        return torch.Size(self.shape).numel() * getattr(torch, self.dtype).itemsize


def layout_of(state_dict: dict[str, torch.Tensor]) -> list[TensorLayout]:
    """The broadcast layout of `state_dict`, in its order."""
    return [TensorLayout(name, str(t.dtype).removeprefix("torch."), tuple(t.shape))
            for name, t in state_dict.items()]


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def buckets(layout: list[TensorLayout], bucket_bytes: int) -> list[list[tuple[TensorLayout,
                                                                             int]]]:
    """Consecutive tensors grouped into buckets of at most `bucket_bytes`, each tensor with
    its aligned byte offset in the bucket."""
    out: list[list[tuple[TensorLayout, int]]] = []
    current: list[tuple[TensorLayout, int]] = []
    used = 0
    for item in layout:
        if current and used + item.nbytes > bucket_bytes:
            out.append(current)
            current, used = [], 0
        current.append((item, used))
        used = _aligned(used + item.nbytes)
    if current:
        out.append(current)
    return out


def _bucket_size(bucket: list[tuple[TensorLayout, int]]) -> int:
    item, offset = bucket[-1]
    return offset + item.nbytes


def backend_for(sync_backend: str, use_gpu: bool) -> str:
    """The process-group backend for config `generator.sync_backend` ("auto": NCCL when the
    trainer is on GPUs, else gloo)."""
    if sync_backend == "auto":
        return "nccl" if use_gpu else "gloo"
    return sync_backend


def free_port() -> int:
    """A TCP port free on this host now (for a group whose port is fixed before its sender
    starts: tests, the GPU check)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def serve_rendezvous(host: str, timeout_s: float, port: int = 0) -> int:
    """Serve, from this process and for as long as it lives, the store where the groups it
    sends to meet (once: later calls return the same port); `port` 0 picks a free one.
    Returns the port, for the receivers' `GroupSpec`."""
    import torch.distributed as dist

    for served in _served_stores:
        if port in (0, served):
            return served
    store = dist.TCPStore(host, port, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=timeout_s))
    store.set(SENDER_KEY, str(os.getpid()))
    _served_stores[store.port] = store
    return store.port


def _rendezvous(spec: GroupSpec, rank: int) -> torch.distributed.Store:
    """The store of `spec`'s group: rank 0's own (served from this process), or a client of
    it; SenderGoneError when the sender's store is not there any more."""
    import torch.distributed as dist

    if rank == 0:
        return _served_stores[serve_rendezvous(spec.host, spec.timeout_s, spec.port)]
    where = f"{spec.host}:{spec.port}, where the sender of {spec.name} meets its group"
    try:  # a dropped connection waits; a refused one is a port nobody serves
        socket.create_connection((spec.host, spec.port), timeout=spec.timeout_s).close()
    except ConnectionRefusedError as err:
        raise SenderGoneError(f"nothing listens at {where}: its process ended") from err
    # TCPStore's handshake waits for its answer without a bound: asked of a listener that is
    # no store, it would never return; its thread is left to end when that listener hangs up.
    client: dict[str, Any] = {}

    def connect() -> None:
        try:
            client["store"] = dist.TCPStore(spec.host, spec.port, is_master=False,
                                            timeout=timedelta(seconds=HANDSHAKE_S))
            client["pid"] = int(client["store"].get(SENDER_KEY))
        except Exception as err:  # reported below
            client["error"] = err

    handshake = threading.Thread(target=connect, name=f"rendezvous-{spec.name}", daemon=True)
    handshake.start()
    handshake.join(HANDSHAKE_S)
    if handshake.is_alive() or "error" in client:
        raise SenderGoneError(f"no rendezvous answers at {where} (the port serves something "
                              f"else now): its process ended") from client.get("error")
    if spec.sender_pid is not None and client["pid"] != spec.sender_pid:
        raise SenderGoneError(f"process {client['pid']} serves {where}, not its sender "
                              f"{spec.sender_pid}: the sender's process ended")
    store = client["store"]
    store.set_timeout(timedelta(seconds=spec.timeout_s))
    return store


def open_group(spec: GroupSpec, rank: int) -> torch.distributed.ProcessGroup:
    """Join the group `spec` as `rank` (blocks until every member joined), or return it if
    this process joined it already; groups of earlier memberships are dropped. Rank 0
    serves the group's store (`serve_rendezvous`, if it does not yet)."""
    import torch.distributed as dist

    key = (spec.name, rank)
    if key in _open_groups:
        return _open_groups[key]
    for stale in [k for k in _open_groups if k[0] != spec.name]:
        _open_groups.pop(stale, None)
    timeout = timedelta(seconds=spec.timeout_s)
    store = dist.PrefixStore(spec.name, _rendezvous(spec, rank))
    if spec.backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        group = dist.ProcessGroupNCCL(store, rank, spec.world_size, options)
    else:
        group = dist.ProcessGroupGloo(store, rank, spec.world_size, timeout)
    _open_groups[key] = group
    return group


def close_group(spec: GroupSpec, rank: int) -> None:
    """Leave the group `spec` as `rank`: its threads stop now, not in the interpreter's
    teardown (where a gloo group whose peer already left can abort the process). Call it
    after a barrier, when no member sends any more."""
    group = _open_groups.pop((spec.name, rank), None)
    if group is not None:
        group.shutdown()


def send(group: torch.distributed.ProcessGroup, state_dict: dict[str, torch.Tensor],
         bucket_bytes: int, device: torch.device) -> int:
    """Broadcast `state_dict` from rank 0 in the order of `layout_of(state_dict)`; returns
    the bytes sent."""
    import torch

    sent = 0
    for bucket in buckets(layout_of(state_dict), bucket_bytes):
        flat = torch.empty(_bucket_size(bucket), dtype=torch.uint8, device=device)
        for item, offset in bucket:
            source = state_dict[item.name].detach().contiguous().reshape(-1)
            flat[offset:offset + item.nbytes].copy_(source.view(torch.uint8))
        group.broadcast(flat, 0).wait()
        sent += flat.numel()
    return sent


def receive(group: torch.distributed.ProcessGroup, layout: list[TensorLayout],
            bucket_bytes: int, device: torch.device) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors rank 0 broadcasts for `layout`, one bucket at a time (lazily: the caller
    loads each bucket before the next arrives, so at most one bucket is held)."""
    import torch

    for bucket in buckets(layout, bucket_bytes):
        flat = torch.empty(_bucket_size(bucket), dtype=torch.uint8, device=device)
        group.broadcast(flat, 0).wait()
        for item, offset in bucket:
            raw = flat[offset:offset + item.nbytes]
            yield item.name, raw.view(getattr(torch, item.dtype)).view(item.shape)
