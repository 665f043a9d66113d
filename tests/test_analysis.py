"""Analysis functions (trace -> arrays) and figure builders (arrays -> figures)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vt_explorer.analysis import (
    projector_groups,
    propagated_maps,
    semantic_groups,
    token_contributions,
    token_entropy,
    token_stats,
)
from vt_explorer.explore import analyse, display_image
from vt_explorer.model import create_model
from vt_explorer.preprocess import Preprocess
from vt_explorer.viz import attention_heatmap, group_image, overlay, predictions_bar, token_grid_png

from .imagegen import make_image


def _maps(L: int = 4, h: int = 5, w: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.random((L, h, w))
    return m / m.sum((1, 2), keepdims=True)


def test_semantic_groups_pick_the_peak_relative_winner() -> None:
    maps = np.full((2, 2, 2), 0.25)
    maps[0] = [[0.7, 0.1], [0.1, 0.1]]  # token 0 peaks at (0, 0)
    labels, share = semantic_groups(maps)
    assert labels[0, 0] == 0 and (labels.ravel()[1:] == 1).all()
    np.testing.assert_allclose(share, [0.25, 0.75])


def test_projector_groups_mass_sums_to_one() -> None:
    p = np.random.default_rng(0).random((3, 4, 4))
    p /= p.sum(0, keepdims=True)
    labels, mass = projector_groups(p)
    assert labels.shape == (4, 4) and np.isclose(mass.sum(), 1)


def test_propagated_maps() -> None:
    maps = _maps()
    np.testing.assert_allclose(propagated_maps(maps, np.eye(4)[None]), maps)
    w = np.random.default_rng(1).random((2, 4, 4))
    w /= w.sum(-1, keepdims=True)
    prop = propagated_maps(maps, w)
    np.testing.assert_allclose(prop.sum((1, 2)), 1.0)
    ref = np.stack([sum(w.mean(0)[i, k] * maps[k] for k in range(4)) for i in range(4)])
    np.testing.assert_allclose(prop, ref)


def test_entropy_extremes() -> None:
    uniform = np.full((1, 4, 4), 1 / 16)
    delta = np.zeros((1, 4, 4))
    delta[0, 1, 2] = 1
    ent, uni = token_entropy(np.concatenate([uniform, delta]))
    np.testing.assert_allclose(ent, [np.log(16), 0], atol=1e-9)
    assert np.isclose(uni, np.log(16))


def test_removing_a_token_equal_to_the_mean_changes_nothing() -> None:
    model = create_model("vt_resnet20").eval()
    t = torch.randn(5, 128)
    t[4] = t[:4].mean(0)  # token 4 equals the mean of the others
    contrib = token_contributions(model, t, class_index=3)
    assert abs(contrib[4]) < 1e-5
    assert np.abs(contrib[:4]).max() > 1e-4


def test_token_stats_and_analyse_on_a_traced_image() -> None:
    from vt_explorer.checkpoint import LoadedCheckpoint

    model = create_model("vt_resnet20").eval()
    with torch.no_grad():
        tr = model.trace(torch.randn(2, 3, 32, 32))
    s = token_stats(tr, 2, 1, model)
    assert s.share.shape == (16,) and np.isclose(s.share.sum(), 1)
    assert s.contribution is not None and s.contribution.shape == (16,)
    assert token_stats(tr, 0, 0).contribution is None
    pre = Preprocess(32, model.cfg.mean, model.cfg.std)
    ck = LoadedCheckpoint(model, {"classes": list(model.cfg.classes)}, pre, model.cfg)
    a = analyse(ck, make_image((50, 60, 70), 600), "big")
    assert max(a.image.shape[:2]) == 448 and len(a.modules) == 3
    assert a.modules[0].maps.shape == (16, 16, 16) and a.modules[2].projector is None
    assert np.isclose(a.probs.sum(), 1, atol=1e-5)


def test_figures() -> None:
    img = display_image(make_image((10, 20, 30), 64))
    maps = _maps(4, 8, 8)
    out = overlay(img, maps[0], "viridis", 0.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(overlay(img, maps[0], "jet", 0.0), img)
    labels, _ = semantic_groups(maps)
    assert group_image(img, labels).shape == img.shape
    # shared scale (default): one row of four 160-px tiles under the scale note (30 px),
    # each under its label (38 px), then the colour bar (90 px + pad); token 2's tile is its
    # overlay on the grid's 0..max scale, drawn on the image resized to the tile (160 px)
    top, label, bar = 30, 38, 90 + 6
    grid = Image.open(io.BytesIO(token_grid_png(img, maps, "viridis", 0.5)))
    assert grid.size == (6 + 4 * (160 + 6), top + 160 + label + 6 + bar)
    rows = slice(top + label, top + label + 160)
    tile = np.asarray(grid.convert("RGB"))[rows, 6 + 2 * 166 : 6 + 2 * 166 + 160]
    small = np.asarray(Image.fromarray(img).resize((160, 160), Image.BILINEAR))
    want = overlay(small, maps[2], "viridis", 0.5, vmax=float(maps.max()))
    assert np.array_equal(tile, want)
    # per-tile stretching on request: the tile is stretched to its own range, no colour bar
    own = Image.open(io.BytesIO(token_grid_png(img, maps, "viridis", 0.5, shared=False)))
    assert own.size == (6 + 4 * (160 + 6), top + 160 + label + 6)
    tile = np.asarray(own.convert("RGB"))[rows, 6 + 2 * 166 : 6 + 2 * 166 + 160]
    assert np.array_equal(tile, overlay(small, maps[2], "viridis", 0.5))
    titled = Image.open(io.BytesIO(token_grid_png(img, maps, title="module 1", cols=2)))
    assert titled.size == (352, top + 2 * (160 + label + 6) + bar)
    # a uniform map on the shared scale is one flat colour; stretched it would be noise
    flat = np.full((2, 8, 8), 1 / 64)
    flat[1, 0, 0] += 1e-4
    out = overlay(img, flat[0], "viridis", 1.0, vmax=float(flat.max()))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) == 1
    assert b"<svg" in token_grid_png(img, maps, fmt="svg")[:500]
    fig = attention_heatmap(np.eye(3))
    assert fig.data[0].z.shape == (3, 3)
    bar = predictions_bar(["a", "b", "c"], np.array([0.2, 0.5, 0.3]), k=2)
    assert list(bar.data[0].y) == ["c", "b"]


def test_distinct_tokens_counts_collapsed_maps_once() -> None:
    from vt_explorer.explore import distinct_tokens

    maps = _maps(L=5)
    assert distinct_tokens(maps) == 5
    same = np.repeat(maps[:1], 5, axis=0)
    assert distinct_tokens(same) == 1
    same[2] = maps[3]
    assert distinct_tokens(same) == 2


def test_analysis_arrays_round_trip_through_npz() -> None:
    from vt_explorer.checkpoint import LoadedCheckpoint
    from vt_explorer.explore import npz_bytes

    model = create_model("vt_resnet20").eval()
    pre = Preprocess(32, model.cfg.mean, model.cfg.std)
    ck = LoadedCheckpoint(
        model=model, card={"classes": list("abcdefghij")}, preprocess=pre, config=model.cfg
    )
    a = analyse(ck, make_image((10, 200, 10), 64))
    arrays = a.to_arrays()
    import io

    back = np.load(io.BytesIO(npz_bytes(arrays)))
    assert set(back.files) == set(arrays)
    np.testing.assert_array_equal(back["m2_maps"], a.modules[1].maps)
    assert "m3_projector" not in back.files and "deletion_curve" in back.files
    # views are drawn on the image enlarged (nearest) to about 224 px; grids on <= 224 px
    assert a.tile.shape[0] <= 224 and a.image.shape[:2] == (192, 192)


@pytest.mark.parametrize(
    "config,overrides", [("vt_resnet20", {"depth": 2}), ("vit_resnet_seed", {})]
)
def test_what_the_app_shows_is_what_explain_writes(tmp_path, config, overrides) -> None:
    """The drift test: for one image, every array of the app's analysis equals the array
    `vt-explorer explain` writes, for a module with two transformer layers and for the seed
    design's class token (propagated maps included: one rule, the last layer)."""
    from vt_explorer.checkpoint import load_checkpoint, save_checkpoint
    from vt_explorer.cli import main

    save_checkpoint(create_model(config, **overrides), tmp_path / "ck")
    ck = load_checkpoint(tmp_path / "ck")
    (tmp_path / "imgs").mkdir()
    make_image((200, 40, 10), 48, seed=5).save(tmp_path / "imgs" / "one.png")
    out = tmp_path / "out"
    argv = ["explain", str(tmp_path / "imgs"), "-c", str(tmp_path / "ck"), "--out", str(out)]
    assert main([*argv, "--no-figures"]) == 0
    written = np.load(out / "one" / "ck" / "arrays.npz")
    from PIL import Image

    shown = analyse(ck, Image.open(tmp_path / "imgs" / "one.png"), "one").to_arrays()
    assert set(written.files) == set(shown)
    for k, v in shown.items():
        np.testing.assert_array_equal(written[k], v, err_msg=k)
    assert any(k.endswith("_propagated") for k in shown)
    if overrides.get("depth") == 2:
        assert "m2_token_attention_l2" in shown


def test_diversity_measures_on_constructed_maps() -> None:
    """Identical maps, one spot with noise (the collapse the distinct count misses) and
    disjoint maps, each against what the measure must say."""
    from vt_explorer.analysis import diversity, effective_groups, map_similarity, peak_spread
    from vt_explorer.explore import distinct_tokens

    L, h, w = 16, 8, 8
    same = np.full((L, h, w), 1 / (h * w))
    d = diversity(same)
    assert d.effective_groups == 1.0 and np.isclose(d.similarity, 1) and d.verdict == "collapsed"
    rng = np.random.default_rng(0)
    spot = rng.uniform(0, 0.01, (L, h, w))
    spot[:, 3, 4] = 1.0
    spot /= spot.reshape(L, -1).sum(1)[:, None, None]
    assert distinct_tokens(spot) == L  # the old count calls these 16 distinct maps
    d = diversity(spot)
    assert d.similarity > 0.99 and d.peak_spread == 0.0 and d.verdict == "collapsed"
    disjoint = np.zeros((L, h, w))
    for t in range(L):
        disjoint[t, (t // 4) * 2 : (t // 4) * 2 + 2, (t % 4) * 2 : (t % 4) * 2 + 2] = 0.25
    d = diversity(disjoint)
    assert np.isclose(d.effective_groups, L) and d.similarity == 0.0 and d.verdict == "diverse"
    assert peak_spread(disjoint) > 0.3
    assert np.isclose(effective_groups(np.array([0.5, 0.5, 0, 0])), 2.0)
    assert np.isclose(map_similarity(np.stack([same[0], same[0]])), 1.0)


def test_zip_holds_what_explain_writes(tmp_path) -> None:
    """The app's ZIP for one image: the same figure files `explain` writes, the same arrays,
    the summary, and one token-table CSV per module whose numbers are the table's."""
    import csv
    import io
    import zipfile

    from PIL import Image

    from vt_explorer.checkpoint import load_checkpoint, save_checkpoint
    from vt_explorer.cli import main
    from vt_explorer.exports import zip_bytes

    save_checkpoint(create_model("vt_resnet20", depth=2), tmp_path / "ck")
    ck = load_checkpoint(tmp_path / "ck")
    (tmp_path / "imgs").mkdir()
    make_image((20, 40, 200), 40, seed=3).save(tmp_path / "imgs" / "one.png")
    out = tmp_path / "out"
    assert (
        main(["explain", str(tmp_path / "imgs"), "-c", str(tmp_path / "ck"), "--out", str(out)])
        == 0
    )
    folder = out / "one" / "ck"
    a = analyse(ck, Image.open(tmp_path / "imgs" / "one.png"), "one.png")
    with zipfile.ZipFile(io.BytesIO(zip_bytes(a, "ck"))) as z:
        names = {n.split("/", 1)[1]: n for n in z.namelist()}
        assert {n.split("/")[0] for n in z.namelist()} == {"one-ck"}
        figures = {f.name for f in folder.glob("*.png")}
        assert figures and figures == {n for n in names if n.endswith(".png")}
        arrays = np.load(io.BytesIO(z.read(names["arrays.npz"])))
        written = np.load(folder / "arrays.npz")
        assert set(arrays.files) == set(written.files)
        for k in written.files:
            np.testing.assert_array_equal(arrays[k], written[k], err_msg=k)
        summary = json.loads(z.read(names["summary.json"]))
        assert summary["model"] == "ck" and len(summary["modules"]) == len(a.modules)
        for k, v in enumerate(a.modules):
            rows = list(csv.reader(io.StringIO(z.read(names[f"m{k + 1}_tokens.csv"]).decode())))
            assert rows[0] == ["token", *v.table()] and len(rows) == 1 + len(v.maps)
            share = [float(r[1]) for r in rows[1:]]
            np.testing.assert_allclose(share, v.table()["share of pixels"], rtol=1e-5)


def test_pixel_weights_and_cells_of_two_grids() -> None:
    """What a picked cell shows: the tokenizer's column of the maps and the projector's
    weights there (a softmax over tokens: sums to 1); one picked point lands on the same
    place in a 14x14 and a 16x16 grid."""
    from vt_explorer.checkpoint import LoadedCheckpoint
    from vt_explorer.viz.linked import cell_of

    torch.manual_seed(0)
    model = create_model("vt_resnet20").eval()
    pre = Preprocess(32, model.cfg.mean, model.cfg.std)
    ck = LoadedCheckpoint(
        model=model, card={"classes": list("abcdefghij")}, preprocess=pre, config=model.cfg
    )
    v = analyse(ck, make_image((10, 200, 10), 64)).modules[0]
    tok, proj = v.at_pixel((3, 5))
    np.testing.assert_array_equal(tok, v.maps[:, 3, 5])
    assert proj is not None and np.isclose(proj.sum(), 1.0, atol=1e-5)
    assert cell_of((0.5, 0.25), (14, 14)) == (7, 3) and cell_of((0.5, 0.25), (16, 16)) == (8, 4)
    assert cell_of((0.999, 0.999), (14, 14)) == (13, 13)


def test_marks_frame_the_picked_tile_and_grey_the_other_groups() -> None:
    """The linked views' marks: the picked token's tile framed in the grid picture, the
    other groups grey in the group map, the picked cell ringed."""
    from vt_explorer.viz.figures import GridMarks, token_grid

    img = np.full((32, 32, 3), 128, np.uint8)
    maps = np.full((4, 4, 4), 1 / 16)
    plain = np.asarray(token_grid(img, maps, cols=4))
    framed = np.asarray(token_grid(img, maps, cols=4, marks=GridMarks(token=2)))
    diff = np.argwhere((plain != framed).any(-1))
    assert len(diff) and diff[:, 1].min() > 2 * plain.shape[1] // 4 - 10  # around tile 2 only
    labels = np.array([[0, 1], [1, 1]])
    out = group_image(img, labels, highlight=0)
    assert (out[:16, :16] != out[16:, 16:]).any()  # group 0 in colour, the rest grey
    assert np.ptp(out[20:, 20:].astype(int), axis=-1).max() == 0  # grey: no colour
    ringed = group_image(img, labels, pixel=(1, 1))
    assert (ringed != group_image(img, labels)).any()


def test_scores_read_as_people_expect() -> None:
    """A score that rounds to zero reads 0.000 (never -0.000 or -0.0000); others keep sign."""
    from vt_explorer.analysis import format_score

    assert format_score(-0.00001) == "0.000" and format_score(0.0) == "0.000"
    assert format_score(0.0894) == "+0.089" and format_score(-0.044) == "-0.044"
    assert format_score(-0.00001, 4) == "0.0000" and format_score(0.12345, 4) == "+0.1235"


def test_randomisation_steps_and_verdict_in_words() -> None:
    """Steps are named with modules from 1; the verdict passes below a mean correlation of
    0.5 once everything is randomised, and fails above it, saying the number."""
    from vt_explorer.analysis import randomisation_verdict, step_label

    assert step_label("vt0.projector") == "module 1 projector"
    assert step_label("vt2.tokenizer") == "module 3 tokenizer"
    assert step_label("block14") == "block14" and step_label("classifier") == "classifier"
    assert randomisation_verdict([0.1, 0.3]).startswith(
        "passes"
    ) and "0.20" in randomisation_verdict([0.1, 0.3])
    assert randomisation_verdict([0.9, 0.7]).startswith(
        "fails"
    ) and "0.80" in randomisation_verdict([0.9, 0.7])


def test_least_similarity_finds_near_identical_maps() -> None:
    """Fig. 6's '(near) identical' note reads the maps themselves: identical rows give 1,
    two disjoint maps 0, and one differing map pulls the minimum down."""
    from vt_explorer.analysis import least_similarity

    rng = np.random.default_rng(0)
    base = rng.random((1, 4, 4))
    same = np.repeat(base, 5, 0) + 1e-6 * rng.random((5, 4, 4))
    assert least_similarity(same) > 0.999
    disjoint = np.zeros((2, 4, 4))
    disjoint[0, :2] = 1
    disjoint[1, 2:] = 1
    assert least_similarity(disjoint) == pytest.approx(0.0)
    mixed = np.concatenate([same, disjoint[:1]])
    assert least_similarity(mixed) < 0.9
    assert least_similarity(base) == 1.0
