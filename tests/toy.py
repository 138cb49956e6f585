"""The toy task the end-to-end tests train on: a rule judge rewards answers that start with a
vowel (about a quarter of a random policy's answers), so the tiny random models have a
signal PPO can learn."""

TOY_JUDGE = ("judges=[{name: rules, kind: rule, checks: [{type: regex, "
             "pattern: '^\\s*[aeiouAEIOU]'}]}]")
