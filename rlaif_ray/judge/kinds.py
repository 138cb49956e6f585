"""The judge kinds (`judges[].kind`), by name: the module whose `replicas(judge, cache_dir,
seed)` says how that kind's replicas are made, or None for a kind with no replicas (`rule`:
its checks run in the driver, `rlaif_ray.judge.rules`). The modules are imported only when
a judge of their kind starts, so reading the names (the config's checks) costs nothing.
Adding a kind is an actor class with a `vote` method, its `replicas` function, and its
entry here."""

from __future__ import annotations

JUDGE_KINDS: dict[str, str | None] = {
    "llm": "rlaif_ray.judge.llm_judge",
    "http": "rlaif_ray.judge.http_judge",
    "rule": None,
}
