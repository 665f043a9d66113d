"""The app as a user drives it, through Streamlit's AppTest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from vt_explorer.checkpoint import save_checkpoint
from vt_explorer.model import create_model
from vt_explorer.model.config import CIFAR10_CLASSES

from .imagegen import image_bytes, make_image


def _animated_gif() -> bytes:
    frames = [make_image((200, 0, 0), 32), make_image((0, 0, 200), 32, seed=1)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    return image_bytes(make_image((90, 90, 9), 48), "JPEG", exif=exif)


APP = str(Path(__file__).resolve().parent.parent / "app.py")
PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "photos"


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cks")
    torch.manual_seed(0)
    classes = list(CIFAR10_CLASSES)
    card = {
        "metrics": {
            "accuracy": 0.5,
            "n": 10,
            "per_class": dict.fromkeys(classes, 0.5),
            "confusion": [[1] * 10 for _ in range(10)],
            "classes": classes,
        },
        "dataset": {"val": {"source": "generated"}},
        "history": [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "val_acc": 0.3}],
    }
    save_checkpoint(create_model("vt_resnet20"), d / "cifar10-vt-recurrent", card)
    save_checkpoint(create_model("vt_resnet20_filter"), d / "cifar10-vt-filter")
    return d


@pytest.fixture
def app(ckdir, monkeypatch) -> AppTest:
    monkeypatch.setenv("VT_EXPLORER_CHECKPOINTS", str(ckdir))
    return AppTest.from_file(APP, default_timeout=240)


def with_gallery(at: AppTest) -> AppTest:
    """Turn the example gallery on (it is drawn on request only)."""
    return at.toggle(key="examples").set_value(True).run()


def predictions(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if " predicts " in m.value]


def test_example_gallery_compares_two_models(app) -> None:
    at = app.run()
    assert not at.exception and not predictions(at)  # nothing computed before a request
    assert any("turn on the example gallery" in i.value for i in at.info)
    at = with_gallery(at)
    assert not at.exception
    preds = predictions(at)
    assert any("cifar10-vt-recurrent" in p for p in preds)
    assert any("cifar10-vt-filter" in p for p in preds)
    assert at.selectbox(key="model_a").value.endswith("cifar10-vt-recurrent")
    assert any("The two models" in c.value for c in at.caption)
    assert not [m for m in at.metric if m.label == "Top-1"]  # cards render on request only
    at.toggle(key="cards").set_value(True).run()
    assert [m.value for m in at.metric if m.label == "Top-1"] == ["50.00%"]


@pytest.mark.slow
def test_upload_photos_and_bad_files(app) -> None:
    at = app.run()
    at.checkbox(key="compare").uncheck()
    photo = sorted(PHOTOS.glob("*.JPEG"))[0] if PHOTOS.is_dir() else None
    files = [("drawn.png", image_bytes(make_image((20, 200, 20), 300)), "image/png")]
    if photo is not None:
        files.append((photo.name, photo.read_bytes(), "image/jpeg"))
    jpeg = image_bytes(make_image((1, 2, 3), 64), "JPEG")
    files += [
        ("notes.png", b"this is text", "image/png"),
        ("truncated.jpg", jpeg[:200], "image/jpeg"),
        ("empty.png", b"", "image/png"),
        ("rgba.png", image_bytes(make_image((9, 9, 9), 40).convert("RGBA")), "image/png"),
        ("gray.png", image_bytes(make_image((9, 9, 9), 40).convert("L")), "image/png"),
        ("dot.png", image_bytes(make_image((9, 9, 9), 1)), "image/png"),
        ("cmyk.jpg", image_bytes(make_image((9, 90, 9), 48).convert("CMYK"), "JPEG"), "image/jpeg"),
        (
            "deep.png",
            image_bytes(Image.fromarray(np.full((40, 40), 40000, np.uint16))),
            "image/png",
        ),
        ("palette.png", image_bytes(make_image((9, 9, 90), 40).convert("P")), "image/png"),
        ("anim.gif", _animated_gif(), "image/gif"),
        ("rotated.jpg", _exif_rotated(), "image/jpeg"),
        ("bomb.png", image_bytes(Image.new("1", (9000, 9000)), "PNG"), "image/png"),
    ]
    at.file_uploader(key="upload").set_value(files).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    for bad in (
        "notes.png: not an image",
        "truncated.jpg",
        "empty.png: empty file",
        "bomb.png: image too large",
    ):
        assert bad in errors
    # the readable images (10 with a photo): named errors first, then four images per page
    n = len(files) - 4
    assert at.radio(key="page").options == [f"{i + 1}-{min(i + 4, n)}" for i in range(0, n, 4)]
    shown, n_pred = [], 0
    for first in range(0, n, 4):
        at.radio(key="page").set_value(first).run()
        assert not at.exception
        page = [s.value for s in at.subheader]
        assert len(page) == min(4, n - first)
        shown += page
        n_pred += len(predictions(at))
        assert len(at.error) >= 4  # the bad files stay named on every page
    ok = {"drawn.png", "rgba.png", "gray.png", "dot.png", "cmyk.jpg", "deep.png", "palette.png"}
    assert ok | {"anim.gif", "rotated.jpg"} <= set(shown) and len(shown) == len(set(shown))
    assert n_pred == n
    # a view change does not rerun or break anything
    at.selectbox(key="cmap").select("viridis").run()
    at.slider(key="alpha").set_value(0.3).run()
    assert not at.exception


def ck_uploader(at: AppTest):
    """The sidebar's own-checkpoint uploader of the latest run (its key changes after a
    refused pair)."""
    return next(u for u in at.sidebar.file_uploader if u.key.startswith("ck_upload"))


def _pair(stem: Path) -> list[tuple[str, bytes, str]]:
    return [
        (
            stem.name + ".safetensors",
            stem.with_suffix(".safetensors").read_bytes(),
            "application/octet-stream",
        ),
        (stem.name + ".json", stem.with_suffix(".json").read_bytes(), "application/json"),
    ]


def test_no_server_path_from_the_browser_only_the_operators_catalog(app, ckdir) -> None:
    """The sidebar offers the operator's checkpoints by name: no text box for a path, no
    server folder in any option or message."""
    at = with_gallery(app.run())
    assert not at.exception
    assert len(at.text_input) == 0
    assert set(at.selectbox(key="model_a").options) == {"cifar10-vt-recurrent", "cifar10-vt-filter"}
    page = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.error])
    assert str(ckdir) not in page


def test_own_checkpoint_upload_is_selected_and_bad_ones_keep_the_previous_models(
    app, ckdir, tmp_path
) -> None:
    at = with_gallery(app.run())
    before = predictions(at)
    # a foreign card: one line naming the uploaded file, never a traceback or a server path
    (tmp_path / "fake.json").write_text("{not json")
    (tmp_path / "fake.safetensors").write_bytes(b"\0" * 64)
    (tmp_path / "fake.json").rename(tmp_path / "other.json")  # two names, as a visitor may
    files = [("fake.safetensors", (tmp_path / "fake.safetensors").read_bytes(), "x/y")]
    files.append(("other.json", (tmp_path / "other.json").read_bytes(), "application/json"))
    at.file_uploader(key="ck_upload").set_value(files).run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert (
        len(errors) == 1
        and "Cannot use that checkpoint: other.json: not a vt_explorer" in errors[0]
    )
    # the refused pair is gone: the uploader starts empty for the next attempt
    uploader = [u for u in at.sidebar.file_uploader if u.key.startswith("ck_upload")]
    assert len(uploader) == 1 and uploader[0].key != "ck_upload" and not uploader[0].value
    assert (
        "vt-upload-" not in errors[0] and str(tmp_path) not in errors[0] and "\n" not in errors[0]
    )
    assert predictions(at) == before
    # a valid one of the visitor's: selected at once and labelled as theirs
    save_checkpoint(create_model("vt_resnet20_filter"), tmp_path / "mine")
    ck_uploader(at).set_value(_pair(tmp_path / "mine")).run()
    assert not at.exception and not at.sidebar.error
    assert at.selectbox(key="model_a").value.startswith("upload:")
    assert any("**yours: mine** predicts" in p for p in predictions(at))
    # the label lives in this visitor's session, not in a dictionary other tabs share
    own_key = at.selectbox(key="model_a").value
    assert at.session_state["model_labels"][own_key] == "yours: mine"
    import vt_explorer.ui.state as state_mod

    assert not hasattr(state_mod, "LABELS")
    # the tab holds the loaded model, not the uploaded bytes: the uploader is empty again
    assert not ck_uploader(at).value
    assert any("Loaded: yours: mine" in c.value for c in at.sidebar.caption)
    # one file only: asked for both; the loaded checkpoint stays
    ck_uploader(at).set_value(_pair(tmp_path / "mine")[:1]).run()
    assert any("exactly one" in e.value for e in at.sidebar.error)
    assert at.selectbox(key="model_a").value == own_key
    # forgetting it returns to the operator's models
    at.sidebar.button(key="ck_forget").click().run()
    assert not at.exception and "own_checkpoint" not in at.session_state
    assert not at.selectbox(key="model_a").value.startswith("upload:")


def test_thin_image_is_named_and_the_rest_is_shown(app) -> None:
    at = app.run()
    at.checkbox(key="compare").uncheck()
    files = [
        ("strip.png", image_bytes(Image.new("RGB", (1000, 2), (200, 10, 10))), "image/png"),
        ("ok.png", image_bytes(make_image((20, 200, 20), 64)), "image/png"),
    ]
    at.file_uploader(key="upload").set_value(files).run()
    assert not at.exception
    assert any("strip.png: 1000x2 pixels is too thin" in e.value for e in at.error)
    assert [s.value for s in at.subheader] == ["ok.png"] and len(predictions(at)) == 1


def test_faithfulness_panel_and_randomisation_check(app) -> None:
    at = with_gallery(app.run())
    at.checkbox(key="compare").uncheck().run()
    assert "deletion score" not in [m.label for m in at.metric]  # only the open tab is drawn
    at.session_state["view-0"] = "Checks"
    at.run()
    labels = [m.label for m in at.metric]
    assert "deletion score" in labels
    verdicts = ("collapsed", "partly collapsed", "diverse")
    assert any(lab.startswith("module 1: ") and lab.endswith(verdicts) for lab in labels)
    assert any(
        c.value.startswith(("tokens matter", "tokens redundant", "the map's ranking"))
        for c in at.caption
    )
    first = next(c for c in at.checkbox if c.key and c.key.startswith("rand-"))
    first.check().run()
    assert not at.exception
    assert any("rank correlation" in c.value for c in at.caption)
    said = [m.value for m in [*at.success, *at.warning] if "Randomisation check" in m.value]
    assert len(said) == 1 and ("passes:" in said[0] or "fails:" in said[0])
    rows = list(at.dataframe[-1].value.index)  # modules numbered from 1, as on the page
    assert any(r.startswith("up to module 1 ") for r in rows)
    assert not any("vt0" in r for r in rows)


def _tokens_json(k: int = 10, L: int = 16) -> dict:
    share = np.full((3, k, L), 1 / L)
    return {
        "format": "vt_explorer.tokens/1",
        "checkpoint": "vt_resnet20",
        "data": "/data/test",
        "n": 20,
        "accuracy": 0.25,
        "classes": list(CIFAR10_CLASSES),
        "per_class_n": [2] * k,
        "module_kinds": ["filter", "recurrent", "recurrent"],
        "mean_share": share.tolist(),
        "mean_mass": share.tolist(),
        "dominant": np.full((3, k, L), 0).tolist(),
        "entropy_ratio_by_class": np.full((3, k, L), 0.9).tolist(),
        "entropy_ratio": np.full((3, L), 0.9).tolist(),
        "fires_for": np.full((3, k, L), 0.1).tolist(),
    }


def test_dataset_statistics_panel_reads_the_file_beside_the_checkpoint(app, ckdir) -> None:
    side = ckdir / "cifar10-vt-recurrent.tokens.json"
    side.write_text(json.dumps(_tokens_json()))
    try:
        at = app.run()
        at.toggle(key="stats").set_value(True).run()
        assert not at.exception
        assert any("20 images of test (top-1 25.00%)" in c.value for c in at.caption)
        side.write_text("{broken")
        at = AppTest.from_file(APP, default_timeout=240).run()
        at.toggle(key="stats").set_value(True).run()
        assert not at.exception
        assert any("Cannot use that file" in e.value for e in at.error)
    finally:
        side.unlink()


def test_one_module_picker_for_both_models_defaults_to_the_last(app) -> None:
    """The comparison opens on each model's last module (recurrent in the recurrent model:
    filter vs recurrent), and one sidebar choice moves both."""
    at = with_gallery(app.run())
    shown = [c.value for c in at.caption if c.value.startswith("Showing ")]
    assert "Showing module 3 (recurrent) of 3 (sidebar: VT module)" in shown
    assert "Showing module 3 (filter) of 3 (sidebar: VT module)" in shown
    at.selectbox(key="module").select("1").run()
    shown = [c.value for c in at.caption if c.value.startswith("Showing ")]
    assert shown and all(c.startswith("Showing module 1 (filter)") for c in shown)


def test_several_images_get_an_overview_table_first(app) -> None:
    """Two uploads: a table with each image's thumbnail, both models' top-1 and confidence,
    agreement, the token verdict and the deletion score, before the images."""
    at = app.run()
    files = [
        (f"c{i}.png", image_bytes(make_image(c, 48, seed=i)), "image/png")
        for i, c in enumerate([(200, 20, 20), (20, 20, 200)])
    ]
    at.file_uploader(key="upload").set_value(files).run()
    assert not at.exception
    df = at.dataframe(key="overview").value
    assert list(df["image"]) == ["c0.png", "c1.png"]
    for col in ("A top-1", "B %", "agree", "A tokens", "A deletion"):
        assert col in df.columns
    assert any(
        "**A** = cifar10-vt-recurrent · **B** = cifar10-vt-filter" in m.value for m in at.markdown
    )
    assert df["thumbnail"].str.startswith("data:image/png;base64,").all()
    verdicts = {"collapsed", "partly collapsed", "diverse"}
    assert set(df["B tokens"]) <= verdicts
    assert ((df["B %"] > 0) & (df["B %"] <= 100)).all()


def test_every_view_opens_with_a_picked_pixel_and_token(app) -> None:
    """Each tab draws both models side by side; a picked pixel shows every token's weight
    at that cell (tokenizer and projector) and a picked token is framed and listed."""
    at = app.run()
    one = [("one.png", image_bytes(make_image((200, 20, 20), 48)), "image/png")]
    at.file_uploader(key="upload").set_value(one).run()
    at.selectbox(key="token-0").set_value(3).run()
    at.session_state["pixel-0"] = (0.4, 0.7)
    from vt_explorer.ui.image import VIEWS

    for tab in VIEWS:  # every tab the page offers
        at.session_state["view-0"] = tab
        at.run()
        assert not at.exception, tab
        titles = [m.value for m in at.markdown if ", module 3 (" in m.value]
        assert len(titles) == 2, tab  # one column per model, under its name and module
        if tab == "Attention":  # the picked token's row and column outlined in both
            specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
            heat = [f for f in specs if any(t["type"] == "heatmap" for t in f["data"])]
            assert len(heat) == 2
            assert all(len(f["layout"]["shapes"]) == 2 for f in heat)
    at.session_state["view-0"] = "Pixel"
    at.run()
    cells = [c.value for c in at.caption if c.value.startswith("Cell row ")]
    # 16x16 maps of a 32x32 input: 0.4 down, 0.7 across is row 7, column 12 (1-based)
    assert len(cells) == 2 and all(c.startswith("Cell row 7, column 12 of 16x16") for c in cells)
    assert any("ringed on every map" in c.value for c in at.caption)


def test_example_gallery_adds_the_operators_photos(app, tmp_path, monkeypatch) -> None:
    """$VT_EXPLORER_EXAMPLES (scripts/app.sh points it at the shared photos): its images join
    the gallery shown while nothing is uploaded; a file in it that is not an image is named."""
    folder = tmp_path / "photos"
    folder.mkdir()
    make_image((200, 120, 40), 80, seed=1).save(folder / "a_photo.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    monkeypatch.setenv("VT_EXPLORER_EXAMPLES", str(folder))
    at = with_gallery(app.run())
    assert not at.exception
    df = at.dataframe(key="overview").value
    assert "a_photo.jpg" in list(df["image"])
    assert any("broken.png" in e.value for e in at.error)


def test_default_pair_prefers_the_imagenet_students_then_the_cifar_pairs() -> None:
    """The sidebar's default comparison: the diverse stride-16 head students where shipped
    (not the head students without the hinge, whose maps are near uniform), else the
    paper-placement ImageNet students (not their -diverse variant), else the CIFAR-10
    VT-Lite0 pair, else the CIFAR-scale pair, else the first model."""
    from vt_explorer.ui.sidebar import DEFAULT_PAIR, default_model

    head = [
        "/c/imagenet-lite0-vt-filter",
        "/c/imagenet-lite0-pool-vt-filter",
        "/c/imagenet-lite0-vt-recurrent",
        "/c/imagenet-lite0-pool-vt-recurrent",
        "/c/imagenet-lite0-pool-vt-recurrent-diverse",
        "/c/imagenet-lite0-pool-vt-filter-diverse",
    ]
    pick = [default_model(head, names) for names in DEFAULT_PAIR]
    assert pick == [
        "/c/imagenet-lite0-pool-vt-recurrent-diverse",
        "/c/imagenet-lite0-pool-vt-filter-diverse",
    ]
    paper = [h for h in head if "pool" not in h]
    pick = [default_model(paper, names) for names in DEFAULT_PAIR]
    assert pick == ["/c/imagenet-lite0-vt-recurrent", "/c/imagenet-lite0-vt-filter"]

    shipped = [
        "/c/cifar10-vt-filter",
        "/c/cifar10-vt-recurrent",
        "/c/cifar10-lite0-vt-filter",
        "/c/cifar10-lite0-vt-recurrent",
        "/c/imagenet-lite0-vt-filter",
        "/c/imagenet-lite0-vt-recurrent-diverse",
        "/c/imagenet-lite0-vt-recurrent",
    ]
    pick = [default_model(shipped, names) for names in DEFAULT_PAIR]
    assert pick == ["/c/imagenet-lite0-vt-recurrent", "/c/imagenet-lite0-vt-filter"]
    cifar = [c for c in shipped if "imagenet" not in c]
    pick = [default_model(cifar, names) for names in DEFAULT_PAIR]
    assert pick == ["/c/cifar10-lite0-vt-recurrent", "/c/cifar10-lite0-vt-filter"]
    small = [c for c in cifar if "lite0" not in c]
    pick = [default_model(small, names) for names in DEFAULT_PAIR]
    assert pick == ["/c/cifar10-vt-recurrent", "/c/cifar10-vt-filter"]
    assert default_model(["/c/mine"], DEFAULT_PAIR[0]) == "/c/mine"


def test_card_free_text_is_shown_as_text_not_markdown(tmp_path, monkeypatch) -> None:
    """A hand-edited card whose hardware is a Markdown image: the card panel shows the
    characters (escaped), so the browser fetches nothing, and the page keeps working."""
    import json

    torch.manual_seed(0)
    stem = tmp_path / "cifar10-vt-recurrent"
    save_checkpoint(create_model("vt_resnet20"), stem, {"metrics": {"accuracy": 0.5, "n": 4}})
    card = json.loads(stem.with_suffix(".json").read_text())
    card["hardware"] = "![x](https://evil.example/p.png) **big** GPU"
    stem.with_suffix(".json").write_text(json.dumps(card))
    monkeypatch.setenv("VT_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=240).run()
    at.toggle(key="cards").set_value(True).run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert r"\!\[x\]\(https\://evil\.example/p\.png\) \*\*big\*\* GPU" in shown
    assert "![x](" not in shown


def test_a_replaced_weights_file_never_shows_the_old_models_results(tmp_path, monkeypatch) -> None:
    """Results are cached by the weights' hash, not the path: after the server's weights
    file is replaced by a model that answers otherwise, the page shows the new answer."""
    stem = tmp_path / "cifar10-vt-recurrent"

    def save_favouring(cls: int) -> None:  # a model whose answer cannot flip: cls at ~100%
        torch.manual_seed(0)
        model = create_model("vt_resnet20")
        with torch.no_grad():
            model.fc.bias.zero_()
            model.fc.bias[cls] = 50.0
        save_checkpoint(model, stem)

    save_favouring(3)
    monkeypatch.setenv("VT_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = with_gallery(AppTest.from_file(APP, default_timeout=240).run())
    first = [p for p in predictions(at) if "cifar10-vt-recurrent" in p]
    assert first and all(f"**{CIFAR10_CLASSES[3]}** (100.0%)" in p for p in first)
    save_favouring(5)
    at.run()
    assert not at.exception
    second = [p for p in predictions(at) if "cifar10-vt-recurrent" in p]
    assert second and all(f"**{CIFAR10_CLASSES[5]}** (100.0%)" in p for p in second)


def test_the_class_picker_explains_any_class(app) -> None:
    """Each model's 'Explain the class' picker: the predicted class by default, the others
    by probability; picking another makes the Checks tab follow it (its caption names it)
    and the Table's Δ logit explains it."""
    at = with_gallery(app.run())
    at.checkbox(key="compare").uncheck().run()
    picker = next(s for s in at.selectbox if s.key and s.key.startswith("target-"))
    assert picker.value is None and picker.options[0].startswith("the predicted class: ")
    second = picker.options[1].rsplit(" (", 1)[0]  # the next most probable class's name
    at.session_state["view-0"] = "Checks"
    at.run()
    assert any("the predicted class" in c.value for c in at.caption)
    picker = next(s for s in at.selectbox if s.key and s.key.startswith("target-"))
    picker.select_index(1).run()
    assert not at.exception
    said = [c.value for c in at.caption if "watch the probability of" in c.value]
    assert said and all(f"the class picked above, {second}," in c for c in said)
    at.session_state["view-0"] = "Table"
    at.run()
    assert any(f"how much the logit of {second} changes" in c.value for c in at.caption)


def test_dataset_statistics_name_classes_not_wnids() -> None:
    """tokens.json of an ImageNet model lists wnid folders; the panel shows class names
    from the checkpoint's card, and leaves other folder names alone."""
    from vt_explorer.ui.panels import class_names

    card = {"wnids": ["n01440764", "n02123045"], "classes": ["tench", "tabby"]}
    assert class_names(["n02123045", "n01440764", "Faces"], card) == ["tabby", "tench", "Faces"]
    assert class_names(["cat", "dog"], {"classes": ["cat", "dog"]}) == ["cat", "dog"]


def test_the_overview_knows_true_classes_from_names_or_a_csv(app) -> None:
    """Issue 28, section 2: a class name in a file name (or a labels CSV) gives the true
    class; the table says whether each model's top-1 is right, and the line above it each
    model's accuracy over the batch, counted from the table itself."""
    at = app.run()
    files = [
        ("my_cat.png", image_bytes(make_image((200, 20, 20), 48, seed=1)), "image/png"),
        ("x.png", image_bytes(make_image((20, 200, 20), 48, seed=2)), "image/png"),
        ("y.png", image_bytes(make_image((20, 20, 200), 48, seed=3)), "image/png"),
    ]
    at.file_uploader(key="upload").set_value(files).run()
    df = at.dataframe(key="overview").value
    assert list(df["truth"].fillna("")) == ["cat", "", ""]
    assert df["A right"].iloc[0] == (df["A top-1"].iloc[0] == "cat")
    csv = b"file,class\nx.png,dog\ny.png,nosuchclass\n"
    at.file_uploader(key="labels_csv").set_value([("labels.csv", csv, "text/csv")]).run()
    assert not at.exception
    df = at.dataframe(key="overview").value
    assert list(df["truth"].fillna("")) == ["cat", "dog", ""]
    right = int(df["A right"].dropna().sum())
    assert any(f"**A** {right} of 2 (" in m.value for m in at.markdown)


def test_labels_and_true_classes_in_plain_functions() -> None:
    from vt_explorer.explore import parse_labels_csv, true_class

    classes = list(CIFAR10_CLASSES)
    assert true_class("my_cat_photo.jpg", classes) == classes.index("cat")
    assert true_class("catalog.jpg", classes) is None  # whole words only
    assert true_class("n02123045_tabby.JPEG", ["tench", "tabby"], ["n01440764", "n02123045"]) == 1
    assert true_class("x.png", classes, labels={"x.png": "Dog"}) == classes.index("dog")
    assert parse_labels_csv(b"file,class\na.png,cat\n\nb.jpg, dog \n") == {
        "a.png": "cat",
        "b.jpg": "dog",
    }
    with pytest.raises(ValueError, match="line 2: expected file,class"):
        parse_labels_csv(b"a.png,cat\nlonely\n")


def test_a_fresh_install_gallery_has_real_photos(app, monkeypatch) -> None:
    """Without an operator's example folder the gallery shows scikit-image's bundled real
    photos (CC0 / public domain) before the drawn ones."""
    monkeypatch.delenv("VT_EXPLORER_EXAMPLES", raising=False)
    at = with_gallery(app.run())
    assert not at.exception
    names = list(at.dataframe(key="overview").value["image"])
    from vt_explorer.ui.panels import BUNDLED_PHOTOS

    assert names[:3] == [shown for _, shown in BUNDLED_PHOTOS]
    assert any("(drawn)" in n for n in names[3:])


def test_a_big_batch_is_analysed_a_table_page_at_a_time(app) -> None:
    """Issue 30, item 10: 22 images give a table of the first 20 (only those analysed),
    and the second table page analyses and lists the other two."""
    at = app.run()
    at.checkbox(key="compare").uncheck()
    files = [
        (
            f"i{k:02d}.png",
            image_bytes(make_image((10 * k, 200 - 5 * k, 60), 24, seed=k)),
            "image/png",
        )
        for k in range(22)
    ]
    at.file_uploader(key="upload").set_value(files).run()
    assert not at.exception
    assert list(at.dataframe(key="overview").value["image"]) == [f"i{k:02d}.png" for k in range(20)]
    assert any(m.value.startswith("22 images.") for m in at.markdown)
    at.radio(key="overview_page").set_value(20).run()
    assert not at.exception
    assert list(at.dataframe(key="overview-20").value["image"]) == ["i20.png", "i21.png"]


def test_the_overview_says_how_many_images_are_analysed(app, monkeypatch) -> None:
    """Issue 28, section 6: while a batch is analysed the page shows 'Analysed k of n
    images', k counting up to n, before the table replaces it (every text the progress
    bar is given, in order)."""
    from streamlit.delta_generator import DeltaGenerator

    said: list[str] = []
    original = DeltaGenerator.progress

    def spy(self, value, text=None, **kw):
        said.append(text)
        return original(self, value, text=text, **kw)

    monkeypatch.setattr(DeltaGenerator, "progress", spy)
    at = app.run()
    files = [
        (f"p{k}.png", image_bytes(make_image((40 * k, 90, 200 - 30 * k), 24, seed=k)), "image/png")
        for k in range(3)
    ]
    at.file_uploader(key="upload").set_value(files).run()
    assert not at.exception
    counted = [t for t in said if t and t.startswith("Analysed")]
    assert counted == [
        "Analysed 1 of 3 images",
        "Analysed 2 of 3 images",
        "Analysed 3 of 3 images",
    ]
    assert not any(p.value for p in at.get("progress"))  # gone once the table is drawn
