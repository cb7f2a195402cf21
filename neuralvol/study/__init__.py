"""Studies behind docs/STUDY.md: ``neuralvol study encodings``, ``study gradloss`` and
``study meta`` (the meta study lives in :mod:`neuralvol.study.meta`, imported on use)."""
from .encodings import run_encodings_study
from .gradloss import run_gradloss_study

__all__ = ["run_encodings_study", "run_gradloss_study"]
