"""DPO pairs from verdicts, checked against the verdicts and answers they came from (real
Parquet written with the project's record schemas)."""

import pyarrow.parquet as pq
import pytest

from rlaif_ray.data.records import (
    CANDIDATE_SCHEMA,
    VERDICT_SCHEMA,
    table_dir,
    to_table,
    write_table,
)
from rlaif_ray.judge.modes import RUBRIC_MODES
from rlaif_ray.judge.pairs import PAIR_MAKERS, preference_pairs, write_pairs


def answer(rid, prompt="Say hi.", text=None):
    return {"prompt_id": prompt, "prompt": prompt, "prompt_token_ids": [1],
            "response_id": rid, "response": text or f"answer {rid}",
            "response_token_ids": [2], "logprobs": [-0.1], "finish_reason": "stop",
            "generator_replica": "generator-0", "generation_s": 0.1}


def verdict(rid, kind="response", score=None, status="kept", confidence=0.9, b=None,
            winner=None, agreement=1.0, prompt="Say hi.", source="judge"):
    return {"item_id": rid if b is None else f"{rid}|{b}", "item_kind": kind,
            "prompt_id": prompt, "response_id": rid, "response_id_b": b,
            "dimension_scores": None, "score": score, "winner": winner, "reward": score,
            "agreement": agreement, "confidence": confidence, "votes_kept": 3,
            "votes_dropped": 0, "judges_standing": 1, "status": status, "source": source,
            "prompt": prompt, "response": f"answer {rid}",
            "response_b": None if b is None else f"answer {b}", "reviewer": None,
            "reviewed_at": None}


def write_run(run_dir, iteration, answers, verdicts):
    common = {"run_id": "r", "iteration": iteration, "policy_version": iteration}
    write_table(to_table(answers, CANDIDATE_SCHEMA, **common),
                table_dir(run_dir, "candidates", iteration) / "part-0.parquet")
    write_table(to_table(verdicts, VERDICT_SCHEMA, **common),
                table_dir(run_dir, "verdicts", iteration) / "part-0.parquet")


def test_pointwise_pairs_take_standing_answers_that_differ_by_the_margin(tmp_path):
    write_run(tmp_path, 0, [answer("a"), answer("b"), answer("c"), answer("d"),
                            answer("x", prompt="Other.")],
              [verdict("a", score=0.9), verdict("b", score=0.5),
               verdict("c", score=0.85, status="dropped"),  # not standing: left out
               verdict("d", score=0.45, confidence=0.2),
               verdict("x", score=0.1, prompt="Other.")])  # alone on its prompt
    pairs = preference_pairs(tmp_path, "pointwise", min_margin=0.1)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("a", "b"), ("a", "d")]
    first = pairs[0]
    assert (first["prompt"], first["chosen"], first["rejected"]) == ("Say hi.", "answer a",
                                                                     "answer b")
    assert first["margin"] == pytest.approx(0.4) and first["confidence"] == 0.9
    assert first["judge_scores"] == {"chosen": 0.9, "rejected": 0.5}
    assert pairs[1]["confidence"] == 0.2  # the weaker of the two verdicts
    confident = preference_pairs(tmp_path, "pointwise", min_margin=0.1, min_confidence=0.5)
    assert [(p["chosen_id"], p["rejected_id"]) for p in confident] == [("a", "b")]
    assert preference_pairs(tmp_path, "pointwise", min_margin=0.5) == []


def test_pairwise_pairs_follow_the_winner_and_skip_ties(tmp_path):
    write_run(tmp_path, 2, [answer("a"), answer("b"), answer("c")],
              [verdict("a", kind="pair", b="b", winner="B", agreement=0.75),
               verdict("a", kind="pair", b="c", winner="tie", agreement=1.0),
               verdict("b", kind="pair", b="c", winner="A", agreement=1.0, status="dropped")])
    [pair] = preference_pairs(tmp_path, "pairwise", min_margin=0.1)
    assert (pair["chosen_id"], pair["rejected_id"], pair["iteration"]) == ("b", "a", 2)
    assert pair["margin"] == pytest.approx(0.5) and pair["source"] == "judge"


def test_pairs_file_has_the_columns_dpo_trainers_read(tmp_path):
    write_run(tmp_path, 0, [answer("a"), answer("b")],
              [verdict("a", score=0.9), verdict("b", score=0.2)])
    out = write_pairs(preference_pairs(tmp_path, "pointwise"), tmp_path / "pairs.parquet")
    table = pq.read_table(out)
    assert table.num_rows == 1
    assert table.column_names[:3] == ["prompt", "chosen", "rejected"]


def test_a_human_verdict_row_takes_the_place_of_the_judges_row(tmp_path):
    write_run(tmp_path, 0, [answer("a"), answer("b")],
              [verdict("a", score=0.9), verdict("b", score=0.2, status="dropped")])
    human = verdict("b", score=1.0, status="human", source="human", confidence=1.0)
    write_table(to_table([human], VERDICT_SCHEMA, run_id="r", iteration=0, policy_version=0),
                table_dir(tmp_path, "verdicts", 0) / "part-human-1.parquet")
    [pair] = preference_pairs(tmp_path, "pointwise", min_margin=0.05)
    assert (pair["chosen_id"], pair["rejected_id"], pair["source"]) == ("b", "a", "human")
    assert pair["margin"] == pytest.approx(0.1)


def test_each_table_reads_on_its_own_with_its_iterations_as_a_partition(tmp_path):
    import pandas

    write_run(tmp_path, 0, [answer("a"), answer("b")], [verdict("a", score=0.9)])
    write_run(tmp_path, 1, [answer("c")], [verdict("c", score=0.3), verdict("b", score=0.1)])
    verdicts = pandas.read_parquet(tmp_path / "data" / "verdicts")
    assert sorted(verdicts["response_id"]) == ["a", "b", "c"]
    assert verdicts["prompt"].notna().all() and verdicts["response"].notna().all()
    assert sorted(verdicts["iter"].astype(int)) == [0, 1, 1]
    assert len(pandas.read_parquet(tmp_path / "data" / "candidates")) == 3
    import duckdb

    files = f"{tmp_path}/data/verdicts/*/*.parquet"
    assert duckdb.sql(f"select iter, count(*) from read_parquet('{files}', "
                      f"hive_partitioning=true) group by iter order by iter").fetchall() == \
        [(0, 1), (1, 2)]


def test_every_rubric_mode_makes_pairs_and_an_unknown_one_is_named():
    assert list(PAIR_MAKERS) == list(RUBRIC_MODES)
    with pytest.raises(ValueError, match="unknown rubric mode 'listwise'; choose one of "
                                         "pointwise, pairwise"):
        preference_pairs("unused", "listwise")
