"""Exact weight checksums: equal bytes agree, any change of any weight (however small)
is named, and so are missing or unexpected tensors."""

import pytest
import torch

from rlaif_ray.errors import WeightSyncError
from rlaif_ray.sync.digest import check_digests, digesting, state_digests, tensor_digest


def test_digest_sees_a_change_of_1e7_in_one_weight():
    state = {"w": torch.randn(64, 64), "b": torch.randn(64).bfloat16()}
    expected = state_digests(state)
    changed = {k: v.clone() for k, v in state.items()}
    changed["w"][3, 5] += 1e-7 * max(1.0, abs(float(changed["w"][3, 5])) * 10)
    assert not torch.equal(changed["w"], state["w"])
    with pytest.raises(WeightSyncError, match=r"different bytes in 1 \(w\)"):
        check_digests(expected, state_digests(changed), "generator-0 worker 0", 3)
    check_digests(expected, state_digests({k: v.clone() for k, v in state.items()}), "g", 3)


def test_digest_depends_on_dtype_and_shape_of_the_bytes():
    x = torch.arange(8, dtype=torch.float32)
    assert tensor_digest(x) != tensor_digest(x.double())
    assert tensor_digest(x) == tensor_digest(x.reshape(2, 4))  # bytes, not shape
    assert tensor_digest(x[::2]) == tensor_digest(x[::2].contiguous())


def test_missing_and_unexpected_tensors_are_named():
    expected = {"a": 1, "b": 2}
    with pytest.raises(WeightSyncError, match=r"missing 1 \(b\); unexpected 1 \(c\)"):
        check_digests(expected, {"a": 1, "c": 3}, "generator-1 worker 0", 2)


def test_digesting_records_what_passes_through():
    weights = [("a", torch.ones(3)), ("b", torch.zeros(2))]
    seen = {}
    assert [n for n, _ in digesting(weights, seen)] == ["a", "b"]
    assert seen == state_digests(dict(weights))


def test_state_digests_on_threads_name_each_tensors_own():
    generator = torch.Generator().manual_seed(0)
    state = {f"t{i}": torch.randn(int(torch.randint(1, 5000, (1,), generator=generator)),
                                  generator=generator) for i in range(40)}
    assert state_digests(state) == {name: tensor_digest(t) for name, t in state.items()}
    assert list(state_digests(state)) == list(state)
