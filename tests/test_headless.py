"""`vt-explorer explain` and `vt-explorer tokens`: files, numbers, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vt_explorer.checkpoint import load_checkpoint, save_checkpoint
from vt_explorer.cli import main
from vt_explorer.explore import analyse
from vt_explorer.headless import read_token_statistics
from vt_explorer.model import create_model

from .imagegen import COLORS, make_dataset, make_image

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def ck3(tmp_path):
    model = create_model("vt_resnet20", num_classes=3, classes=tuple(sorted(COLORS)))
    save_checkpoint(model, tmp_path / "ck3")
    return tmp_path / "ck3"


def test_explain_writes_figures_arrays_and_a_summary_equal_to_the_app(tmp_path, ck3, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    make_image((200, 30, 30), 64).save(imgs / "red one.png")
    make_image((30, 30, 200), 40, seed=3).save(imgs / "blue.jpg")
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    masks = tmp_path / "masks"
    masks.mkdir()
    m = np.zeros((64, 64), np.uint8)
    m[:32] = 255
    from PIL import Image

    Image.fromarray(m).save(masks / "red_one.png")
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(imgs),
            "-c",
            str(ck3),
            "--out",
            str(out),
            "--svg",
            "--masks",
            str(masks),
            "--random-orders",
            "2",
        ]
    )
    assert code == 1  # the broken file is reported, the others are written
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "red_one [ck3]" in captured.out
    top = json.loads((out / "summary.json").read_text())
    assert len(top["images"]) == 2 and len(top["errors"]) == 1
    folder = out / "red_one" / "ck3"
    s = json.loads((folder / "summary.json").read_text())
    for name in (
        "report",
        "predictions",
        "deletion",
        "m1_tokens",
        "m1_groups",
        "m1_projector",
        "m1_attention_l1",
        "m1_propagated",
        "m3_tokens",
    ):
        assert (folder / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
        assert b"<svg" in (folder / f"{name}.svg").read_bytes()[:500], name
    assert not (folder / "m3_projector.png").exists()  # the last module has no projector
    tokens = s["modules"][0]["tokens"]
    assert len(tokens) == 16 and {"share", "mass", "entropy", "foreground_share"} <= set(tokens[0])
    assert "contribution" in s["modules"][2]["tokens"][0]
    assert "deletion_score" in s["faithfulness"]
    assert (
        "foreground_share"
        not in json.loads((out / "blue" / "ck3" / "summary.json").read_text())["modules"][0][
            "tokens"
        ][0]
    )
    # the arrays equal what the app's analysis computes for the same image
    arrays = np.load(folder / "arrays.npz")
    ref = analyse(load_checkpoint(ck3), Image.open(imgs / "red one.png"))
    # (explain runs images in batches, the app one at a time: kernels may round differently,
    # so maps agree to float precision and argmax-based numbers up to a near-tied pixel)
    np.testing.assert_allclose(arrays["probabilities"], ref.probs, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(arrays["m2_maps"], ref.modules[1].maps, rtol=1e-3, atol=1e-5)
    pixels = ref.modules[0].maps[0].size
    shares = np.array([t["share"] for t in tokens])
    assert np.abs(shares - ref.modules[0].stats.share).sum() <= 4 / pixels + 1e-6
    top2 = np.sort(ref.probs)[-2:]
    if top2[1] - top2[0] > 1e-4:  # not a near-tie between the two best classes
        assert s["predictions"][0]["class"] == ref.top[0]


def test_explain_fast_path_and_bad_arguments(tmp_path, ck3, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        make_image((20, 200, 20), 32, seed=i).save(imgs / f"g{i}.png")
    out = tmp_path / "fast"
    assert main(["explain", str(imgs), "-c", str(ck3), "--out", str(out), "--no-figures"]) == 0
    files = sorted(p.name for p in (out / "g0" / "ck3").iterdir())
    assert files == ["arrays.npz", "summary.json"]
    assert main(["explain", str(tmp_path / "nothing"), "-c", str(ck3), "--out", str(out)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["explain", str(tmp_path / "empty"), "-c", str(ck3), "--out", str(out)]) == 2
    assert "no image files" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["explain", str(imgs), "-c", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_explain_into_a_used_folder_needs_overwrite_and_leaves_no_stale_file(tmp_path, ck3, capsys):
    """An --out that holds files is refused in one line; --overwrite replaces an earlier
    explain's output (no file of the earlier run is left) and says so; a folder that is not
    an explain output is never emptied; --random-orders is bounded."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    make_image((20, 200, 20), 32, seed=0).save(imgs / "a.png")
    out = tmp_path / "out"
    argv = ["explain", str(imgs), "-c", str(ck3), "--out", str(out), "--no-figures"]
    assert main(argv) == 0
    (out / "a" / "stale.txt").write_text("from before")
    capsys.readouterr()
    assert main(argv) == 2
    assert "already holds files; add --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert "replacing" in capsys.readouterr().err
    assert not (out / "a" / "stale.txt").exists() and (out / "summary.json").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    mine_argv = ["explain", str(imgs), "-c", str(ck3), "--out", str(mine), "--overwrite"]
    assert main(mine_argv) == 2
    assert "not an earlier explain output" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "keep me"
    with pytest.raises(SystemExit):
        main([*argv, "--overwrite", "--random-orders", "1000000000"])


def test_tokens_statistics_add_up_and_the_app_file_reads_back(tmp_path, ck3, capsys):
    data = make_dataset(tmp_path / "data", per_class=6)
    out = tmp_path / "tok"
    assert main(["tokens", str(ck3), str(data), "--out", str(out), "--deletion-images", "2"]) == 0
    assert "module 2 (recurrent)" in capsys.readouterr().out
    stats = read_token_statistics(out / "tokens.json")
    assert (out / "tokens_m1.png").read_bytes()[:4] == b"\x89PNG"
    share = np.asarray(stats["mean_share"])  # (modules, classes, tokens)
    assert share.shape == (3, 3, 16)
    np.testing.assert_allclose(share.sum(-1), 1.0, atol=1e-4)  # shares sum to 1 (6 digits)
    dom = np.asarray(stats["dominant"])
    assert (dom.sum(-1) == 6).all()  # one dominant token per image
    fires = np.asarray(stats["fires_for"])  # (modules, classes, tokens)
    # a token that wins pixels somewhere has its share spread over classes (sums to 1); one
    # that never wins a pixel fires for no class (0 everywhere) and is listed in never_fires
    total = share.sum(1)  # (modules, tokens)
    for k in range(3):
        never = stats["never_fires"][k]
        expected = np.ones(16)
        expected[never] = 0.0
        np.testing.assert_allclose(fires[k].sum(0), expected, atol=1e-4)
        assert (total[k, never] == 0).all()
        assert set(np.flatnonzero(total[k] > 1e-5)).isdisjoint(never)
    np.testing.assert_allclose(fires * total[:, None], share, atol=1e-5)
    eff, sim = np.asarray(stats["effective_groups"]), np.asarray(stats["map_similarity"])
    assert eff.shape == sim.shape == (3,) and ((eff >= 1) & (eff <= 16)).all()
    assert ((sim >= 0) & (sim <= 1 + 1e-9)).all() and len(stats["collapsed_share"]) == 3
    ent = np.asarray(stats["entropy_ratio"])
    assert ((ent > 0) & (ent <= 1 + 1e-9)).all()
    assert stats["deletion_images"] == 2 and stats["n"] == 18
    # a single-image check of the aggregation: red images' mean share equals the mean of
    # each red image's semantic-group share from the app's analysis
    ck = load_checkpoint(ck3)
    from vt_explorer.data import load_image_folder

    ds = load_image_folder(data, 32, progress=False)
    red = [i for i in range(len(ds)) if ds.classes[ds.labels[i]] == "red"]
    from PIL import Image

    shares = [
        analyse(ck, Image.fromarray(ds.images[i].permute(1, 2, 0).numpy())).modules[1].stats.share
        for i in red
    ]
    np.testing.assert_allclose(share[1, 2], np.mean(shares, 0), atol=1e-5)


def test_tokens_rejects_foreign_files_and_mismatched_classes(tmp_path, ck3, capsys):
    with pytest.raises(ValueError, match="not a token statistics file"):
        bad = tmp_path / "x.json"
        bad.write_text('{"a": 1}')
        read_token_statistics(bad)
    other = make_dataset(tmp_path / "d", per_class=2)
    (other / "purple").mkdir()
    make_image((120, 0, 120)).save(other / "purple" / "a.png")
    assert main(["tokens", str(ck3), str(other), "--out", str(tmp_path / "o")]) == 2
    assert "class folders that are not the model's class names: purple" in capsys.readouterr().err
    # --unlabelled: the same folders are groups of images, not classes; the statistics are per
    # folder (purple included) and there is no accuracy
    out = tmp_path / "groups"
    assert main(["tokens", str(ck3), str(other), "--out", str(out), "--unlabelled"]) == 0
    assert "7 images, folders unlabelled" in capsys.readouterr().out
    stats = read_token_statistics(out / "tokens.json")
    assert stats["accuracy"] is None and stats["classes"] == ["blue", "green", "purple", "red"]
    assert np.asarray(stats["mean_share"]).shape == (3, 4, 16)
    assert np.asarray(stats["dominant"])[0].sum(-1).tolist() == [2, 2, 1, 2]


def test_explain_refuses_a_missing_masks_folder_and_an_unwritable_out(tmp_path, ck3, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    make_image((20, 200, 20), 32).save(imgs / "g.png")
    args = ["explain", str(imgs), "-c", str(ck3), "--no-figures"]
    assert main([*args, "--out", str(tmp_path / "o"), "--masks", str(tmp_path / "none")]) == 2
    assert "--masks" in capsys.readouterr().err and not (tmp_path / "o").exists()
    (tmp_path / "afile").write_text("x")
    assert main([*args, "--out", str(tmp_path / "afile" / "sub")]) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_explain_target_explains_any_class(tmp_path, ck3, capsys):
    """explain --target CLASS: contributions, the deletion curve and single-token drops
    follow that class, not the predicted one (the curve starts at the model's probability
    of it, the contributions equal a plain recomputation for it); a class the model lacks
    is one line with the closest names."""
    from vt_explorer.analysis import token_contributions
    from vt_explorer.checkpoint import load_checkpoint

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    make_image((200, 30, 30), 48).save(imgs / "a.png")
    ck = load_checkpoint(ck3)
    classes = list(ck.classes)
    base = ["explain", str(imgs), "-c", str(ck3), "--no-figures"]
    assert main([*base, "--out", str(tmp_path / "p")]) == 0
    first = json.loads((tmp_path / "p" / "a" / "ck3" / "summary.json").read_text())
    pred = first["explained"]["index"]
    assert first["explained"]["predicted"] and first["explained"]["class"] == classes[pred]
    other = (pred + 1) % len(classes)
    assert main([*base, "--out", str(tmp_path / "t"), "--target", classes[other]]) == 0
    s = json.loads((tmp_path / "t" / "a" / "ck3" / "summary.json").read_text())
    assert s["explained"] == {
        "class": classes[other],
        "index": other,
        "probability": next(
            p["probability"] for p in s["predictions"] if p["class"] == classes[other]
        ),
        "predicted": False,
    }
    assert s["faithfulness"]["deletion_curve"][0] == pytest.approx(
        s["explained"]["probability"], abs=1e-4
    )
    from vt_explorer.explore import analyse

    img = Image.open(imgs / "a.png").convert("RGB")
    with torch.no_grad():
        trace = ck.model.trace(ck.preprocess(img)[None])
    want = token_contributions(ck.model, trace.modules[-1].tokens[0], other)
    got = [t["contribution"] for t in s["modules"][-1]["tokens"]]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert analyse(ck, img, target=other).explained == other
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "x"), "--target", classes[other][:-1]]) == 2
    assert "did you mean" in capsys.readouterr().err
