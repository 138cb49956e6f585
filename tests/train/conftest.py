"""What the trainer tests share: a one-process torch.distributed group."""

import os

import pytest
import torch
from vllm_server import free_port


@pytest.fixture(scope="module")
def distributed():
    """A one-process gloo group, as a Ray Train worker of one has."""
    from rlaif_ray.train.deepspeed_engines import init_distributed

    if not torch.distributed.is_initialized():
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0",
                          WORLD_SIZE="1", LOCAL_RANK="0")
        init_distributed(use_gpu=False)
