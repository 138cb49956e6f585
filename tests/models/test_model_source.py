"""What each process does to find its model on its own node (without Ray: the shipping of
embedded builds between nodes runs in tests/foundations/test_local_cluster.py)."""

import json
import shutil
from pathlib import Path

import pytest

from rlaif_ray.model_source import (
    ModelNotOnNode,
    ModelSource,
    build_digest,
    local_model_path,
    model_source,
)


def test_a_directory_on_this_node_is_loaded_from_where_it_is(tmp_path):
    source = ModelSource("generator.model", str(tmp_path))
    assert local_model_path(source) == str(tmp_path)


def test_a_model_missing_on_this_node_is_an_error_naming_key_model_and_node(tmp_path):
    missing = tmp_path / "models" / "llama"
    with pytest.raises(ModelNotOnNode, match=r"^judges\[0\]\.model '.*/models/llama' is not "
                       r"an existing directory .*, on node (\(no Ray\)|[\d.]+): every node loads"):
        local_model_path(ModelSource("judges[0].model", str(missing)))


def test_a_build_is_known_by_its_files_digests(tmp_path, policy_path):
    policy_path = Path(policy_path)
    copy = tmp_path / "tiny-llama"
    shutil.copytree(policy_path, copy)
    assert build_digest(copy) == build_digest(policy_path) is not None
    record = json.loads((copy / "BUILD.json").read_text())
    record["files"]["model.safetensors"] = "0" * 64
    (copy / "BUILD.json").write_text(json.dumps(record))
    assert build_digest(copy) != build_digest(policy_path)
    assert build_digest(tmp_path) is None  # not a build


def test_a_directory_is_never_taken_for_an_embedded_build(tmp_path, policy_path):
    """A copy of a build with other weights (an exported policy, a fine-tuned model) keeps
    a BUILD.json that describes the old weights: it is a plain directory, loaded where it
    is, never replaced by the embedded build's files."""
    copy = tmp_path / "tiny-llama"
    shutil.copytree(policy_path, copy)
    assert model_source(str(copy), "generator.model") == ModelSource("generator.model",
                                                                     str(copy))
