"""Pure functions from a :class:`~vt_explorer.model.Trace` to arrays (no plotting, no UI).

Every function takes one image's slice of a trace (index ``i``) and returns numpy arrays,
so the app, the CLI and the tests compute exactly the same numbers.
"""

from .faithfulness import (
    DeletionResult,
    RandomisationResult,
    ablated_probabilities,
    ablation_applies,
    deletion_curves,
    deletion_verdict,
    entropy_ratio,
    foreground_share,
    randomisation_check,
    randomisation_steps,
    rank_correlation,
)
from .maps import (
    Diversity,
    TokenStats,
    diversity,
    effective_groups,
    map_similarity,
    peak_spread,
    projector_groups,
    propagated_maps,
    semantic_groups,
    token_contributions,
    token_entropy,
    token_stats,
    upsample,
)

__all__ = [
    "DeletionResult",
    "Diversity",
    "RandomisationResult",
    "TokenStats",
    "ablated_probabilities",
    "ablation_applies",
    "deletion_curves",
    "deletion_verdict",
    "diversity",
    "effective_groups",
    "entropy_ratio",
    "foreground_share",
    "map_similarity",
    "peak_spread",
    "projector_groups",
    "propagated_maps",
    "randomisation_check",
    "randomisation_steps",
    "rank_correlation",
    "semantic_groups",
    "token_contributions",
    "token_entropy",
    "token_stats",
    "upsample",
]
