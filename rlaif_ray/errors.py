"""Errors that stop a run, each naming what failed (kept light: the CLI imports them, and
every layer may raise them)."""


class ConfigError(ValueError):
    """A configuration problem, naming the offending key."""


class ResourcePoolError(RuntimeError):
    """A pool the cluster cannot hold (now or ever), naming the pool and what is missing."""


class WeightSyncError(RuntimeError):
    """A weight update that failed, timed out or did not verify."""


class JudgeQuorumError(RuntimeError):
    """Too few judges remain in the ensemble (the others were tripped)."""


class TrainerError(RuntimeError):
    """The trainer failed or stopped answering."""


class StallError(RuntimeError):
    """A replica, the trainer or the exchange made no progress within run.stall_timeout_s."""


class ReplicaStartError(RuntimeError):
    """A generator or judge replica failed to start (its engine, its model on its node)."""


class ModelLockError(RuntimeError):
    """Another process held a model's build lock past the bound (a hung build)."""


class RunInterrupted(RuntimeError):
    """The user stopped the run (Ctrl-C); the pools are shut down, committed work kept."""


RUN_ERRORS = (ResourcePoolError, WeightSyncError, JudgeQuorumError, TrainerError, StallError,
              ReplicaStartError, ModelLockError)
