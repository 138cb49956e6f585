"""What a run writes, loaded by the Hugging Face stack as it is: every table and the DPO
pairs file through `datasets.load_dataset("parquet", ...)` (which has no map type), and a
few steps of TRL's DPOTrainer on the pairs."""

import math

import datasets
import duckdb
import pandas
import pytest
from review_runs import (
    DIMENSIONS,
    scores,
    verdict_row,
    write_config,
    write_iteration,
    write_pairwise_run,
    write_pointwise_run,
)

from rlaif_ray.data.records import TABLES, read_parts, table_dir
from rlaif_ray.judge.pairs import preference_pairs, write_pairs


def load(files, cache):
    return datasets.load_dataset("parquet", data_files=[str(f) for f in files],
                                 split="train", cache_dir=str(cache))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_table_loads_with_datasets(table, tmp_path):
    run_dir = tmp_path / "run"
    write_pointwise_run(run_dir)
    files = sorted((run_dir / "data" / table).glob("iter=*/part-*.parquet"))
    dataset = load(files, tmp_path / "hf")
    assert len(dataset) == sum(len(read_parts(table_dir(run_dir, table, k))) for k in (0, 1))
    if table == "votes":
        scored = next(r for r in dataset if r["scores"])
        assert [s["name"] for s in scored["scores"]] == list(DIMENSIONS)
    if table == "verdicts":
        assert "dimension_scores" in dataset.column_names


def test_pairwise_votes_load_with_their_dimension_winners(tmp_path):
    run_dir = tmp_path / "run"
    write_pairwise_run(run_dir)
    dataset = load(sorted((run_dir / "data" / "votes").glob("iter=*/part-*.parquet")),
                   tmp_path / "hf")
    assert {w["value"] for r in dataset for w in r["dimension_winners"]} == {"A", "B"}


def test_pandas_and_duckdb_read_the_named_columns(tmp_path):
    run_dir = tmp_path / "run"
    write_pointwise_run(run_dir)
    frame = pandas.read_parquet(run_dir / "data" / "votes")
    assert {e["name"] for e in frame["scores"].dropna().iloc[0]} == set(DIMENSIONS)
    glob = str(run_dir / "data" / "votes" / "*" / "*.parquet")
    means = dict(duckdb.sql(
        f"select s.name, avg(s.value) from (select unnest(scores) as s from "
        f"read_parquet('{glob}')) group by s.name").fetchall())
    assert set(means) == set(DIMENSIONS)


@pytest.mark.slow
def test_dpo_trains_on_the_pairs_as_written(policy_path, tmp_path):
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path / "run"
    write_config(run_dir, "pointwise")
    write_iteration(run_dir, 0, [  # two standing answers to one prompt, far apart
        verdict_row(r, "response", 0.9, "kept", prompt_id="p", score=s, reward=s,
                    response=f"Answer {r}.", dimension_scores=scores(*[9 * s + 1] * 4))
        for r, s in (("r1", 0.9), ("r2", 0.1))], [])
    pairs = preference_pairs(run_dir, "pointwise", min_margin=0.0)
    assert pairs and all(p["judge_scores"] for p in pairs)
    out = write_pairs(pairs * 4, tmp_path / "pairs.parquet")
    dataset = load([out], tmp_path / "hf")
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)
    config = trl.DPOConfig(output_dir=str(tmp_path / "dpo"), use_cpu=True, report_to="none",
                           save_strategy="no", per_device_train_batch_size=2, max_steps=2,
                           max_length=64, logging_steps=1)
    trainer = trl.DPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy_path),
                             args=config, train_dataset=dataset,
                             processing_class=AutoTokenizer.from_pretrained(policy_path))
    result = trainer.train()
    assert result.global_step == 2 and math.isfinite(result.training_loss)
