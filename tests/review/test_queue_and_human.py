"""The review queue and people's verdicts on hand-written runs: order, filters, checks,
idempotent append-only writes, and every reader seeing the person's verdict."""

import pytest

from rlaif_ray.data.records import read_parts, table_dir
from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS
from rlaif_ray.review.forms import Answer
from rlaif_ray.review.human import HumanVerdicts, import_review, parse_answer
from rlaif_ray.review.queue import QueueFilter, ReviewError, merged_verdicts, review_queue

DIMENSIONS = tuple(DEFAULT_DIMENSIONS)


def scores(*values):
    return dict(zip(DIMENSIONS, values, strict=True))


def test_queue_is_lowest_confidence_first_with_every_vote(pointwise_run):
    run_dir, _ = pointwise_run
    queue = review_queue(run_dir, "pointwise")
    assert [e["review_id"] for e in queue] == ["1:d", "0:a", "0:b"]  # 0.0, 0.1, 0.2
    a = queue[1]
    assert [v["judge"] for v in a["votes"]] == ["j1", "j2"]
    assert a["votes"][0]["scores"] == {d: float(s) for d, s in scores(2, 5, 5, 9).items()}
    assert queue[0]["votes"][0]["parse_status"] == "abstain"


def test_queue_filters_by_iteration_judge_and_disagreeing_dimension(pointwise_run):
    run_dir, _ = pointwise_run
    queue = review_queue(run_dir, "pointwise")

    def ids(**where):
        return [e["review_id"] for e in queue if QueueFilter(**where).keeps(e)]

    assert ids(iteration=0) == ["0:a", "0:b"]
    assert ids(judge="j2") == ["1:d", "0:a"]
    assert ids(dimension="factual_accuracy") == ["0:a"]  # j1 said 2, j2 said 9
    assert ids(dimension="safety") == []
    assert ids(iteration=1, judge="j1") == []


def test_answers_are_checked_naming_the_field(pointwise_run):
    _, rubric = pointwise_run
    with pytest.raises(ReviewError, match="scores.safety must be an integer score 1-10"):
        parse_answer({"review_id": "0:a", "reviewer": "ann",
                      "scores": scores(5, 5, 5, 11)}, rubric, "answer 0")
    with pytest.raises(ReviewError, match=r"must give each rubric dimension"):
        parse_answer({"review_id": "0:a", "reviewer": "ann",
                      "scores": {"safety": 5}}, rubric, "answer 0")
    with pytest.raises(ReviewError, match="answer 0: reviewer is missing"):
        parse_answer({"review_id": "0:a", "verdict": 5}, rubric, "answer 0")
    assert parse_answer({"review_id": "0:a", "verdict": ""}, rubric, "x") is None  # a skip


def test_a_person_scores_each_dimension_and_every_reader_sees_it(pointwise_run):
    run_dir, rubric = pointwise_run
    verdicts = HumanVerdicts(run_dir, rubric)
    answer = Answer("0:a", "ann", scores=scores(10, 10, 1, 10))
    assert verdicts.record([("page", answer)]) == 1
    merged = {v.item_id: v for v in merged_verdicts(run_dir, 0, "pointwise")}
    row = merged["a"]
    want = rubric.overall(rubric.normalise(scores(10, 10, 1, 10)))
    assert row.status == "human" and row.reviewer == "ann" and row.confidence == 1.0
    assert row.score == row.reward == pytest.approx(want)
    assert dict(row.dimension_scores) == scores(10.0, 10.0, 1.0, 10.0)
    assert row.prompt == "Prompt of a"  # the judged texts stay with the row
    assert [e["review_id"] for e in review_queue(run_dir, "pointwise")] == ["1:d", "0:b"]
    # The judges' row stays for audit: append-only.
    rows = read_parts(table_dir(run_dir, "verdicts", 0))
    assert sorted(r["source"] for r in rows if r["item_id"] == "a") == ["human", "judge"]


def test_the_same_answer_twice_is_written_once_and_a_change_wins(pointwise_run):
    run_dir, rubric = pointwise_run
    verdicts = HumanVerdicts(run_dir, rubric)
    first = Answer("0:b", "ann", scores=scores(2, 2, 2, 2))
    assert verdicts.record([("page", first)]) == 1
    assert verdicts.record([("page", first)]) == 0  # a retried request
    parts = table_dir(run_dir, "verdicts", 0).glob("part-human-*")
    assert len(parts) == 1
    assert verdicts.record([("page", Answer("0:b", "ann", scores=scores(9, 9, 9, 9)))]) == 1
    row = next(v for v in merged_verdicts(run_dir, 0, "pointwise") if v.item_id == "b")
    assert row.score == pytest.approx(rubric.overall(rubric.normalise(scores(9, 9, 9, 9))))


def test_one_bad_answer_writes_nothing(pointwise_run):
    run_dir, rubric = pointwise_run
    verdicts = HumanVerdicts(run_dir, rubric)
    with pytest.raises(ReviewError, match="answer 1: unknown review_id '0:c'"):  # kept item
        verdicts.record([("answer 0", Answer("0:a", "ann", overall=3)),
                         ("answer 1", Answer("0:c", "ann", overall=3))])
    assert not table_dir(run_dir, "verdicts", 0).glob("part-human-*")


def test_pairwise_answers_recompute_the_prompts_rewards(pairwise_run):
    run_dir, rubric = pairwise_run
    with pytest.raises(ReviewError, match="verdict must be one of"):
        parse_answer({"review_id": "0:x", "reviewer": "bo", "verdict": "C"}, rubric, "a")
    assert HumanVerdicts(run_dir, rubric).record([("a", Answer("0:x", "bo", winner="A"))]) == 1
    merged = merged_verdicts(run_dir, 0, "pairwise")
    rewards = {v.item_id: v.reward for v in merged if v.item_kind == "response"}
    assert rewards["x1"] > rewards["x2"]  # the person's winner
    assert review_queue(run_dir, "pairwise") == []


def test_a_file_import_takes_scores_or_an_overall_verdict(pointwise_run, tmp_path):
    run_dir, rubric = pointwise_run
    file = tmp_path / "answers.jsonl"
    file.write_text('{"review_id": "0:a", "verdict": 10}\n'
                    '{"review_id": "0:b", "scores": {"factual_accuracy": 1, '
                    '"instruction_following": 1, "completeness": 1, "safety": 1}}\n'
                    '{"review_id": "1:d", "verdict": ""}\n')
    assert import_review(run_dir, file, rubric, reviewer="carol") == 2
    merged = {v.item_id: v for v in merged_verdicts(run_dir, 0, "pointwise")}
    assert merged["a"].reward == 1.0 and merged["a"].dimension_scores is None
    assert merged["b"].reward == 0.0 and merged["b"].reviewer == "carol"
    file.write_text('{"review_id": "0:a", "verdict": 10}\n{"review_id": "0:a", "verdict": 1}\n')
    with pytest.raises(ReviewError, match=r"answers.jsonl:2: review_id '0:a' appears twice"):
        import_review(run_dir, file, rubric)
