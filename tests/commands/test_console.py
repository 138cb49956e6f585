"""What a person reads: every command's help, the progress lines of a run that is not on a
terminal, and the end-of-run table at 80 columns."""

import io
import re

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from rlaif_ray.cli import CONFIG_KEYS, build_parser
from rlaif_ray.cluster import Session
from rlaif_ray.config import default_config_path, load_config
from rlaif_ray.console import RunProgress, dimension_lines, end_lines, session_lines, summary_table

COMMANDS = ["run", "generate", "judge", "config", "plan", "submit", "status", "logs",
            "export", "pairs", "review export", "review import", "models build"]


def help_text(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([*command.split(), "--help"])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself_in_80_columns(command, monkeypatch, capsys):
    help_text(command, monkeypatch)
    text = capsys.readouterr().out
    usage, description = text.split("\n\n")[:2]
    assert usage.startswith(f"usage: rlaif-ray {command}")
    assert len(description.split()) >= 6, description  # a sentence, not a label
    assert re.search(rf"example:\n  rlaif-ray {command}", text)
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_the_main_keys_named_in_help_exist():
    cfg = load_config(default_config_path())
    named = set(re.findall(r"\b((?:run|prompts|generator|judges|rubric|voting|trainer|ray)"
                           r"(?:\.\w+)?)\b", CONFIG_KEYS))
    missing = [k for k in named if OmegaConf.select(cfg, k, default="<missing>") ==
               "<missing>"]
    assert len(named) > 15 and not missing, missing


def plain_console():
    out = io.StringIO()
    return Console(file=out, width=80), out


def row(k, **extra):
    return {"iteration": k, "reward_mean": 0.25 + k / 100, "kl": 1.234e-4 * k,
            "kept_fraction": 0.9375, "judge_s": 12.25, "train_s": 71.5, "sync_s": 0.113,
            "iteration_s": 84.0, **extra}


def test_progress_off_a_terminal_is_plain_lines(capsys):
    console, out = plain_console()
    progress = RunProgress(console, 0, 2)
    with progress.rollout(0, 16) as bar:
        bar.update(16)
    progress.stage(0, "train on 120 samples")
    progress.done(row(0))
    progress.done(row(1, human_verdicts=2))  # live review: people's verdicts in the update
    progress.close()
    text = out.getvalue() + capsys.readouterr().err
    assert "\x1b" not in text and "\r" not in text  # no cursor codes, no redraws
    assert out.getvalue().splitlines() == [
        "iteration 0: generate + judge 16 prompts",
        "iteration 0: train on 120 samples",
        "iteration 0 done: reward 0.250, KL 0.000, kept 94%, 84.0 s",
        "iteration 1 done: reward 0.260, KL 1.2e-04, kept 94%, 2 by people, 84.0 s"]


def test_kl_of_an_unchanged_policy_prints_as_zero_not_rounding_noise():
    console, out = plain_console()
    progress = RunProgress(console, 0, 3)
    for k, kl in enumerate((-7.0e-09, 3.2e-4, -2.5e-3)):
        progress.done(row(k, kl=kl))
    assert [line.split(", ")[1] for line in out.getvalue().splitlines()] == [
        "KL 0.000", "KL 3.2e-04", "KL -2.5e-03"]


def test_the_summary_table_fits_80_columns_and_says_where_the_rest_is():
    console, out = plain_console()
    rows = [row(k) for k in range(12)] + [row(12, reward_mean=None, kl=None)]
    console.print(summary_table(rows, "/runs/x/metrics.jsonl"))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in out.getvalue()  # nothing cut
    assert any("0.360" in line and "1.4e-03" in line and "94%" in line for line in lines)
    assert "all metrics: /runs/x/metrics.jsonl" in out.getvalue()


def test_session_and_end_lines_say_where_to_look(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    lines = session_lines(Session(True, "http://127.0.0.1:8265",
                                  "http://127.0.0.1:9000/metrics", "/tmp/ray/logs"))
    assert lines == ["Ray dashboard: http://127.0.0.1:8265",
                     "  token auth: paste the token `ray get-auth-token` prints",
                     "Prometheus metrics: http://127.0.0.1:9000/metrics",
                     "worker logs (-v streams them here):", "  /tmp/ray/logs"]
    end = end_lines({"iterations": 8, "reward_first": 0.25, "reward_last": 0.5}, "/r", 3,
                    "/r/review/queue.jsonl")
    assert end[0] == "reward 0.250 -> 0.500 over 8 iterations"
    assert all(len(line) <= 80 for line in end)


def test_dimension_lines_show_each_rubric_dimension_first_to_last():
    rows = [{"iteration": 0, "dimension_scores": {"factual_accuracy": 2.5, "safety": 5}},
            {"iteration": 7, "dimension_scores": {"factual_accuracy": 7.25, "safety": 5}}]
    assert dimension_lines(rows) == [
        "judged score per dimension, iteration 0 -> 7:",
        "  factual_accuracy             2.50 -> 7.25 (of 10)",
        "  safety                       5.00 -> 5.00 (of 10)"]
    assert dimension_lines([{"iteration": 0, "dimension_scores": {}}]) == []
