"""Start a local multi-pool Ray cluster on one machine: a head plus one worker node per
pool, whose custom resources (generator_gpu, judge_gpu, trainer_gpu) stand in for the GPU
node types of a real cluster. Runs until Ctrl-C.

    python cluster/local_cluster.py &           # prints the address
    rlaif-ray run conf/local_cluster.yaml ray.address=<address>
"""

from __future__ import annotations

import argparse
import signal
import threading

from ray.cluster_utils import Cluster

POOLS = {"generator_gpu": 2, "judge_gpu": 2, "trainer_gpu": 2}


def start(cpus_per_node: int = 2) -> Cluster:
    """Head (no pool resources) + one node per pool."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for resource, amount in POOLS.items():
        cluster.add_node(num_cpus=cpus_per_node, resources={resource: amount})
    cluster.wait_for_nodes()
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpus-per-node", type=int, default=2)
    args = parser.parse_args()
    cluster = start(args.cpus_per_node)
    print(f"address: {cluster.address}", flush=True)
    print(f"pools: {POOLS}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    cluster.shutdown()


if __name__ == "__main__":
    main()
