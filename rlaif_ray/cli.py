"""The `rlaif-ray` command."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import textwrap
import threading
from collections.abc import Sequence

from rlaif_ray import cli_handlers as handlers
from rlaif_ray.data.prompts import PromptsError
from rlaif_ray.errors import RUN_ERRORS, ConfigError, RunInterrupted
from rlaif_ray.judge.ensemble import ENSEMBLES
from rlaif_ray.judge.kinds import JUDGE_KINDS
from rlaif_ray.judge.modes import RUBRIC_MODES
from rlaif_ray.review.queue import ReviewError
from rlaif_ray.sync.transports import TRANSPORTS
from rlaif_ray.train.advantages import ESTIMATORS

CONFIG_KEYS = f"""\
CONFIG: a YAML file (default: the packaged embedded default: tiny local models,
local Ray). key=value overrides follow it, e.g. judges.0.replicas=2. Main keys:
  run.dir             where outputs go: a path, or a URI (s3://bucket/runs/x)
  run.iterations      iterations to run; run.resume=true continues run.dir
  run.mode            sync | async (one-step off-policy)
  prompts.path        JSONL or Parquet with a `prompt` column (null: built-in)
  generator.model     the policy: embedded name, directory or cached hub id
  generator.replicas  vLLM replicas; generator.samples_per_prompt answers each
  generator.sync_transport  {' | '.join(TRANSPORTS)} (weight sync)
  judges              the judges: kind ({' | '.join(JUDGE_KINDS)}), model, replicas
  rubric.mode         {' | '.join(RUBRIC_MODES)}; voting.votes
  voting.ensemble     {' | '.join(ENSEMBLES)}
  trainer.workers     Ray Train workers; trainer.zero_stage, trainer.ppo_epochs
  trainer.advantage_estimator  {' | '.join(ESTIMATORS)}
  ray.address         a cluster to join (null: a local Ray with its dashboard)
All keys and their defaults: rlaif-ray config. Docs: README.md."""


def _command(sub, name: str, summary: str, description: str, example: str,
             config: bool = False) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does, its main keys and an example."""
    epilog = (CONFIG_KEYS + "\n\n" if config else "") + "example:\n  " + example
    parser = sub.add_parser(name, help=summary, description=textwrap.fill(description, 79),
                            epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    if config:
        parser.add_argument("args", nargs="*", metavar="ARG",
                            help="[CONFIG.yaml] [key=value ...] (see below)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlaif-ray", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Reinforcement learning from AI feedback on a Ray cluster: "
                                  "vLLM generators, vLLM judges with self-consistent voting, "
                                  "DeepSpeed PPO.", 79),
        epilog="start here:\n  rlaif-ray run              the embedded default, a few minutes "
               "on a laptop\n  rlaif-ray run --help       what a run takes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = _command(sub, "run", "the RLAIF loop: generate, judge, vote, PPO, weight sync",
                   "Run the RLAIF loop for run.iterations iterations: the generators answer "
                   "every prompt, the judges score the answers, consistent verdicts become "
                   "rewards, PPO updates the policy and the new weights go back to the "
                   "generators. Prints the dashboard URL, progress and a summary table.",
                   "rlaif-ray run conf/default.yaml run.dir=runs/try1 run.iterations=4",
                   config=True)
    run.add_argument("--hold", action="store_true",
                     help="keep the local Ray dashboard up after the run (Ctrl-C ends it)")
    generate = _command(sub, "generate", "sample answers with log-probs and save them",
                        "Sample generator.samples_per_prompt answers per prompt from the "
                        "generator pool and write them to run.dir/generate/.",
                        "rlaif-ray generate prompts.path=my.jsonl run.dir=runs/gen",
                        config=True)
    judge = _command(sub, "judge", "generate, judge and vote; write the preference data",
                     "Generate and judge every prompt without training: verdicts go to "
                     "run.dir/data/, DPO pairs to run.dir/pairs.parquet and low-confidence "
                     "items to run.dir/review/queue.jsonl. Prompts already judged in run.dir "
                     "are skipped.",
                     "rlaif-ray judge prompts.path=my.jsonl run.dir=runs/prefs", config=True)
    for cmd in (run, generate, judge):
        cmd.add_argument("-v", "--verbose", action="store_true",
                         help="stream every Ray worker's output (vLLM, Ray Train) here")
    run.set_defaults(func=handlers.cmd_run)
    generate.set_defaults(func=handlers.cmd_generate)
    judge.set_defaults(func=handlers.cmd_judge)
    _command(sub, "config", "print the resolved config", "Print the config a command would "
             "run with, after the file and the overrides.",
             "rlaif-ray config conf/gpu-llama8b-qwen72b.yaml trainer.workers=4",
             config=True).set_defaults(func=handlers.cmd_config)
    plan = _command(sub, "plan", "print (and check) the resource plan per pool",
                    "Print each pool's replicas and resources; with --address, check them "
                    "against a running cluster and name what it lacks.",
                    "rlaif-ray plan conf/gpu-llama8b-qwen72b.yaml --address HEAD:6379",
                    config=True)
    plan.add_argument("--address", default=None, help="a running cluster to check against")
    plan.set_defaults(func=handlers.cmd_plan)
    address_help = "Ray dashboard address, e.g. http://127.0.0.1:8265 (default $RAY_ADDRESS)"
    submit = _command(sub, "submit", "submit `rlaif-ray run` as a Ray job",
                      "Submit the run to a cluster as a Ray job (this directory as its "
                      "working dir). run.dir must be shared storage: an absolute path every "
                      "node mounts, or a URI; --storage puts a relative run.dir under one.",
                      "rlaif-ray submit --address http://HEAD:8265 --storage s3://bkt/runs \\\n"
                      "    conf/gpu-llama8b-qwen72b.yaml run.dir=llama8b --follow",
                      config=True)
    submit.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help=address_help)
    submit.add_argument("--working-dir", default=".", help="uploaded as the job's working dir")
    submit.add_argument("--follow", action="store_true", help="stream the job's log")
    submit.add_argument("--python", default="python",
                        help="interpreter on the cluster that has rlaif-ray installed")
    submit.add_argument("--storage", default=None,
                        help="absolute shared directory or URI to put a relative run.dir under")
    submit.set_defaults(func=handlers.cmd_submit)
    for name, func, text in (("status", handlers.cmd_status, "the state of a submitted job"),
                             ("logs", handlers.cmd_logs, "the log of a submitted job")):
        cmd = _command(sub, name, text, f"Print {text} (exit 1 when it FAILED or STOPPED)."
                       if name == "status" else f"Print {text}.",
                       f"rlaif-ray {name} rlaif-llama8b-20261128-210509 --address "
                       f"http://HEAD:8265")
        cmd.add_argument("job_id")
        cmd.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help=address_help)
        if name == "logs":
            cmd.add_argument("--follow", action="store_true")
        cmd.set_defaults(func=func)
    policy = _command(sub, "export", "write a checkpoint's policy as a model directory",
                      "Write the policy of a run's checkpoint as a Hugging Face model "
                      "directory (config, tokenizer, model.safetensors) that transformers and "
                      "vLLM load, or a LoRA run's adapter in peft's format. run.dir/policy/ "
                      "always holds the newest one.",
                      "rlaif-ray export runs/try1 models/try1-iter3 --iteration 3")
    policy.add_argument("run_dir")
    policy.add_argument("out")
    policy.add_argument("--iteration", type=int, default=None,
                        help="the checkpoint's iteration (default: the newest)")
    policy.add_argument("--merge", action="store_true",
                        help="a LoRA run: merge the adapter into the base model and write a "
                             "whole model directory")
    policy.set_defaults(func=handlers.cmd_export)
    pairs = _command(sub, "pairs", "DPO preference pairs from a run's kept verdicts",
                     "Write prompt, chosen, rejected (the columns TRL's DPOTrainer reads) plus "
                     "margin, confidence, judge_scores, iteration and source, from the verdicts "
                     "that stand (people's verdicts in place of the judges').",
                     "rlaif-ray pairs runs/try1 --out pairs.parquet --min-margin 0.2")
    pairs.add_argument("run_dir")
    pairs.add_argument("--out", required=True, help="Parquet file to write")
    pairs.add_argument("--min-margin", type=float, default=0.1,
                       help="pointwise: least score difference; pairwise: 2 x agreement - 1")
    pairs.add_argument("--min-confidence", type=float, default=0.0)
    pairs.add_argument("--iterations", default=None, help="e.g. 0,1,2 (default: all)")
    pairs.set_defaults(func=handlers.cmd_pairs)
    review = sub.add_parser("review", help="human review of low-confidence verdicts",
                            description="The items whose verdict did not stand: review "
                                        "them on a page or in a file, merge people's "
                                        "verdicts back, measure the judges against them.")
    review_sub = review.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = _command(review_sub, "serve", "serve the review page over a run directory",
                     "A page over RUN_DIR (local or s3://), during a run or after it: the "
                     "queue lowest confidence first, filterable by iteration, judge and "
                     "dimension; each answer is saved as a source=human verdict. Loopback "
                     "only unless --host says otherwise; open the address it prints (it "
                     "carries the page's token).",
                     "rlaif-ray review serve runs/try1 --port 8270")
    serve.add_argument("run_dir")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8270, help="0: any free port")
    serve.set_defaults(func=handlers.cmd_review)
    export = _command(review_sub, "export", "write the review queue (JSONL, CSV, Label Studio)",
                      "Write the items awaiting a person, with their texts and votes; fill "
                      "in `verdict` (a score 1-10, or A/B/tie) or `scores` and import the "
                      "file. --format labelstudio writes Label Studio tasks and, beside "
                      "them, the labelling config (.xml).",
                      "rlaif-ray review export runs/try1 --out review.csv")
    export.add_argument("run_dir")
    export.add_argument("--out", default=None, help="default: RUN_DIR/review/queue.jsonl")
    export.add_argument("--format", choices=("auto", "labelstudio"), default="auto",
                        help="auto: by --out's ending (.csv or JSONL)")
    export.set_defaults(func=handlers.cmd_review)
    merge = _command(review_sub, "import", "merge people's verdicts back",
                     "Check every line (or Label Studio task), then add the verdicts as "
                     "source=human rows of the verdict table; they replace the judges' "
                     "verdict wherever it is read.",
                     "rlaif-ray review import runs/try1 review.csv --reviewer alice")
    merge.add_argument("run_dir")
    merge.add_argument("file", help="the queue file filled in, or Label Studio's JSON export")
    merge.add_argument("--reviewer", default="file",
                       help="who gave the verdicts where a line does not say")
    merge.set_defaults(func=handlers.cmd_review)
    calibrate = _command(review_sub, "calibrate", "measure each judge against people",
                         "On the items people judged: per judge and dimension, Spearman's "
                         "rho and Cohen's kappa with the people's verdicts, and the judge's "
                         "bias. Written to RUN_DIR/review/calibration.json.",
                         "rlaif-ray review calibrate runs/try1")
    calibrate.add_argument("run_dir")
    calibrate.set_defaults(func=handlers.cmd_review)
    models = sub.add_parser("models", help="embedded tiny models",
                            description="Build the embedded tiny models into the cache.")
    models_sub = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = _command(models_sub, "build", "build embedded models into the cache",
                     "Build the embedded tiny models (deterministic, no download) into "
                     "$RLAIF_RAY_CACHE.", "rlaif-ray models build tiny-llama tiny-judge")
    build.add_argument("names", nargs="*", help="models to build (default: policy and judge)")
    build.add_argument("--cache", default=None, help="cache dir (default: $RLAIF_RAY_CACHE)")
    build.set_defaults(func=handlers.cmd_models)
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
    except RunInterrupted as err:
        print(str(err), file=sys.stderr)
        return 130
    except RUN_ERRORS as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def console_main() -> None:
    """The `rlaif-ray` command: `main`, then a fast exit (as mypy's). As at a normal exit,
    threads that are not daemons are joined and the exit hooks run (Ray's, logging's); what
    is skipped is the interpreter's final sweep of a heap of torch, transformers and Ray
    objects (seconds of a tiny run: docs/performance.md)."""
    code = main()
    # What the interpreter does first at exit: threading's own exit hooks (a thread pool
    # stops its idle workers), then it joins the threads that are not daemons.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
