"""CIFAR-10's ten classes as sets of ImageNet classes: one scale on which a CIFAR-10 model and
an ImageNet model can be compared on the same photo.

A CIFAR-10 model can only ever answer one of ten words, so its agreement with an ImageNet
classifier is undefined at 1000 classes. On the coarse scale it is defined: an ImageNet
prediction counts as "dog" when it is one of ImageNet's 118 dog breeds, as "automobile" when
it is a car, and so on; a prediction outside every set is "other". Used by
``benchmarks/experiments/coarse_agreement.py`` to compare the app's CIFAR-10 pair with the ImageNet
students on held-out photos, scored against the ImageNet teacher.

The sets (indices of the 1000 ImageNet classes in the usual order, names checked in the
tests). They follow CIFAR-10's own class definitions: "automobile" is sedans, SUVs and the
like and "truck" only big trucks, so a pickup is neither; ImageNet-1k has no deer, so
"deer" is its three antelopes (the nine demo photos count the impala as a deer too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .flags import UserError

#: CIFAR-10 class -> the ImageNet class indices it covers
CIFAR10_IN_IMAGENET: dict[str, tuple[int, ...]] = {
    "airplane": (404, 895),  # airliner, warplane
    # beach wagon, cab, convertible, jeep, limousine, minivan, Model T, racer, sports car
    "automobile": (436, 468, 511, 609, 627, 656, 661, 751, 817),
    # cock .. great grey owl, black grouse .. black swan, white stork .. albatross
    "bird": (*range(7, 25), *range(80, 101), *range(127, 147)),
    "cat": tuple(range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "deer": (351, 352, 353),  # hartebeest, impala, gazelle
    "dog": tuple(range(151, 269)),  # Chihuahua .. Mexican hairless
    "frog": (30, 31, 32),  # bullfrog, tree frog, tailed frog
    "horse": (339,),  # sorrel
    # aircraft carrier, catamaran, container ship, fireboat, liner, pirate, schooner,
    # trimaran, yawl
    "ship": (403, 484, 510, 554, 628, 724, 780, 871, 914),
    # fire engine, garbage truck, moving van, tow truck, trailer truck
    "truck": (555, 569, 675, 864, 867),
}

_OF: dict[int, str] = {i: c for c, ids in CIFAR10_IN_IMAGENET.items() for i in ids}


def coarse_of(index: int) -> str | None:
    """The CIFAR-10 class an ImageNet class index belongs to, or None (no CIFAR-10 class)."""
    return _OF.get(int(index))


def coarse_labels(predictions: Iterable[int], classes: Sequence[str]) -> list[str | None]:
    """Predicted class indices as CIFAR-10 words: a 10-class model's own class names
    (``classes`` is CIFAR-10's), a 1000-class ImageNet model's through
    :data:`CIFAR10_IN_IMAGENET` (None where none applies). Raises ValueError for any other
    number of classes."""
    if len(classes) == 1000:
        return [coarse_of(i) for i in predictions]
    unknown = sorted(set(classes) - set(CIFAR10_IN_IMAGENET))
    if unknown:
        raise UserError(f"not CIFAR-10 or ImageNet classes: {', '.join(unknown[:5])}")
    return [classes[int(i)] for i in predictions]
