"""Scorecard numerics: artifact, binning, training, the numba kernel, evaluation. No Kafka."""

from scoring.artifact import ArtifactError, Scorecard, load, save
from scoring.errors import InputError

__all__ = ["ArtifactError", "InputError", "Scorecard", "load", "save"]
