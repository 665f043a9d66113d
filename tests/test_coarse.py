"""CIFAR-10's classes as sets of ImageNet classes (vt_explorer.coarse)."""

from __future__ import annotations

import pytest

from vt_explorer.coarse import CIFAR10_IN_IMAGENET, coarse_labels, coarse_of
from vt_explorer.model.config import CIFAR10_CLASSES
from vt_explorer.model.registry import get_config

IMAGENET = list(get_config("efficientnet_lite0").classes)


def test_the_sets_name_the_imagenet_classes_they_claim() -> None:
    """Each set's ends and spot checks are the ImageNet classes the comments name, the sets
    are disjoint and cover exactly CIFAR-10's ten classes."""
    assert set(CIFAR10_IN_IMAGENET) == set(CIFAR10_CLASSES)
    ids = [i for s in CIFAR10_IN_IMAGENET.values() for i in s]
    assert len(ids) == len(set(ids)) and all(0 <= i < 1000 for i in ids)
    names = {c: [IMAGENET[i] for i in s] for c, s in CIFAR10_IN_IMAGENET.items()}
    assert names["dog"][0] == "Chihuahua" and names["dog"][-1] == "Mexican hairless"
    assert len(names["dog"]) == 118
    assert names["cat"] == ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    assert names["frog"] == ["bullfrog", "tree frog", "tailed frog"]
    assert names["deer"] == ["hartebeest", "impala", "gazelle"]
    assert names["airplane"] == ["airliner", "warplane"]
    assert {"goldfinch", "bald eagle", "flamingo", "king penguin", "black swan"} <= set(
        names["bird"]
    )
    assert "sports car" in names["automobile"] and "pickup" not in names["automobile"]
    assert "container ship" in names["ship"] and "fire engine" in names["truck"]
    assert "pickup" not in names["truck"]


def test_coarse_labels_of_both_kinds_of_model() -> None:
    assert coarse_of(IMAGENET.index("golden retriever")) == "dog"
    assert coarse_of(IMAGENET.index("cassette player")) is None
    picks = [IMAGENET.index(n) for n in ("tabby", "chain saw", "airliner")]
    assert coarse_labels(picks, IMAGENET) == ["cat", None, "airplane"]
    assert coarse_labels([5, 0], list(CIFAR10_CLASSES)) == ["dog", "airplane"]
    with pytest.raises(ValueError, match="not CIFAR-10 or ImageNet classes: blue, green, red"):
        coarse_labels([0], ["red", "green", "blue"])
