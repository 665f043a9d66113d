"""Views true to the pixels the model saw: every map is drawn on the model's own input view
(the centre crop of an ImageNet model), the view is recorded in every export, and the whole
photo can be analysed letterboxed instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from vt_explorer.checkpoint import load_checkpoint, save_checkpoint
from vt_explorer.cli import main
from vt_explorer.explore import analyse
from vt_explorer.model import create_model
from vt_explorer.preprocess import Preprocess
from vt_explorer.viz.figures import photo_with_box

from .imagegen import image_bytes

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def three_thirds(w: int = 900, h: int = 300) -> Image.Image:
    """A wide image whose left, middle and right thirds are red, green and blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 3], arr[:, w // 3 : 2 * w // 3], arr[:, 2 * w // 3 :] = RED, GREEN, BLUE
    return Image.fromarray(arr)


def colours(img: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.unique(img.reshape(-1, 3), axis=0)}


@pytest.fixture(scope="module")
def crop_ck(tmp_path_factory) -> Path:
    """A small VT saved with the ImageNet convention (centre crop), seeded."""
    torch.manual_seed(0)
    stem = tmp_path_factory.mktemp("crop") / "crop-vt"
    model = create_model("vt_resnet20")
    save_checkpoint(model, stem, resize="center_crop")
    return stem


def test_preprocess_view_is_exactly_what_the_model_is_fed() -> None:
    img = three_thirds()
    pre = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "center_crop", "bilinear")
    assert pre.view_box(img) == (318.75, 18.75, 581.25, 281.25)  # 7/8 of the short side
    # the model's input is the view resized: the same tensor, built from the view alone
    view = pre.view(img)
    assert colours(np.asarray(view)) == {GREEN}
    stretched = Preprocess(32, pre.mean, pre.std, "stretch", "bilinear")
    torch.testing.assert_close(pre(img), stretched(view), atol=0.02, rtol=0)
    # letterbox: the whole photo, centred on a square of the mean colour
    box = Preprocess(32, pre.mean, pre.std, "letterbox", "bilinear")
    assert box.view_box(img) == (0.0, -300.0, 900.0, 600.0)
    lb = np.asarray(box.view(img))
    assert lb.shape == (900, 900, 3) and colours(lb) == {RED, GREEN, BLUE, (128, 128, 128)}
    assert box(img).shape == (3, 32, 32)
    # a letterbox canvas stays bounded whatever the photo's shape
    assert max(box.view(Image.new("RGB", (20000, 3))).size) <= 1024


def test_maps_are_drawn_on_the_centre_crop_and_the_view_is_recorded(crop_ck) -> None:
    ck = load_checkpoint(crop_ck)
    a = analyse(ck, three_thirds(), "wide")
    # every map is drawn on this picture: the crop the model saw, all green
    assert colours(a.image) == {GREEN} and colours(a.tile) == {GREEN}
    assert a.image.shape[0] == a.image.shape[1]
    assert colours(a.photo) >= {RED, GREEN, BLUE}  # the whole photo, for the framed thumbnail
    data = a.to_json()
    assert data["view"]["box"] == [318.75, 18.75, 581.25, 281.25]
    assert data["view"]["photo_size"] == [900, 300] and data["view"]["resize"] == "center_crop"
    assert data["model"]["weights_sha256"] == ck.card["weights_sha256"]
    assert data["model"]["preprocess"]["resize"] == "center_crop"
    assert a.view.area_share == pytest.approx(262.5**2 / (900 * 300))
    # the same photo letterboxed: the model sees all three thirds, and so do the views
    b = analyse(ck, three_thirds(), "wide", view="letterbox")
    assert {RED, GREEN, BLUE} <= colours(b.image) and b.view.area_share == 1.0
    assert b.to_json()["view"]["resize"] == "letterbox"
    assert not np.allclose(a.probs, b.probs)  # another input, another prediction
    with pytest.raises(ValueError, match="unknown view"):
        analyse(ck, three_thirds(), "wide", view="zoom")


def test_photo_with_box_frames_the_view_and_dims_the_rest() -> None:
    photo = np.asarray(three_thirds(90, 30))
    out = photo_with_box(photo, (31.875, 1.875, 58.125, 28.125), (90, 30))
    assert out.shape == photo.shape
    assert (out[15, 5] < photo[15, 5]).any() and (out[15, 80] < photo[15, 80]).any()  # dimmed
    assert (out[15, 45] == photo[15, 45]).all()  # the view itself untouched


def test_explain_records_the_view_and_cuts_masks_to_it(tmp_path, crop_ck, capsys) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    three_thirds().save(imgs / "wide.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    fg = np.zeros((300, 900), np.uint8)
    fg[:, 600:] = 255  # only the blue third is foreground: outside the centre crop
    Image.fromarray(fg).save(masks / "wide.png")
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            str(imgs),
            "-c",
            str(crop_ck),
            "--out",
            str(out),
            "--no-figures",
            "--masks",
            str(masks),
        ]
    )
    assert rc == 0
    s = json.loads((out / "wide" / "crop-vt" / "summary.json").read_text())
    assert s["view"]["box"] == [318.75, 18.75, 581.25, 281.25]
    shares = [t["foreground_share"] for m in s["modules"] for t in m["tokens"]]
    assert max(shares) == 0.0  # the crop holds none of the foreground
    arrays = np.load(out / "wide" / "crop-vt" / "arrays.npz")
    assert colours(arrays["image"]) == {GREEN}
    rc = main(
        [
            "explain",
            str(imgs),
            "-c",
            str(crop_ck),
            "--out",
            str(tmp_path / "lb"),
            "--no-figures",
            "--masks",
            str(masks),
            "--view",
            "letterbox",
        ]
    )
    s = json.loads((tmp_path / "lb" / "wide" / "crop-vt" / "summary.json").read_text())
    assert rc == 0 and s["view"]["resize"] == "letterbox"
    assert max(t["foreground_share"] for m in s["modules"] for t in m["tokens"]) > 0


def test_app_frames_the_crop_and_offers_the_whole_photo(crop_ck, monkeypatch) -> None:
    monkeypatch.setenv("VT_EXPLORER_CHECKPOINTS", str(crop_ck.parent))
    at = AppTest.from_file(APP, default_timeout=240).run()
    upload = [("wide.png", image_bytes(three_thirds()), "image/png")]
    at.file_uploader(key="upload").set_value(upload).run()
    assert not at.exception
    notes = " ".join(c.value for c in at.caption)
    assert "the model saw the framed 26% of the photo" in notes and "centre crop" in notes
    at.radio(key="view").set_value("letterbox").run()
    assert not at.exception
    notes = " ".join(c.value for c in at.caption)
    assert "padded to a square (letterboxed)" in notes and "framed" not in notes


def test_imagenet_vt_shows_what_it_is_and_lite0_beside_it(tmp_path, monkeypatch) -> None:
    """A shipped ImageNet student: its one-line summary (what it is, held-out top-1) in the
    sidebar and above its column, and Lite0's own top-5 as the reference it departs from."""
    shipped = Path(__file__).resolve().parent.parent / "checkpoints"
    name = "imagenet-lite0-vt-filter"
    for ext in (".safetensors", ".json"):
        (tmp_path / f"{name}{ext}").symlink_to(shipped / f"{name}{ext}")
    monkeypatch.setenv("VT_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=240).run()
    at.file_uploader(key="upload").set_value(
        [("wide.png", image_bytes(three_thirds()), "image/png")]
    ).run()
    assert not at.exception
    notes = " ".join(c.value for c in at.caption)
    assert "Lite0 itself (the network this VT was distilled from, its teacher): " in notes
    assert "Held-out imagenette-val (n=1000): top-1" in notes
    side = " ".join(c.value for c in at.sidebar.caption)
    assert "Held-out imagenette-val (n=1000): top-1" in side
