"""Pure functions from a :class:`~vt_explorer.model.Trace` to arrays (no plotting, no UI).

Every function takes one image's slice of a trace (index ``i``) and returns numpy arrays,
so the app, the CLI and the tests compute exactly the same numbers.
"""

from .maps import (
    TokenStats,
    projector_groups,
    propagated_maps,
    semantic_groups,
    token_contributions,
    token_entropy,
    token_stats,
    upsample,
)

__all__ = [
    "TokenStats",
    "projector_groups",
    "propagated_maps",
    "semantic_groups",
    "token_contributions",
    "token_entropy",
    "token_stats",
    "upsample",
]
