"""Studies behind docs/STUDY.md: ``neuralvol study encodings`` and ``neuralvol study gradloss``."""
from .encodings import run_encodings_study
from .gradloss import run_gradloss_study

__all__ = ["run_encodings_study", "run_gradloss_study"]
