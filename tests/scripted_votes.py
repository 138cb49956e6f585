"""Scripted votes for the judging tests: a rubric and voting settings from the schema,
a pointwise item and a pairwise one, and replies parsed into votes as a judge's would
be (pure logic, no Ray)."""

import json

from rlaif_ray.config import load_config
from rlaif_ray.judge.items import JudgeItem
from rlaif_ray.judge.rubric import Rubric
from rlaif_ray.judge.votes import parse_reply
from rlaif_ray.judge.voting import JudgeVerdict

DIMS = ["factual_accuracy", "instruction_following", "completeness", "safety"]


def rubric(mode="pointwise", **overrides):
    cfg = load_config(None, [f"rubric.mode={mode}"] + [f"rubric.{k}={v}"
                                                       for k, v in overrides.items()])
    return Rubric.from_config(cfg.rubric)


def voting(**overrides):
    return load_config(None, [f"voting.{k}={v}" for k, v in overrides.items()]).voting


def scores(*values):
    return json.dumps(dict(zip(DIMS, values, strict=True)))


PAIR = JudgeItem(item_id="a|b", prompt_id="p", prompt="Q", response_a="a",
                 text_a="FIRST-TEXT", response_b="b", text_b="SECOND-TEXT", policy_version=0,
                 iteration=0)
ONE = JudgeItem(item_id="a", prompt_id="p", prompt="Q", response_a="a", text_a="x",
                policy_version=0, iteration=0)


def vote(r, item, raw, order="", judge="j"):
    return parse_reply(r, item, judge, "llm", "judge-j-0", order, 0, raw, None)


def pair_vote(winner, order, judge="j"):
    raw = json.dumps({"overall": winner, **dict.fromkeys(DIMS, winner)})
    return vote(rubric("pairwise"), PAIR, raw, order, judge)


def jv(score=None, winner=None, preference=None, stands=True, weight=1.0, confidence=1.0,
       valid=3):
    return JudgeVerdict("j", weight, 3, valid, stands, 1.0, confidence, score=score,
                        winner=winner, preference=preference)
