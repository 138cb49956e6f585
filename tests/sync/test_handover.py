"""The handover's bookkeeping as a state machine, step by step through what a trainer
restart does to it: a replayed version, a sender that died before or during its broadcast,
a payload and its probe arriving in either order. Pure logic, no Ray."""

from rlaif_ray.sync.handover import PENDING, Handover
from rlaif_ray.sync.update import BroadcastUpdate, PayloadUpdate, Sender

GROUP_A, GROUP_B = "generator-weights-1", "generator-weights-2"


def broadcast(pid):
    return BroadcastUpdate(bytes=8, probe=None, metrics={}, layout=[],
                           sender=Sender("node", 29500, pid))


def test_a_broadcast_goes_through_and_is_forgotten_once_synced():
    book = Handover()
    assert book.posted(1, broadcast(pid=10))
    assert book.group_for(1) is PENDING  # rank 0 waits for the driver's group
    assert book.start(1, GROUP_A, sender_pid=10)
    assert book.group_for(1) == GROUP_A
    book.ended(1, 10)
    assert book.sender_lost(1, 10, rank0_pid=10) is False  # it sent: alive
    assert book.synced_to(1, probe="p1") == []  # no payload copy yet
    assert (book.senders, book.sent, book.groups) == ({}, set(), {})
    assert book.group_for(1) is None  # served: a replay has nothing to send


def test_a_sender_that_died_before_its_group_is_replaced_by_its_restored_successor():
    book = Handover()
    book.posted(1, broadcast(pid=10))
    assert book.sender_lost(1, 10, rank0_pid=10) is None  # nothing known yet
    assert book.sender_lost(1, 10, rank0_pid=11) is True  # Ray Train restored rank 0
    book.posted(1, broadcast(pid=11))  # the restored rank 0 trains and posts it again
    assert not book.start(1, GROUP_A, sender_pid=10)  # the dead sender's group: refused
    assert book.group_for(1) is PENDING
    assert book.start(1, GROUP_B, sender_pid=11)
    assert book.group_for(1) == GROUP_B


def test_a_group_formed_for_an_earlier_sender_is_dropped_when_the_version_is_reposted():
    book = Handover()
    book.posted(2, broadcast(pid=10))
    book.start(2, GROUP_A, sender_pid=10)
    book.posted(2, broadcast(pid=11))  # rank 0 died mid-broadcast and was restored
    assert book.group_for(2) is PENDING


def test_a_version_the_generators_serve_is_dropped_when_replayed():
    book = Handover()
    book.synced_to(3)
    assert not book.posted(2, PayloadUpdate(bytes=8, probe=None, metrics={}, payload=[]))
    assert not book.posted(3, broadcast(pid=10))
    assert book.updates == {}
    assert book.posted(4, broadcast(pid=10)) and list(book.updates) == [4]


def test_a_payload_goes_to_the_store_once_its_probe_is_verified_in_either_order():
    book = Handover()
    assert book.add_payload(1, ["ref1"]) == []
    assert book.synced_to(1, probe="p1") == [(1, ["ref1"], "p1")]
    assert book.synced_to(2, probe="p2") == []
    assert book.add_payload(2, ["ref2"]) == [(2, ["ref2"], "p2")]
    assert (book.payloads, book.probes) == ({}, {})
