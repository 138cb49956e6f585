"""Live review in a real run: a person's verdict sent through the review page's HTTP API
while iteration 1 rolls out joins iteration 1's update, and the metrics count it."""

import io
import json
import re
import threading
import time

import pytest
import requests
from rich.console import Console
from toy import toy_args

from rlaif_ray.config import load_config
from rlaif_ray.data.records import part_files, read_candidates, table_dir
from rlaif_ray.pipeline import run_rlaif
from rlaif_ray.review.queue import merged_verdicts
from rlaif_ray.storage import StoragePath
from rlaif_ray.train.samples import confidence_floor, training_samples

pytestmark = pytest.mark.slow

# Two rule judges that disagree on some answers: those verdicts drop and await a person.
DISAGREEING_JUDGES = (
    "judges=[{name: vowel, kind: rule, checks: [{type: regex, pattern: '^\\s*[aeiouAEIOU]'}]},"
    " {name: has-e, kind: rule, checks: [{type: regex, pattern: '[eE]'}]}]")
WAIT_BOUND_S = 300.0
PAGE_URL = re.compile(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)")


def wait_for(condition, what):
    """Return once `condition()` holds; fail after WAIT_BOUND_S."""
    deadline, pause = time.monotonic() + WAIT_BOUND_S, threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.1)


def test_a_verdict_sent_during_iteration_1_joins_its_update(ray_session, model_cache,
                                                           tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    resume = tmp_path / "reviewed"
    # The run stands still in iteration 1's rollout until the reviewer has answered.
    monkeypatch.setenv("RLAIF_RAY_KILL_AT", f"rollout@1/pause={resume}")
    args = toy_args(model_cache, run_dir, 2)
    cfg = load_config(args[0], args[1:] + [DISAGREEING_JUDGES, "review.mode=live",
                                           "voting.ensemble=calibrated"])
    reviewed, failures, printed = [], [], io.StringIO()

    def reviewer():
        """A person opens the address the run printed, and answers through its API."""
        try:
            wait_for(lambda: part_files(StoragePath.of(table_dir(run_dir, "candidates", 1))),
                     "iteration 1's rollout")
            queue = [json.loads(line) for line in
                     (run_dir / "review" / "queue.jsonl").read_text().splitlines()]
            assert queue and {e["iteration"] for e in queue} == {0}  # written live
            page, token = PAGE_URL.search(printed.getvalue()).groups()
            reply = requests.post(
                f"{page}/api/verdicts", timeout=30, headers={"Authorization": f"Bearer {token}"},
                json={"review_id": queue[0]["review_id"], "reviewer": "ann",
                      "scores": dict.fromkeys(cfg.rubric.dimensions, 10)})
            assert reply.json() == {"written": 1, "skipped": 0}
            reviewed.append(queue[0])
        except BaseException as err:  # noqa: BLE001 - reported by the test's thread
            failures.append(err)
        finally:
            resume.touch()

    thread = threading.Thread(target=reviewer)
    thread.start()
    history = run_rlaif(cfg, Console(file=printed, width=80))
    thread.join(timeout=WAIT_BOUND_S)
    assert not failures, failures
    # The run served its own page, stopped at its end, and its line counts the verdict.
    out = printed.getvalue()
    with pytest.raises(requests.ConnectionError):
        requests.get(PAGE_URL.search(out)[1], timeout=5)
    assert "by people" not in out.split("iteration 1 done:")[0]
    assert "iteration 1 done:" in out and "1 by people" in out.split("iteration 1 done:")[1]
    item = reviewed[0]
    first, second = history
    assert first["human_verdicts"] == 0 and first["human_lag"] is None
    assert second["human_verdicts"] == 1 and second["human_lag"] == 1.0
    assert first["judge_human_agreement"] is None  # nobody had answered yet
    # Both judges voted on the item the person scored 10 everywhere: each agreed or not.
    assert set(second["judge_human_agreement"]) == {"vowel", "has-e"}
    assert set(second["judge_human_agreement"].values()) <= {0.0, 1.0}
    # Iteration 1 trained on its own standing answers plus the one the person judged.
    own = training_samples(read_candidates(run_dir, 1),
                           merged_verdicts(run_dir, 1, "pointwise"),
                           confidence_floor(1, cfg.curriculum), cfg.reward.length_penalty)
    assert second["train_samples"] == len(own) + 1
    row = next(v for v in merged_verdicts(run_dir, 0, "pointwise")
               if v.item_id == item["item_id"])
    assert row.source == "human" and row.reward == 1.0
    cutoffs = json.loads((run_dir / "review" / "live.json").read_text())
    assert sorted(cutoffs) == ["0", "1"] and row.reviewed_at <= cutoffs["1"]
