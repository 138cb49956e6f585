"""Start a local multi-pool Ray cluster on one machine: a head plus one worker node per
pool, whose custom resources (generator_gpu, judge_gpu, trainer_gpu) stand in for the GPU
node types of a real cluster. Runs until Ctrl-C.

    python cluster/local_cluster.py &           # prints the address
    rlaif-ray run conf/local_cluster.yaml ray.address=<address>

With `--node-caches DIR`, each pool's node keeps its models apart, as nodes that share no
disk do: `$RLAIF_RAY_CACHE` is DIR/<resource> and `$HF_HOME` DIR/<resource>/hf there.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from ray.cluster_utils import Cluster

POOLS = {"generator_gpu": 2, "judge_gpu": 2, "trainer_gpu": 2}


def start(cpus_per_node: int = 2, node_caches: Path | None = None) -> Cluster:
    """Head (no pool resources) + one node per pool; with `node_caches`, each pool's node
    has its own model caches under it."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for resource, amount in POOLS.items():
        env = None
        if node_caches is not None:
            cache = node_caches / resource
            env = {"RLAIF_RAY_CACHE": str(cache), "HF_HOME": str(cache / "hf")}
        cluster.add_node(num_cpus=cpus_per_node, resources={resource: amount}, env_vars=env)
    cluster.wait_for_nodes()
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--node-caches", type=Path, default=None, metavar="DIR",
                        help="give each pool's node its own model caches under DIR")
    args = parser.parse_args()
    cluster = start(args.cpus_per_node, args.node_caches)
    print(f"address: {cluster.address}", flush=True)
    print(f"pools: {POOLS}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    cluster.shutdown()


if __name__ == "__main__":
    main()
