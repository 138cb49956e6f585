"""`tiny-judge`: a small Qwen2-style judge trained here, by supervised fine-tuning on
synthetic rubric examples, to score answers by properties a tiny policy can learn.

It is a fixture that proves the LLM-judge path end to end (structured rubric votes,
self-consistency, weighting, PPO) without a model hub; it is not a judge of real answers.
"""
