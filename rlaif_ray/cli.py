"""The `rlaif-ray` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from rlaif_ray.config import ConfigError, default_config_path, load_config, to_yaml
from rlaif_ray.data.prompts import PromptsError
from rlaif_ray.errors import RUN_ERRORS
from rlaif_ray.judge.review import ReviewError


def _config_and_overrides(args: Sequence[str]):
    """`[CONFIG.yaml] [key=value ...]` -> loaded config (no CONFIG: the embedded default)."""
    path = default_config_path()
    overrides = list(args)
    if overrides and "=" not in overrides[0]:
        path = overrides.pop(0)
    return load_config(path, overrides)


def _cmd_models(ns: argparse.Namespace) -> int:
    from rlaif_ray.models import TINY_MODELS, build_model

    for name in ns.names or ["tiny-llama", "tiny-qwen2"]:
        if name not in TINY_MODELS:
            print(f"unknown embedded model {name!r}; known: {', '.join(TINY_MODELS)}",
                  file=sys.stderr)
            return 2
        print(f"{name}: {build_model(name, ns.cache)}")
    return 0


def _cmd_config(ns: argparse.Namespace) -> int:
    print(to_yaml(_config_and_overrides(ns.args)), end="")
    return 0


def _cmd_generate(ns: argparse.Namespace) -> int:
    from rlaif_ray.generate import run_generate

    run_generate(_config_and_overrides(ns.args))
    return 0


def _cmd_judge(ns: argparse.Namespace) -> int:
    from rlaif_ray.judge_job import run_judge

    run_judge(_config_and_overrides(ns.args))
    return 0


def _cmd_run(ns: argparse.Namespace) -> int:
    from rlaif_ray.pipeline import run_rlaif

    run_rlaif(_config_and_overrides(ns.args))
    return 0


def _shared_run_dir(run_dir: str, storage: str | None) -> str:
    """The run.dir a job writes to: absolute or a URI, since a job's working directory is
    temporary; a relative one goes under `--storage` or is refused."""
    from rlaif_ray.storage import is_uri, join, scheme_problem

    if is_uri(run_dir) or os.path.isabs(run_dir):
        return run_dir
    if storage is None or not (is_uri(storage) or os.path.isabs(storage)):
        raise ConfigError(f"run.dir {run_dir!r} is relative: a job's working directory is "
                          f"temporary, so its outputs would be lost. Pass an absolute path "
                          f"on storage the cluster shares (run.dir=/shared/runs/x) or a URI "
                          f"(run.dir=s3://bucket/runs/x), or --storage /shared/runs or "
                          f"--storage s3://bucket/runs to put run.dir under it")
    if scheme_problem(storage):
        raise ConfigError(f"--storage {storage!r} {scheme_problem(storage)}")
    return join(storage, run_dir)


def _cmd_submit(ns: argparse.Namespace) -> int:
    from rlaif_ray import jobs

    cfg = _config_and_overrides(ns.args)  # fail here, not on the cluster, on a bad config
    run_dir = _shared_run_dir(cfg.run.dir, ns.storage)
    args = [*ns.args, f"run.dir={run_dir}"]
    env = {"RLAIF_RAY_CACHE": os.environ["RLAIF_RAY_CACHE"]} if "RLAIF_RAY_CACHE" in \
        os.environ else None
    config = ns.args[0] if ns.args and "=" not in ns.args[0] else "(defaults)"
    job_id = jobs.submit(ns.address, args, jobs.submission_id(run_dir),
                         {"config": config, "run_dir": run_dir},
                         working_dir=ns.working_dir, env=env, python=ns.python)
    print(f"submitted {job_id} to {ns.address}; outputs in {run_dir}")
    print(f"follow it: rlaif-ray logs {job_id} --address {ns.address} --follow")
    if ns.follow:
        asyncio.run(jobs.follow(ns.address, job_id))
        print(f"{job_id}: {jobs.check_succeeded(ns.address, job_id)}")
    return 0


def _cmd_status(ns: argparse.Namespace) -> int:
    from rlaif_ray import jobs

    state = jobs.status(ns.address, ns.job_id)
    print(f"{ns.job_id}: {state}")
    return 1 if state in ("FAILED", "STOPPED") else 0


def _cmd_logs(ns: argparse.Namespace) -> int:
    from rlaif_ray import jobs

    if ns.follow:
        asyncio.run(jobs.follow(ns.address, ns.job_id))
    else:
        print(jobs.logs(ns.address, ns.job_id), end="")
    return 0


def _cmd_plan(ns: argparse.Namespace) -> int:
    from rich.console import Console

    from rlaif_ray.plan import check_plan, plan_table, pool_specs

    cfg = _config_and_overrides(ns.args)
    specs = pool_specs(cfg)
    Console().print(plan_table(specs))
    if not ns.address:
        print("not checked against a cluster (pass --address to check)")
        return 0
    import ray

    ray.init(address=ns.address, log_to_driver=False)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    ray.shutdown()
    problems = check_plan(specs, nodes)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"fits the cluster at {ns.address} ({len(nodes)} nodes)")
    return 2 if problems else 0


def _run_config(run_dir: str):
    """A run directory's recorded config (local or on an object store)."""
    from rlaif_ray.storage import StoragePath

    recorded = StoragePath.of(run_dir) / "config.yaml"
    if not recorded.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    with recorded.local_copy() as path:
        return load_config(path)


def _run_mode(run_dir: str) -> str:
    """The rubric mode a run was judged in (from its recorded config)."""
    return _run_config(run_dir).rubric.mode


def _cmd_export(ns: argparse.Namespace) -> int:
    from rlaif_ray.export import checkpoint_of, export_policy
    from rlaif_ray.models import resolve_model

    cfg = _run_config(ns.run_dir)
    try:
        checkpoint = checkpoint_of(ns.run_dir, ns.iteration)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    out = export_policy(checkpoint, resolve_model(cfg.generator.model, cfg.cache_dir), ns.out)
    print(f"policy of iteration {checkpoint.iteration} written to {out}")
    return 0


def _cmd_pairs(ns: argparse.Namespace) -> int:
    from rlaif_ray.data.pairs import preference_pairs, write_pairs

    iterations = [int(k) for k in ns.iterations.split(",")] if ns.iterations else None
    pairs = preference_pairs(ns.run_dir, _run_mode(ns.run_dir), ns.min_margin,
                             ns.min_confidence, iterations)
    print(f"{len(pairs)} preference pairs written to {write_pairs(pairs, ns.out)}")
    return 0


def _cmd_review(ns: argparse.Namespace) -> int:
    from rlaif_ray.judge.review import export_review, import_review, queue_path

    mode = _run_mode(ns.run_dir)
    if ns.action == "export":
        out = ns.out or str(queue_path(ns.run_dir))
        print(f"{export_review(ns.run_dir, out, mode)} items to review written to {out}")
    else:
        print(f"merged {import_review(ns.run_dir, ns.file, mode)} human verdicts")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlaif-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="embedded tiny models")
    models_sub = models.add_subparsers(dest="action", required=True)
    build = models_sub.add_parser("build", help="build embedded models into the cache")
    build.add_argument("names", nargs="*", help="models to build (default: policy and judge)")
    build.add_argument("--cache", default=None, help="cache dir (default: $RLAIF_RAY_CACHE)")
    build.set_defaults(func=_cmd_models)
    for name, func, text in (
        ("config", _cmd_config, "print the resolved config"),
        ("generate", _cmd_generate, "sample answers with log-probs and save them as Parquet"),
        ("judge", _cmd_judge, "generate, judge and vote; write the preference dataset"),
        ("run", _cmd_run, "the RLAIF loop: generate, judge, vote, PPO, weight sync"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("args", nargs="*", metavar="[CONFIG] [key=value ...]")
        cmd.set_defaults(func=func)
    plan = sub.add_parser("plan", help="print (and check) the resource plan per pool")
    plan.add_argument("--address", default=None, help="a running cluster to check against")
    plan.add_argument("args", nargs="*", metavar="[CONFIG] [key=value ...]")
    plan.set_defaults(func=_cmd_plan)
    address_help = "Ray dashboard address, e.g. http://127.0.0.1:8265 (default $RAY_ADDRESS)"
    submit = sub.add_parser("submit", help="submit `rlaif-ray run` as a Ray job")
    submit.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help=address_help)
    submit.add_argument("--working-dir", default=".", help="uploaded as the job's working dir")
    submit.add_argument("--follow", action="store_true", help="stream the job's log")
    submit.add_argument("--python", default="python",
                        help="interpreter on the cluster that has rlaif-ray installed")
    submit.add_argument("--storage", default=None,
                        help="absolute shared directory to put a relative run.dir under")
    submit.add_argument("args", nargs="*", metavar="[CONFIG] [key=value ...]")
    submit.set_defaults(func=_cmd_submit)
    for name, func, text in (("status", _cmd_status, "status of a submitted job"),
                             ("logs", _cmd_logs, "log of a submitted job")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("job_id")
        cmd.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help=address_help)
        if name == "logs":
            cmd.add_argument("--follow", action="store_true")
        cmd.set_defaults(func=func)
    policy = sub.add_parser("export", help="write a checkpoint's policy as a model directory "
                                           "(transformers / vLLM load it)")
    policy.add_argument("run_dir")
    policy.add_argument("out")
    policy.add_argument("--iteration", type=int, default=None,
                        help="the checkpoint's iteration (default: the newest)")
    policy.set_defaults(func=_cmd_export)
    pairs = sub.add_parser("pairs", help="DPO preference pairs (prompt, chosen, rejected) "
                                         "from a run's kept verdicts")
    pairs.add_argument("run_dir")
    pairs.add_argument("--out", required=True, help="Parquet file to write")
    pairs.add_argument("--min-margin", type=float, default=0.1,
                       help="pointwise: least score difference; pairwise: 2 x agreement - 1")
    pairs.add_argument("--min-confidence", type=float, default=0.0)
    pairs.add_argument("--iterations", default=None, help="e.g. 0,1,2 (default: all)")
    pairs.set_defaults(func=_cmd_pairs)
    review = sub.add_parser("review", help="human review of low-confidence verdicts")
    review_sub = review.add_subparsers(dest="action", required=True)
    export = review_sub.add_parser("export", help="write the review queue (JSONL or CSV)")
    export.add_argument("run_dir")
    export.add_argument("--out", default=None, help="default: RUN_DIR/review/queue.jsonl")
    export.set_defaults(func=_cmd_review)
    merge = review_sub.add_parser("import", help="merge human verdicts back")
    merge.add_argument("run_dir")
    merge.add_argument("file")
    merge.set_defaults(func=_cmd_review)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from rlaif_ray.jobs import JobError, use_token_auth

    use_token_auth()  # before anything imports Ray
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except (ConfigError, PromptsError, ReviewError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RUN_ERRORS as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
