"""The config section every pool shares: the Ray resources one replica asks for
(`generator.resources`, `judges[].resources`, `trainer.resources`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ResourcesConfig:
    """Resources of one replica; the pool reserves `replicas` bundles of these."""

    num_cpus: float = 0.5
    num_gpus: float = 0.0
    # Custom Ray resources, e.g. {generator_gpu: 1} to pin a pool to its node type.
    custom: dict[str, float] = field(default_factory=dict)
