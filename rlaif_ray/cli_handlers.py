"""What each `rlaif-ray` subcommand does, given its parsed arguments (`rlaif_ray.cli` builds
the parser and maps errors to exit codes). Each returns the command's exit code; the
heavy modules are imported by the handler that needs them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rlaif_ray import faults
from rlaif_ray.config import default_config_path, load_config, to_yaml
from rlaif_ray.errors import ConfigError
from rlaif_ray.storage import StoragePath


def _config_and_overrides(args: Sequence[str], verbose: bool = False):
    """`[CONFIG.yaml] [key=value ...]` -> loaded config (no CONFIG: the embedded default);
    `verbose` (-v) sets ray.verbose."""
    path: str | Path = default_config_path()
    overrides = list(args) + (["ray.verbose=true"] if verbose else [])
    if overrides and "=" not in overrides[0]:
        path = overrides.pop(0)
    return load_config(path, overrides)


def cmd_models(ns: argparse.Namespace) -> int:
    """`rlaif-ray models build`: build embedded models into a cache."""
    from rlaif_ray.models import TINY_MODELS, build_model

    for name in ns.names or ["tiny-llama", "tiny-judge"]:
        if name not in TINY_MODELS:
            print(f"unknown embedded model {name!r}; known: {', '.join(TINY_MODELS)}",
                  file=sys.stderr)
            return 2
        print(f"{name}: {build_model(name, ns.cache)}")
    return 0


def cmd_config(ns: argparse.Namespace) -> int:
    """`rlaif-ray config`: print the resolved config."""
    print(to_yaml(_config_and_overrides(ns.args)), end="")
    return 0


def cmd_generate(ns: argparse.Namespace) -> int:
    """`rlaif-ray generate`: sample answers and save them."""
    from rlaif_ray.generate import run_generate

    run_generate(_config_and_overrides(ns.args, ns.verbose))
    return 0


def cmd_judge(ns: argparse.Namespace) -> int:
    """`rlaif-ray judge`: generate, judge and vote; write the preference data."""
    from rlaif_ray.judge_job import run_judge

    run_judge(_config_and_overrides(ns.args, ns.verbose))
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    """`rlaif-ray run`: the RLAIF loop; with --hold, keep the local dashboard up."""
    from rlaif_ray.cluster import stop_local_ray
    from rlaif_ray.pipeline import Pipeline

    cfg = _config_and_overrides(ns.args, ns.verbose)
    pipeline = Pipeline(cfg)
    try:
        pipeline.run()
        session = pipeline.session
        if ns.hold and session is not None and session.started_here and session.dashboard_url:
            print(f"holding the dashboard at {session.dashboard_url}: Ctrl-C to stop")
            _wait_for_ctrl_c()
    finally:  # also after Ctrl-C or an error: sooner than Ray's own exit hook
        if pipeline.session is not None and pipeline.session.started_here:
            stop_local_ray(cfg.ray.verbose)
    return 0


def _wait_for_ctrl_c() -> None:
    import signal

    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("stopped")


def shared_run_dir(run_dir: str, storage: str | None) -> str:
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
    problem = scheme_problem(storage)
    if problem:
        raise ConfigError(f"--storage {storage!r} {problem}")
    return join(storage, run_dir)


# What a job takes from the submitter's environment: the model cache, and the fault seam
# (rlaif_ray.faults) so a test can stop a submitted run at a known point.
FORWARDED_ENV = ("RLAIF_RAY_CACHE", faults.ENV, faults.TRAINER_ENV)


def cmd_submit(ns: argparse.Namespace) -> int:
    """`rlaif-ray submit`: the run as a Ray job on a cluster."""
    from rlaif_ray import jobs

    cfg = _config_and_overrides(ns.args)  # fail here, not on the cluster, on a bad config
    run_dir = shared_run_dir(cfg.run.dir, ns.storage)
    args = [a for a in ns.args if not a.startswith("run.dir=")] + [f"run.dir={run_dir}"]
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ} or None
    config = ns.args[0] if ns.args and "=" not in ns.args[0] else "(embedded default)"
    job_id = jobs.submit(ns.address, args, jobs.submission_id(run_dir),
                         {"config": config, "run_dir": run_dir},
                         working_dir=ns.working_dir, env=env, python=ns.python)
    print(f"submitted {job_id} to {ns.address}; outputs in {run_dir}")
    print(f"follow it: rlaif-ray logs {job_id} --address {ns.address} --follow")
    if ns.follow:
        asyncio.run(jobs.follow(ns.address, job_id))
        print(f"{job_id}: {jobs.check_succeeded(ns.address, job_id)}")
    return 0


def cmd_status(ns: argparse.Namespace) -> int:
    """`rlaif-ray status`: a submitted job's state (exit 1 if it failed)."""
    from rlaif_ray import jobs

    state = jobs.status(ns.address, ns.job_id)
    print(f"{ns.job_id}: {state}")
    jobs.raise_if_failed(ns.address, ns.job_id, state)  # JobError: the failure's last line
    return 0


def cmd_logs(ns: argparse.Namespace) -> int:
    """`rlaif-ray logs`: a submitted job's log, or follow it."""
    from rlaif_ray import jobs

    if ns.follow:
        asyncio.run(jobs.follow(ns.address, ns.job_id))
    else:
        print(jobs.logs(ns.address, ns.job_id), end="")
    return 0


def cmd_plan(ns: argparse.Namespace) -> int:
    """`rlaif-ray plan`: the resource pools, checked against a cluster if given."""
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
    recorded = StoragePath.of(run_dir) / "config.yaml"
    if not recorded.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    with recorded.local_copy() as path:
        return load_config(path)


def _run_mode(run_dir: str) -> str:
    """The rubric mode a run was judged in (from its recorded config)."""
    return _run_config(run_dir).rubric.mode


def cmd_export(ns: argparse.Namespace) -> int:
    """`rlaif-ray export`: a checkpoint's policy as a model directory."""
    from rlaif_ray.export import checkpoint_of, export_policy
    from rlaif_ray.models import resolve_model

    cfg = _run_config(ns.run_dir)
    try:
        checkpoint = checkpoint_of(ns.run_dir, ns.iteration)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if ns.merge and not checkpoint.lora_rank:
        raise ConfigError(f"--merge: the policy of {checkpoint.path} holds full weights "
                          f"(trainer.lora.rank was 0), there is no adapter to merge")
    out = export_policy(checkpoint, resolve_model(cfg.generator.model, cfg.cache_dir), ns.out,
                        merge=ns.merge)
    what = "adapter" if checkpoint.lora_rank and not ns.merge else "policy"
    print(f"{what} of iteration {checkpoint.iteration} written to {out}")
    return 0


def cmd_pairs(ns: argparse.Namespace) -> int:
    """`rlaif-ray pairs`: a run's DPO preference pairs."""
    from rlaif_ray.console import judging_cost_lines
    from rlaif_ray.judge.pairs import preference_pairs, write_pairs
    from rlaif_ray.metrics import judging_cost, read_metrics

    iterations = [int(k) for k in ns.iterations.split(",")] if ns.iterations else None
    pairs = preference_pairs(ns.run_dir, _run_mode(ns.run_dir), ns.min_margin,
                             ns.min_confidence, iterations)
    print(f"{len(pairs)} preference pairs written to {write_pairs(pairs, ns.out)}")
    rows = [r for r in read_metrics(ns.run_dir)
            if iterations is None or r["iteration"] in iterations]
    judged = judging_cost(rows)
    for line in judging_cost_lines(judged["judge_usage"], judged["verdicts_kept"],
                                   len(pairs)):
        print(line)
    return 0


def cmd_review(ns: argparse.Namespace) -> int:
    """`rlaif-ray review serve|export|import|calibrate`: people in the loop."""
    from rlaif_ray.judge.rubric import Rubric

    rubric = Rubric.from_config(_run_config(ns.run_dir).rubric)
    return REVIEW_ACTIONS[ns.action](ns, rubric)


def _review_serve(ns: argparse.Namespace, rubric) -> int:
    from rlaif_ray.review.server import ReviewServer

    server = ReviewServer(ns.run_dir, rubric, host=ns.host, port=ns.port)
    print(f"review page for {ns.run_dir}:\n  {server.url}", flush=True)
    print("  (Ctrl-C stops it; each answer is saved as it is sent)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn hands Ctrl-C on once stopped
        server.serve_forever()
    print("review page stopped", flush=True)
    return 0


def _review_export(ns: argparse.Namespace, rubric) -> int:
    from rlaif_ray.review.labelstudio import config_path, export_tasks
    from rlaif_ray.review.queue import export_review, queue_path

    if ns.format == "labelstudio":
        out = ns.out or str(StoragePath.of(ns.run_dir) / "review" / "labelstudio.json")
        print(f"{export_tasks(ns.run_dir, out, rubric)} Label Studio tasks written to {out}; "
              f"labelling config: {config_path(out)}")
        return 0
    out = ns.out or str(queue_path(ns.run_dir))
    print(f"{export_review(ns.run_dir, out, rubric.mode)} items to review written to {out}")
    return 0


def _review_import(ns: argparse.Namespace, rubric) -> int:
    from rlaif_ray.review.human import import_review
    from rlaif_ray.review.labelstudio import import_annotations, is_labelstudio_export

    if is_labelstudio_export(ns.file):
        merged = import_annotations(ns.run_dir, ns.file, rubric)
    else:
        merged = import_review(ns.run_dir, ns.file, rubric, ns.reviewer)
    print(f"merged {merged} human verdicts")
    return 0


def _review_calibrate(ns: argparse.Namespace, rubric) -> int:
    from rlaif_ray.review.calibration import calibrate, calibration_lines

    report = calibrate(ns.run_dir)
    out = StoragePath.of(ns.run_dir) / "review" / "calibration.json"
    out.write_text(json.dumps(report, indent=1))
    for line in calibration_lines(report):
        print(line)
    print(f"written to {out}")
    return 0


REVIEW_ACTIONS = {"serve": _review_serve, "export": _review_export,
                  "import": _review_import, "calibrate": _review_calibrate}
