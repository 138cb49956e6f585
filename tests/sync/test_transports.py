"""The weight transports' registry: one per `generator.sync_transport`, found by name and by
the update it posts (their two sides run end to end in tests/commands/test_faults.py's
trainer-kill test and tests/commands/test_pipeline.py)."""

import pytest

from rlaif_ray.config import ConfigError, load_config
from rlaif_ray.sync.transports import TRANSPORTS, transport, transport_of
from rlaif_ray.sync.update import BroadcastUpdate, PayloadUpdate, PolicyUpdate, Sender


def test_each_update_type_names_its_transport_and_each_transport_its_own_type():
    payload = PayloadUpdate(8, None, {}, payload=[])
    broadcast = BroadcastUpdate(8, None, {}, layout=[], sender=Sender("h", 1, 2))
    assert transport_of(payload) is transport("object_store")
    assert transport_of(broadcast) is transport("collective")
    assert [t.update_type for t in TRANSPORTS.values()] == [PayloadUpdate, BroadcastUpdate]
    # Only the collective's copies reach the policy store through the exchange.
    assert [t.forwards_payloads for t in TRANSPORTS.values()] == [False, True]
    with pytest.raises(TypeError, match="no weight transport posts a PolicyUpdate"):
        transport_of(PolicyUpdate(8, None, {}))


def test_an_unknown_transport_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown weight transport 'nccl'; choose one of "
                                         "object_store, collective"):
        transport("nccl")
    with pytest.raises(ConfigError, match=r"generator\.sync_transport.*must be one of "
                                          r"object_store, collective"):
        load_config(None, ["generator.sync_transport=rdma"])
