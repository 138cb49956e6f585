"""The peer bench's rlaif-ray commands are valid runs of the work they claim."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.peer_trl import CASES, RLAIF_SIDES, _rlaif_command, steady_seconds
from rlaif_ray.config import load_config


@pytest.mark.parametrize("side", sorted(RLAIF_SIDES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_side_is_a_valid_run_of_the_cases_work(side, case, tmp_path: Path):
    estimator, critic, tuned = RLAIF_SIDES[side]
    command = _rlaif_command(tmp_path / "run", side, CASES[case], "bfloat16")
    assert command[1:4] == ["-m", "rlaif_ray.cli", "run"]
    cfg = load_config(command[4], command[5:])
    work = CASES[case]
    assert (cfg.trainer.advantage_estimator, cfg.trainer.critic) == (estimator, critic)
    assert (cfg.generator.model, cfg.prompts.limit, cfg.generator.samples_per_prompt,
            cfg.generator.max_tokens) == (work.model, work.prompts, work.samples, work.tokens)
    assert cfg.trainer.dtype == cfg.generator.dtype == "bfloat16"
    assert [judge.kind for judge in cfg.judges] == ["rule"]
    defaults = load_config(command[4], [])
    if tuned:
        assert cfg.generator.torch_threads == 2 and not cfg.ray.dashboard
        assert cfg.trainer.checkpoint_every == work.iterations
    else:  # as shipped, but for the work
        for key in ("generator.torch_threads", "ray.dashboard", "trainer.checkpoint_every",
                    "trainer.shuffle", "trainer.critic_micro_batch_size"):
            assert OmegaConf.select(cfg, key) == OmegaConf.select(defaults, key), key


def test_a_steady_iteration_leaves_out_the_first_and_the_last():
    assert steady_seconds([9.0, 2.0, 3.0, 2.5, 7.0]) == 2.5  # start-up, then the run's end
    assert all(work.iterations >= 5 for work in CASES.values())  # three steady at least
