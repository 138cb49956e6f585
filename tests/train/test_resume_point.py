"""The one rule that picks a resume point, and checkpoint hygiene, on real directories
laid out as Ray Train writes them (fits under run.dir/checkpoints/<fit>/checkpoint_*)."""

import json

import pytest

from rlaif_ray.train.checkpoints import (
    POLICY_FILE,
    checkpoint_due,
    committed_iterations,
    discard_after,
    list_checkpoints,
    prune,
    read_probe,
    resume_mismatch,
    resume_point,
    write_probe,
    write_state,
)


def make_fit(run_dir, fit):
    """A fit's directory as Ray Train 2.60 leaves it before its first checkpoint."""
    path = run_dir / "checkpoints" / fit
    path.mkdir(parents=True, exist_ok=True)
    (path / ".validate_storage_marker").write_bytes(b"")
    (path / "checkpoint_manager_snapshot.json").write_text('{"checkpoint_results": []}')
    return path


def make_checkpoint(run_dir, fit, iteration, policy=b"weights", critic=None):
    path = make_fit(run_dir, fit) / f"checkpoint_{iteration:03d}"
    (path / "actor").mkdir(parents=True)
    (path / "actor" / "mp_rank_00_model_states.pt").write_bytes(b"actor" * 10)
    (path / POLICY_FILE).write_bytes(policy)
    write_state(path, iteration, critic)
    return path


def rows(*iterations):
    return [{"iteration": k} for k in iterations]


def test_committed_iterations_counts_the_unbroken_prefix():
    assert committed_iterations([]) == 0
    assert committed_iterations(rows(0, 1, 2)) == 3
    assert committed_iterations(rows(0, 2)) == 1
    assert committed_iterations(rows(1, 2)) == 0
    assert committed_iterations(rows(0, 1, 1)) == 2  # a duplicate line counts once


def test_resume_point_is_the_newest_committed_checkpoint_across_fits(tmp_path):
    make_checkpoint(tmp_path, "trainer-a", 0)
    make_checkpoint(tmp_path, "trainer-a", 1)
    make_checkpoint(tmp_path, "trainer-b", 2)  # a later fit, after a resume
    assert [c.iteration for c in list_checkpoints(tmp_path)] == [0, 1, 2]
    assert resume_point(tmp_path, committed=3).iteration == 2
    # killed between checkpoint 2 and its metrics line: go back one
    assert resume_point(tmp_path, committed=2).iteration == 1
    assert resume_point(tmp_path, committed=0) is None


def test_a_checkpoint_cut_short_is_not_used(tmp_path):
    make_checkpoint(tmp_path, "trainer-a", 0)
    torn = make_checkpoint(tmp_path, "trainer-a", 1)
    (torn / POLICY_FILE).write_bytes(b"wei")  # a copy cut short
    missing = make_checkpoint(tmp_path, "trainer-a", 2)
    (missing / "actor" / "mp_rank_00_model_states.pt").unlink()
    garbled = make_checkpoint(tmp_path, "trainer-a", 3)
    (garbled / "rlaif_state.json").write_text('{"iter')
    assert [c.iteration for c in list_checkpoints(tmp_path)] == [0]


def test_state_lists_every_file_with_its_size(tmp_path):
    path = make_checkpoint(tmp_path, "trainer-a", 4)
    state = json.loads((path / "rlaif_state.json").read_text())
    assert state == {"iteration": 4, "critic": None, "lora_rank": 0,
                     "files": {"actor/mp_rank_00_model_states.pt": 50, POLICY_FILE: 7}}


def test_discard_after_removes_the_iterations_that_run_again(tmp_path):
    for k in range(4):
        make_checkpoint(tmp_path, "trainer-a", k)
    removed = discard_after(tmp_path, 1)
    assert len(removed) == 2 and not any(p.exists() for p in removed)
    assert [c.iteration for c in list_checkpoints(tmp_path)] == [0, 1]


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_prune_keeps_committed_checkpoints_and_never_an_uncommitted_one(tmp_path, keep):
    make_fit(tmp_path, "trainer-0")  # killed before its first checkpoint
    for k in range(5):
        make_checkpoint(tmp_path, "trainer-a" if k < 2 else "trainer-b", k)
    make_fit(tmp_path, "trainer-c")  # the running fit, no checkpoint yet
    prune(tmp_path, keep, committed=4)  # iteration 4's metrics line not written yet
    left = [c.iteration for c in list_checkpoints(tmp_path)]
    assert left == list(range(4 - keep, 4)) + [4]
    fits = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert fits == (["trainer-a", "trainer-b", "trainer-c"] if keep == 3
                    else ["trainer-b", "trainer-c"])
    # a crash now still finds the newest committed checkpoint
    assert resume_point(tmp_path, committed=4).iteration == 3


def test_checkpoint_due_every_k_and_always_the_last():
    assert [k for k in range(7) if checkpoint_due(k, 3, 7)] == [2, 5, 6]
    assert [k for k in range(3) if checkpoint_due(k, 1, 3)] == [0, 1, 2]


@pytest.mark.parametrize("written, now, refused", [
    ("separate", "separate", False), ("shared", "shared", False), (None, None, False),
    ("separate", None, False),  # a critic-free run leaves the saved critic unused
    ("separate", "shared", True), ("shared", "separate", True), (None, "separate", True),
    (None, "shared", True), ("shared", None, True),
])
def test_a_checkpoint_resumes_only_a_run_with_the_same_critic(tmp_path, written, now,
                                                              refused):
    make_checkpoint(tmp_path, "fit-a", 0, critic=written)
    (checkpoint,) = list_checkpoints(tmp_path)
    assert checkpoint.critic == written
    reason = resume_mismatch(checkpoint, now)
    assert (reason is not None) == refused
    if refused:
        assert "trainer.critic" in reason and str(checkpoint.path) in reason


def test_a_checkpoint_written_before_the_state_named_its_critic(tmp_path):
    path = make_checkpoint(tmp_path, "fit-a", 0)
    state = json.loads((path / "rlaif_state.json").read_text())
    del state["critic"]
    (path / "rlaif_state.json").write_text(json.dumps(state))
    assert list_checkpoints(tmp_path)[0].critic is None
    (path / "critic").mkdir()
    (path / "critic" / "mp_rank_00_model_states.pt").write_bytes(b"critic")
    state["files"]["critic/mp_rank_00_model_states.pt"] = 6
    (path / "rlaif_state.json").write_text(json.dumps(state))
    assert list_checkpoints(tmp_path)[0].critic == "separate"


def test_the_probe_saved_with_a_policy_is_read_back_and_counts_toward_completeness(tmp_path):
    path = tmp_path / "checkpoints" / "fit" / "checkpoint_000"
    path.mkdir(parents=True)
    (path / POLICY_FILE).write_bytes(b"weights")
    probe = {"token_ids": [5, 9, 2], "logprobs": [-1.5, -0.25], "tolerance": 0.05,
             "digests": {"lm_head.weight": 3735928559}}
    write_probe(path, probe, "bfloat16")
    write_state(path, 0)
    [checkpoint] = list_checkpoints(tmp_path)
    assert read_probe(checkpoint) == (probe, "bfloat16")
    (path / "policy_probe.json").write_text("{}")  # cut short: not a complete checkpoint
    assert list_checkpoints(tmp_path) == []
    older = make_checkpoint(tmp_path / "older", "fit", 0)  # written before probes were saved
    assert read_probe(list_checkpoints(tmp_path / "older")[0]) is None and older.exists()
