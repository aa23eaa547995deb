"""One exception hierarchy for horizon. Messages name the field or file and the fix."""


class HorizonError(Exception):
    """Base class of every error horizon raises on purpose."""


class ConfigError(HorizonError, ValueError):
    """A config key, type or value is wrong (raised before any model loads)."""


class DataError(HorizonError, ValueError):
    """A dataset, task or run file is malformed."""


class ModelNotFound(HorizonError, FileNotFoundError):
    """A model name or path does not resolve to local weights."""


class EngineError(HorizonError, RuntimeError):
    """A rollout engine failed or was asked for something it cannot do."""


class VerifierError(HorizonError, RuntimeError):
    """A verifier could not score an episode."""


class RunAborted(HorizonError, RuntimeError):
    """Training stopped on purpose: continuing would train on garbage (the message says why)."""
