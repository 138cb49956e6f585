import re

import pytest

from rlaif_ray.cli import main
from rlaif_ray.config import default_config_path, load_config
from rlaif_ray.errors import ConfigError


def test_default_yaml_loads_with_documented_keys():
    cfg = load_config("conf/default.yaml")
    assert cfg.generator.model == "tiny-llama"
    assert cfg.prompts.path is None
    for key in ("run.dir", "run.iterations", "run.seed", "prompts.path", "generator.model",
                "generator.replicas", "generator.samples_per_prompt", "generator.max_tokens",
                "generator.temperature"):
        section, name = key.split(".")
        assert name in cfg[section], key


def test_overrides_apply_and_keep_types():
    cfg = load_config("conf/default.yaml", ["generator.replicas=3", "generator.temperature=0.7",
                                            "run.dir=/tmp/x"])
    assert cfg.generator.replicas == 3
    assert cfg.generator.temperature == pytest.approx(0.7)
    assert cfg.run.dir == "/tmp/x"


def test_typo_in_override_names_key_and_suggests_closest():
    with pytest.raises(ConfigError, match=r"'generator\.replica'.*did you mean "
                                          r"'generator\.replicas'"):
        load_config(None, ["generator.replica=2"])


def test_typo_in_top_level_section_is_suggested():
    with pytest.raises(ConfigError, match=r"unknown config key 'generatr.*did you mean "
                                          r"'generator'"):
        load_config(None, ["generatr.replicas=2"])


def test_typo_in_yaml_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("generator:\n  samples_per_promt: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}.*'generator\.samples_per_promt'.*did you "
                                          r"mean 'generator\.samples_per_prompt'"):
        load_config(path)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"'generator\.max_tokens'.*'lots'"):
        load_config(None, ["generator.max_tokens=lots"])


@pytest.mark.parametrize("override, key", [
    ("generator.replicas=0", "generator.replicas"),
    ("generator.top_p=1.5", "generator.top_p"),
    ("generator.temperature=-1", "generator.temperature"),
    ("generator.temperature=2.5", "generator.temperature"),
    ("generator.temperature=0", "generator.temperature"),  # several samples, one answer
    ("generator.max_model_len=16", "generator.max_model_len"),
    ("generator.dtype=int8", "generator.dtype"),
    ("run.iterations=0", "run.iterations"),
    ("generator.resources.num_cpus=-1", "generator.resources.num_cpus"),
    ("generator.resources.custom.judge_gpu=0", "generator.resources.custom.judge_gpu"),
    ("generator.sync_transport=nccl", "generator.sync_transport"),
    ("generator.sync_bucket_mb=0", "generator.sync_bucket_mb"),
    ("trainer.max_failures=-2", "trainer.max_failures"),
])
def test_out_of_range_values_name_key(override, key):
    with pytest.raises(ConfigError, match=rf"key '{key}'"):
        load_config(None, [override])


@pytest.mark.parametrize("overrides", [["judges.0.temperature=-1"], ["judges.0.temperature=3.0"],
                                       ["judges.0.temperature=0", "voting.votes=3"]])
def test_judge_temperature_is_checked(overrides):
    with pytest.raises(ConfigError, match=r"key 'judges\[0\]\.temperature'"):
        load_config("conf/default.yaml", overrides)


def test_greedy_decoding_is_allowed_with_one_sample_or_vote():
    cfg = load_config("conf/default.yaml", [
        "judges.0.temperature=0", "voting.votes=1", "generator.temperature=0",
        "generator.samples_per_prompt=1"])
    assert cfg.judges[0].temperature == 0 and cfg.generator.temperature == 0


def test_custom_resources_accept_new_names():
    cfg = load_config(None, ["generator.resources.custom.generator_gpu=1"])
    assert cfg.generator.resources.custom == {"generator_gpu": 1.0}


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["generator.replicas"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_cli_reports_config_error_with_exit_code_2(capsys):
    assert main(["config", "conf/default.yaml", "generator.replica=2"]) == 2
    assert "did you mean 'generator.replicas'" in capsys.readouterr().err


def test_list_item_overrides_and_their_typos():
    cfg = load_config("conf/with_rules.yaml", ["judges.0.replicas=2", "judges[1].weight=3"])
    assert cfg.judges[0].replicas == 2 and cfg.judges[1].weight == 3.0
    with pytest.raises(ConfigError, match=r"'judges\[0\]\.replicaz'.*did you mean "
                                          r"'judges\[0\]\.replicas'"):
        load_config("conf/default.yaml", ["judges.0.replicaz=2"])


def test_collective_nccl_without_gpus_is_rejected_naming_the_backend():
    with pytest.raises(ConfigError, match=r"key 'generator\.sync_backend'.*needs GPUs"):
        load_config(None, ["generator.sync_transport=collective", "generator.sync_backend=nccl"])
    cfg = load_config(None, ["generator.sync_transport=collective"])  # auto: gloo on CPU
    assert cfg.generator.sync_backend == "auto"


def test_an_override_into_a_missing_list_entry_names_the_list_and_its_length():
    with pytest.raises(ConfigError, match=r"override 'judges\.5\.replicas': list 'judges' "
                                          r"has 2 entries \(indices 0-1\); '5' is not"):
        load_config("conf/with_rules.yaml", ["judges.5.replicas=2"])
    with pytest.raises(ConfigError, match=r"list 'judges\.1\.checks' has 1 entry \(indices "
                                          r"0-0\); '3'"):
        load_config("conf/with_rules.yaml", ["judges[1].checks.3.type=regex"])


def test_no_config_file_means_the_packaged_embedded_default(capsys):
    packaged = default_config_path()
    assert packaged.is_file() and packaged.parent.name == "resources"  # package data
    assert main(["config", "run.iterations=2"]) == 0
    shown = capsys.readouterr().out
    assert "tiny-llama" in shown and "iterations: 2" in shown
    assert load_config(packaged) == load_config("conf/default.yaml")


@pytest.mark.parametrize("override, message", [
    ("generator.model=/nonexistent/model", r"key 'generator\.model' is not an existing "
                                           r"directory \(/nonexistent/model\)"),
    ("judges.0.model=nobody/no-such-model", r"key 'judges\.0\.model' is a hub id that is "
                                            r"not in the local Hugging Face cache"),
])
def test_a_model_that_is_not_here_fails_before_ray_starts(override, message, capsys,
                                                           monkeypatch, tmp_path):
    import rlaif_ray.startup

    def no_ray(*_):
        raise AssertionError("Ray was started before the models were checked")

    monkeypatch.setattr(rlaif_ray.startup, "connect", no_ray)
    assert main(["run", "conf/default.yaml", override, f"run.dir={tmp_path / 'r'}"]) == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("override, key, names", [
    ("voting.ensemble=median", "voting.ensemble", "mean, majority, all_agree"),
    ("reward.pairwise=elo", "reward.pairwise", "winrate, bradley_terry"),
    ("trainer.kl_estimator=k4", "trainer.kl_estimator", "k1, k2, k3"),
    ("judges=[{name: j, kind: grpc}]", "judges[0].kind", "llm, http, rule"),
    ("judges=[{name: r, kind: rule, checks: [{type: starts_with, pattern: a}]}]",
     "judges[0].checks[0].type", "regex, not_regex, contains, max_words, min_words"),
])
def test_a_name_outside_a_registry_is_refused_listing_the_registered_ones(override, key,
                                                                          names):
    with pytest.raises(ConfigError, match=rf"key '{re.escape(key)}' must be one of "
                                          rf"{re.escape(names)}"):
        load_config(None, [override])
