"""Search: a space of policies, drivers that sample it, the study they share, and freezing."""
from __future__ import annotations

from .freeze import best_by_policy, best_policy, merge_top
from .runner import run_search
from .space import SearchSpace, load_space
from .study import StudyContext

__all__ = ["SearchSpace", "StudyContext", "best_by_policy", "best_policy", "load_space", "merge_top",
           "run_search"]
