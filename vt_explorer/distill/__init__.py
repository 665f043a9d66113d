"""Distil ImageNet's 1000 classes from the EfficientNet-Lite0 classifier into VT heads.

There is no ImageNet training set here, but there is an ImageNet teacher. The student
(``vt_lite0_imagenet``: Lite0's frozen blocks 0-10, then VT modules) and the teacher
(Lite0's blocks 11-15 and head) read the *same* stride-16 trunk features, so one trunk pass
serves both and the student learns exactly the part the paper replaces: the last stage.

The recipe is "patient and consistent" function matching (Beyer et al., CVPR 2022):

1. **Feature bank.** Every pool photo goes through the frozen trunk once, at a larger
   size than the model's (``bank_size``, default 288 px: an 18x18 map), and is cached
   (float16, ``$VT_EXPLORER_CACHE/features``).
2. **Fresh views, in feature space.** Each training sample is a random-resized crop of a
   bank map (area 8%-100%, aspect 3/4-4/3, bilinear, ``torchvision.ops.roi_align``) to the
   model's 14x14, mirrored at random, and with probability ``mix`` mixed with another
   sample (MixUp or CutMix on the maps). Crops of the feature map stand in for crops of the
   photo (the trunk's receptive field makes them close, not equal); what matters for
   function matching is that teacher and student see the same map. But a resampled crop is
   smoother than a map the trunk computes itself (about half its variance per channel),
   and a student fitted to crops alone agrees with the teacher much less on the trunk's own
   224-px maps, the maps every evaluation and the app give it (``benchmarks/view_gap.py``).
   With ``real_share`` > 0 that share of each batch is the pool photos' own 224-px maps
   (a second cached bank, mirrored at random) instead of crops; with ``window_share`` > 0
   a further share is whole-cell 14x14 windows of the 18x18 bank maps (:func:`window_views`:
   crops of a 224-px square of the photo that need no resampling, 25 positions per photo);
   with ``image_share`` > 0 a further share is fresh random-resized crops of the photos
   themselves, each through the trunk (:class:`ImageCrops`: Beyer et al.'s views exactly,
   at a trunk pass per view, cheap on a GPU).
3. **Teacher on every view.** The teacher's tail labels each (mixed) map; the loss is the KL
   divergence from its temperature-softened outputs, ``T^2 KL(p_T || p_S)``, plus
   ``ce_weight`` x cross-entropy on the hard label where the photo's folder is a wnid and
   the map is not mixed.
4. **Optional classifier reuse** (after SimKD, Chen et al. CVPR 2022; ``reuse_classifier``):
   the student's pooled tokens are projected to 1280-d and the teacher's own classifier,
   frozen, gives the logits. With ``feature_weight`` > 0 the projection also matches the
   teacher's pooled 1280-d feature on the same view (``feature_weight`` x mean squared
   error, SimKD's loss; ``kd_weight`` = 0 leaves that loss alone): 1280 numbers per view
   instead of a distribution dominated by the few classes the pool shows.
5. **Optional token diversity** (not in the paper; default off): ``diversity_weight`` x the
   mean pairwise cosine similarity of each VT module's token maps (:func:`token_overlap`,
   the measure ``analysis.map_similarity`` reports), a remedy for recurrent tokens that
   collapse onto one spot of a photo. With ``diversity_margin`` > 0 the term is a hinge:
   only each image's similarity above the margin is penalised, so maps already apart are
   left to the distillation loss.
6. **Optional group balance** (not in the paper; default off): ``balance_weight`` x how
   far each image's soft effective number of token groups falls short of
   ``balance_groups`` (:func:`group_balance`, the differentiable form of the effective
   groups that ``tokens`` reports): pulls pixels away from the few tokens that claim most
   of them, which pairwise map similarity does not see.

Measured on held-out sources (never trained on; a source given both as data and as
held-out is split: its fixed held-out sample is left out of the bank): top-1 agreement with the
teacher, top-1 and top-5 against the folder labels, every ``eval_every`` samples: the
learning curve the card records. Resumable (``--resume``): the state after the last
evaluation is kept in ``OUT.resume.pt`` (tensors only). ``--init CHECKPOINT`` starts from a
finished student of the same config instead of the pretrained initialisation: a second stage
with its own one-cycle schedule, for a run longer than one sitting; the card records the
checkpoint, its weights' hash and ``samples_in_all``.

The package, in the order a run goes through it: :mod:`.recipe` (the flags and their
checks), :mod:`.pool` (the bank, own maps, photos, labels and held-out sets),
:mod:`.views` (view sources and transforms behind one protocol), :mod:`.losses` and
:mod:`.loop` (the loop, held-out metrics, resume state and card). The teacher lives in
:mod:`vt_explorer.model.teacher`.
"""

from ..device import bf16_supported
from ..model.teacher import TEACHER, label_views, teacher_model
from .loop import distill, distill_step, holdout_metrics, init_from, read_state, write_card
from .losses import distill_loss, group_balance, kd_loss, token_overlap
from .pool import (
    Pool,
    feature_sets,
    find_wnids,
    held_out_sample,
    holdout_sets,
    pool_images,
    read_wnids,
    source_features,
    wnid_labels,
)
from .recipe import DistillArgs, check_recipe
from .views import (
    ImageCrops,
    MapCrops,
    Mix,
    Nudge,
    OwnMaps,
    Views,
    ViewSource,
    ViewTransform,
    Windows,
    make_views,
    mix_views,
    nudge_views,
    random_views,
    window_views,
)


def parse_sources(values: list[str]) -> list[str]:
    """Check each source path exists (folders or archives); DatasetError naming a missing one."""
    from ..data import check_source

    return [str(check_source(v)) for v in values]


__all__ = [
    "TEACHER",
    "DistillArgs",
    "ImageCrops",
    "MapCrops",
    "Mix",
    "Nudge",
    "OwnMaps",
    "Pool",
    "ViewSource",
    "ViewTransform",
    "Views",
    "Windows",
    "bf16_supported",
    "check_recipe",
    "distill",
    "distill_loss",
    "distill_step",
    "feature_sets",
    "find_wnids",
    "group_balance",
    "held_out_sample",
    "holdout_metrics",
    "holdout_sets",
    "init_from",
    "kd_loss",
    "label_views",
    "make_views",
    "mix_views",
    "nudge_views",
    "parse_sources",
    "pool_images",
    "random_views",
    "read_state",
    "read_wnids",
    "source_features",
    "teacher_model",
    "token_overlap",
    "window_views",
    "wnid_labels",
    "write_card",
]
