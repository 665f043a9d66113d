"""ImageNet distillation at toy scale: a run, its card and learning curve, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.cli import main
from vt_explorer.distill import (
    DistillArgs,
    bf16_supported,
    distill,
    distill_step,
    feature_sets,
    kd_loss,
    label_views,
    make_views,
    mix_views,
    nudge_views,
    random_views,
    teacher_model,
    token_overlap,
    window_views,
)
from vt_explorer.train import TrainInterrupted

from .imagegen import make_image

WNIDS = [f"n{i:08d}" for i in range(1000)]


pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def pool(tmp_path) -> Path:
    """Two wnid folders and one unlabelled folder of 64 px images, with the wnid list."""
    root = tmp_path / "pool"
    for c, (name, color) in enumerate(
        [("n00000001", (200, 20, 20)), ("n00000007", (20, 200, 20)), ("misc", (20, 20, 200))]
    ):
        (root / name).mkdir(parents=True)
        for i in range(6):
            make_image(color, 64, seed=10 * c + i).save(root / name / f"{i}.png")
    (tmp_path / "imagenet_wnids.txt").write_text("\n".join(WNIDS))
    return root


def _args(pool: Path, out: Path, **kw) -> DistillArgs:
    # the pool is both data and held-out: split, 6 of its 18 images held out
    base = dict(
        data=[str(pool)],
        holdout=[str(pool)],
        out=str(out),
        samples=96,
        batch_size=16,
        eval_every=48,
        bank_size=64,
        threads=2,
        holdout_limit=6,
    )
    return DistillArgs(**(base | kw))


def test_views_mixes_and_loss_against_plain_computations() -> None:
    g = torch.Generator().manual_seed(0)
    bank = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6).half()
    v = random_views(bank, torch.tensor([0, 1, 1]), 4, 1.0, g)  # area 1: the whole map
    assert v.shape == (3, 3, 4, 4)
    whole = torch.nn.functional.interpolate(
        bank[[0]].float(), size=4, mode="bilinear", align_corners=False, antialias=False
    )
    # roi_align averages 2x2 samples per cell: close to a bilinear resize of the whole map
    assert torch.allclose(v[0], whole[0], atol=1.0) or torch.allclose(
        v[0], whole[0].flip(2), atol=1.0
    )
    x = torch.randn(4, 2, 5, 5)
    m = mix_views(x, torch.Generator().manual_seed(1))
    assert m.shape == x.shape and not torch.equal(m, x)
    s, t = torch.randn(3, 7), torch.randn(3, 7)
    ref = (torch.softmax(t, 1) * (torch.log_softmax(t, 1) - torch.log_softmax(s, 1))).sum(1).mean()
    torch.testing.assert_close(kd_loss(s, t, 1.0), ref)
    assert float(kd_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)


def test_token_overlap_is_map_similarity_and_lowers_collapse() -> None:
    """The diversity term equals the reported map similarity (per image, averaged), is 1 for
    identical maps and 0 for disjoint ones, and its gradient pulls two maps apart."""
    import numpy as np

    from vt_explorer.analysis import map_similarity

    maps = torch.rand(3, 5, 4, 4)
    maps = maps / maps.sum((2, 3), keepdim=True)
    ref = np.mean([map_similarity(m.numpy()) for m in maps])
    assert float(token_overlap(maps)) == pytest.approx(ref, rel=1e-5)
    same = torch.full((1, 4, 2, 2), 0.25)
    assert float(token_overlap(same)) == pytest.approx(1.0)
    disjoint = torch.eye(4).reshape(1, 4, 2, 2)
    assert float(token_overlap(disjoint)) == pytest.approx(0.0)
    logits = torch.zeros(1, 2, 4, requires_grad=True)
    with torch.no_grad():
        logits[0, 0, 0] = 1.0
        logits[0, 1, 1] = 1.0
    before = float(token_overlap(logits.softmax(-1).reshape(1, 2, 2, 2)).detach())
    token_overlap(logits.softmax(-1).reshape(1, 2, 2, 2)).backward()
    with torch.no_grad():
        logits -= 1.0 * logits.grad
    with torch.no_grad():
        assert float(token_overlap(logits.softmax(-1).reshape(1, 2, 2, 2))) < before


def test_token_overlap_margin_is_a_per_image_hinge() -> None:
    """With a margin only each image's similarity above it counts: an image of identical maps
    (similarity 1) gives 1 - margin, disjoint maps give 0 and no gradient, and a batch of both
    averages the two per image (not the hinge of the batch mean)."""
    same = torch.full((1, 4, 2, 2), 0.25)
    disjoint = torch.eye(4).reshape(1, 4, 2, 2)
    assert float(token_overlap(same, margin=0.3)) == pytest.approx(0.7)
    both = torch.cat([same, disjoint])
    assert float(token_overlap(both, margin=0.6)) == pytest.approx(0.4 / 2)
    assert float(token_overlap(both)) == pytest.approx(0.5)  # no margin: the plain mean
    apart = disjoint.clone().requires_grad_(True)
    token_overlap(apart, margin=0.3).backward()
    assert apart.grad is not None and float(apart.grad.abs().sum()) == 0.0


@pytest.mark.slow
def test_distill_writes_a_1000_class_card_with_a_learning_curve_and_resumes(pool, tmp_path) -> None:
    ref = distill(_args(pool, tmp_path / "new" / "ref"), progress=False)  # folder made
    curve = ref["learning_curve"]
    assert [p["samples"] for p in curve] == [48, 96]
    hold = curve[-1]["pool"]
    assert 0 <= hold["agreement"] <= 1 and hold["n"] == 6 and hold["top1"] is not None
    ck = load_checkpoint(tmp_path / "new" / "ref")
    assert len(ck.classes) == 1000 and ck.card["wnids"] == WNIDS
    assert ck.preprocess.resize == "center_crop" and ck.card["finished"] is True

    def kill(step: int) -> None:
        if step == 4:
            raise TrainInterrupted("simulated kill")

    out = tmp_path / "killed"
    with pytest.raises(TrainInterrupted):  # after the first state (3 steps of 16 = 48 samples)
        distill(_args(pool, out), on_step=kill, progress=False)
    assert (tmp_path / "killed.resume.pt").exists()
    with pytest.raises(ValueError, match=r"different recipe \(lr: 0.002 -> 0.01\)"):
        distill(_args(pool, out, resume=True, lr=0.01), progress=False)
    done = distill(_args(pool, out, resume=True), progress=False)

    def timeless(c):
        return [{k: v for k, v in p.items() if k != "seconds"} for p in c]

    assert timeless(done["learning_curve"]) == timeless(curve)
    a, b = load_checkpoint(tmp_path / "new" / "ref").model, load_checkpoint(out).model
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)


def test_init_starts_a_second_stage_from_a_finished_student(pool, tmp_path) -> None:
    """--init loads a finished student's weights (at a learning rate of ~0 they stay), the
    card records it and counts the views of both stages; another config is refused."""
    from vt_explorer.checkpoint import save_checkpoint
    from vt_explorer.model import create_model

    first = distill(_args(pool, tmp_path / "first", samples=32, eval_every=32), progress=False)
    with pytest.raises(ValueError, match="this run is finished"):  # --resume: nothing left
        distill(_args(pool, tmp_path / "first", samples=32, resume=True), progress=False)
    second = distill(
        _args(
            pool,
            tmp_path / "second",
            samples=32,
            eval_every=32,
            lr=1e-12,
            init=str(tmp_path / "first"),
        ),
        progress=False,
    )
    assert second["init"]["checkpoint"] == "first"
    assert (
        second["init"]["weights_sha256"]
        == load_checkpoint(tmp_path / "first").card["weights_sha256"]
    )
    assert second["distillation"]["samples_in_all"] == 64 and "init" not in first
    a = dict(load_checkpoint(tmp_path / "first").model.named_parameters())
    for k, v in load_checkpoint(tmp_path / "second").model.named_parameters():
        torch.testing.assert_close(v, a[k], msg=k)
    distill(_args(pool, tmp_path / "fresh", samples=32, eval_every=32, lr=1e-12), progress=False)
    b = dict(load_checkpoint(tmp_path / "fresh").model.named_parameters())
    assert any(not torch.equal(b[k], a[k]) for k in a)  # without --init: not the first stage
    save_checkpoint(
        create_model("vt_lite0_imagenet_filter"), tmp_path / "other", card={"wnids": WNIDS}
    )
    with pytest.raises(ValueError, match=r"vt_lite0_imagenet_filter checkpoint, not the student"):
        distill(
            _args(pool, tmp_path / "x", samples=16, init=str(tmp_path / "other")), progress=False
        )
    # the same config name with another setting: refused, naming the setting
    import dataclasses

    from vt_explorer.model import build_model

    cfg = load_checkpoint(tmp_path / "first").config
    other = dataclasses.replace(cfg, vt=dataclasses.replace(cfg.vt, mlp_ratio=0.25))
    save_checkpoint(build_model(other), tmp_path / "tweaked", card={"wnids": WNIDS})
    with pytest.raises(ValueError, match=r"other settings .*vt\.mlp_ratio: 0\.25 -> "):
        distill(
            _args(pool, tmp_path / "y", samples=16, init=str(tmp_path / "tweaked")), progress=False
        )


def test_distill_bad_input_is_one_line(pool, tmp_path, capsys) -> None:
    (pool / "n99999999").mkdir()
    make_image((1, 2, 3), 64).save(pool / "n99999999" / "a.png")
    argv = ["distill", "--data", str(pool), "--out", str(tmp_path / "o"), "--samples", "16"]
    assert main([*argv, "--bank-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "wnid folders not among the 1000 classes: ['n99999999']" in err
    assert main(["distill", "--data", str(tmp_path / "nope"), "--out", "o"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "imagenet_wnids.txt").write_text("n1\nn2")
    assert main([*argv]) == 2
    assert "expected 1000 distinct ImageNet wnids" in capsys.readouterr().err
    assert json.loads(json.dumps({})) == {}


def test_eval_and_tokens_accept_imagenet_wnid_folders(pool, tmp_path, capsys) -> None:
    """An ImageNet-layout folder (wnid names) covering a subset of the 1000 classes is
    scored 1000-way against each folder's class; a folder that is neither a class name nor
    a wnid is named."""
    from vt_explorer.checkpoint import save_checkpoint
    from vt_explorer.model import create_model

    save_checkpoint(create_model("vt_lite0_imagenet"), tmp_path / "im", card={"wnids": WNIDS})
    assert main(["eval", str(tmp_path / "im"), str(pool), "--json"]) == 2
    assert "not the model's class names or ImageNet wnids: misc" in capsys.readouterr().err
    for f in (pool / "misc").iterdir():
        f.unlink()
    (pool / "misc").rmdir()
    assert main(["eval", str(tmp_path / "im"), str(pool), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 12 and m["subset_of"] == 1000 and m["confusion"] is None
    assert set(m["per_class"]) == {"n00000001", "n00000007"} and 0 <= m["top5"] <= 1
    assert main(["eval", str(tmp_path / "im"), str(pool), "--json", "--sample", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 5  # distill's held-out sample of 5
    assert main(["eval", str(tmp_path / "im"), str(pool), "--teacher"]) == 2  # not distilled
    assert "not distilled" in capsys.readouterr().err
    card = json.loads((tmp_path / "im.json").read_text())
    card["teacher"] = {"model": "efficientnet_lite0"}
    (tmp_path / "im.json").write_text(json.dumps(card))
    assert main(["eval", str(tmp_path / "im"), str(pool), "--json", "--teacher"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert 0 <= t["teacher_agreement"] <= 1 and 0 <= t["teacher_accuracy"] <= t["teacher_top5"] <= 1
    out = tmp_path / "tok"
    assert main(["tokens", str(tmp_path / "im"), str(pool), "--out", str(out)]) == 0
    stats = json.loads((out / "tokens.json").read_text())
    assert stats["classes"] == ["n00000001", "n00000007"] and len(stats["mean_share"][0]) == 2


def test_classifier_reuse_keeps_the_teachers_classifier(pool, tmp_path) -> None:
    """--reuse-classifier (SimKD): the student's last layer is the teacher's own classifier,
    frozen through training, behind a learned 1280-d projection; the checkpoint reloads with
    the same head."""
    from vt_explorer.model.efficientnet import ReusedClassifier, pretrained_state_dict

    card = distill(
        _args(pool, tmp_path / "simkd", samples=32, eval_every=32, reuse_classifier=True),
        progress=False,
    )
    assert card["distillation"]["reuse_classifier"] is True
    ck = load_checkpoint(tmp_path / "simkd")
    assert isinstance(ck.model.fc, ReusedClassifier)
    assert ck.model.fc.proj.out_features == 1280
    teacher = pretrained_state_dict()
    torch.testing.assert_close(ck.model.fc.classifier.weight, teacher["_fc.weight"])
    torch.testing.assert_close(ck.model.fc.classifier.bias, teacher["_fc.bias"])


def test_a_source_both_trained_on_and_held_out_is_split(pool, tmp_path) -> None:
    """Data and held-out may name the same source: the bank keeps exactly the images that are
    not in its fixed held-out sample (none shared, none lost), the card says so, and a
    held-out sample that takes everything is an error naming the source."""
    from vt_explorer.model import create_model

    student = create_model("vt_lite0_imagenet_filter")
    student.load_pretrained()
    args = _args(pool, tmp_path / "o", bank_size=224)  # both at 224 px: rows comparable
    (bank,), ((_, held, labels),), _ = feature_sets(
        args, student, WNIDS, torch.device("cpu"), False
    )
    assert len(bank) == 12 and len(held) == 6 and len(labels) == 6
    rows = lambda fs: {fs.features[i].numpy().tobytes() for i in range(len(fs))}  # noqa: E731
    assert not rows(bank) & rows(held) and len(rows(bank) | rows(held)) == 18
    card = distill(_args(pool, tmp_path / "split", samples=16, eval_every=16), progress=False)
    assert card["dataset"]["pool"][0]["n"] == 12 and "minus_holdout" in card["dataset"]["pool"][0]
    with pytest.raises(Exception, match="all 18 images are held out"):
        distill(_args(pool, tmp_path / "all", holdout_limit=18), progress=False)


def test_teacher_tail_features_feed_its_classifier() -> None:
    """The pooled feature the feature-matching term targets is what the teacher's classifier
    reads: ``_fc(tail_features(trunk(x)))`` is the full classifier's output; the folded
    teacher distill labels its views with has no BatchNorm left and the same outputs."""
    from vt_explorer.model import create_model

    teacher = teacher_model(torch.device("cpu"))
    student = create_model("vt_lite0_imagenet_filter")  # the shared trunk, blocks 0-10
    student.load_pretrained()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feature = teacher.tail_features(student.eval().features(images))
        assert feature.shape == (2, 1280) and (feature >= 0).all() and (feature <= 6).all()
        torch.testing.assert_close(teacher._fc(feature), teacher(images), atol=1e-4, rtol=1e-4)
        folded = teacher_model(torch.device("cpu"), fold=True)  # what distill labels with
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        x = student.features(images)
        torch.testing.assert_close(folded.tail(x), teacher.tail(x), atol=1e-3, rtol=1e-3)


def test_teacher_labels_views_in_chunks_as_one_float64_batch() -> None:
    """``label_views`` (the folded teacher, channels-last, in CPU chunks of 32) gives the
    feature and logits of a plain float64 pass of the unfolded teacher over the whole batch;
    in bfloat16 the distribution stays close (KL well under the students' loss of ~0.5)."""
    import copy

    teacher = teacher_model(torch.device("cpu"))
    folded = teacher_model(torch.device("cpu"), fold=True)
    x = torch.randn(40, 112, 14, 14, generator=torch.Generator().manual_seed(0)).clamp(0, 6)
    feature, logits = label_views(folded, x)  # 40 views: a chunk of 32 and one of 8
    ref = copy.deepcopy(teacher).double()
    with torch.no_grad():
        ref_feature = ref.tail_features(x.double())
        torch.testing.assert_close(feature, ref_feature.float(), atol=2e-3, rtol=1e-3)
        torch.testing.assert_close(logits, ref._fc(ref_feature).float(), atol=2e-3, rtol=1e-3)
    assert feature.dtype == logits.dtype == torch.float32 and logits.shape == (40, 1000)
    if bf16_supported(torch.device("cpu")):
        _, low = label_views(folded, x, bf16=True)
        assert low.dtype == torch.float32 and float(kd_loss(low, logits, 1.0)) < 0.01


def test_bf16_steps_train_float32_weights_and_is_refused_where_emulated(
    pool, tmp_path, capsys, monkeypatch
) -> None:
    """--bf16: a step keeps float32 weights and a finite float32 loss; on a device without
    native bfloat16 the run is refused in one line instead of running slower."""
    import vt_explorer.distill.recipe as distill_recipe

    if bf16_supported(torch.device("cpu")):
        from vt_explorer.model import create_model

        torch.manual_seed(0)
        student = create_model("vt_lite0_imagenet_filter")
        student.load_pretrained()
        before = student.fc.weight.detach().clone()
        bank = torch.randn(8, 112, 14, 14, generator=torch.Generator().manual_seed(1)).half()
        args = _args(pool, tmp_path / "o", bf16=True, batch_size=8)
        opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
        teacher = teacher_model(torch.device("cpu"), fold=True)
        g = torch.Generator().manual_seed(0)
        views = make_views(args, teacher, bank, torch.full((8,), -1), 14)
        loss = distill_step(args, student, teacher, opt, views, g)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert student.fc.weight.dtype == torch.float32
        assert not torch.equal(student.fc.weight, before)
    monkeypatch.setattr(distill_recipe, "bf16_supported", lambda device: False)
    argv = [
        "distill",
        "--data",
        str(pool),
        "--out",
        str(tmp_path / "x"),
        "--samples",
        "16",
        "--bank-size",
        "64",
        "--bf16",
    ]
    assert main(argv) == 2
    assert "drop --bf16" in capsys.readouterr().err


def test_feature_matching_fits_the_teachers_feature(pool, tmp_path, capsys) -> None:
    """--feature-weight (SimKD's loss) alone (--kd-weight 0) pulls the student's projected
    feature onto the teacher's pooled feature of the same views; it needs the reused
    classifier's projection, and a loss of nothing is refused."""
    from vt_explorer.model import create_model

    torch.manual_seed(0)
    cfg = create_model("vt_lite0_imagenet_filter").cfg
    student = create_model(cfg.replace(extra={**cfg.extra, "reuse_classifier": True}))
    student.load_pretrained()
    teacher = teacher_model(torch.device("cpu"))
    bank = torch.randn(8, 112, 14, 14, generator=torch.Generator().manual_seed(1)).half()
    args = _args(
        pool,
        tmp_path / "o",
        reuse_classifier=True,
        feature_weight=1.0,
        kd_weight=0.0,
        mix=0.0,
        min_scale=1.0,
        batch_size=8,
    )
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    views = make_views(args, teacher, bank, torch.full((8,), -1), 14)
    losses = [distill_step(args, student, teacher, opt, views, g).item() for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    argv = ["distill", "--data", str(pool), "--out", str(tmp_path / "x"), "--samples", "16"]
    assert main([*argv, "--feature-weight", "1"]) == 2
    assert "add --reuse-classifier" in capsys.readouterr().err
    assert main([*argv, "--kd-weight", "0"]) == 2
    assert "nothing would be learned" in capsys.readouterr().err


def test_feature_term_of_a_pool_student_is_the_token_average() -> None:
    """For a pool student (Lite0's own classifier, frozen) --feature-weight compares the
    token average, which is exactly what the classifier reads (its logits are fc of it),
    with the teacher's average-pooled feature; the recipe accepts it without
    --reuse-classifier, and the term is the plain mean squared error of the two."""
    from vt_explorer.distill.losses import distill_loss
    from vt_explorer.distill.recipe import check_recipe
    from vt_explorer.model import create_model

    student = create_model("vt_lite0_os16_pool").eval()
    student.load_pretrained()
    x = torch.randn(2, *student.features(torch.zeros(1, 3, 224, 224)).shape[1:])
    with torch.no_grad(), student.recording_feature() as seen:
        out = student.head(x, need_weights=True)
    (fed,) = seen
    assert fed.shape == (2, 1280)
    assert torch.allclose(student.fc(fed), out.logits, atol=1e-5)
    assert torch.allclose(fed, out.modules[-1].tokens.mean(1), atol=1e-5)
    args = DistillArgs(
        data=["unused"],
        out="unused",
        student="vt_lite0_os16_pool",
        feature_weight=2.0,
        kd_weight=0.0,
    )
    check_recipe(args, student.cfg, torch.device("cpu"))  # no --reuse-classifier needed
    target = torch.randn(2, 1280)
    loss = distill_loss(args, out.logits, out.logits, torch.full((2,), -1), None, fed, target)
    assert torch.isclose(loss, 2.0 * ((fed - target) ** 2).mean())


def test_group_balance_is_the_soft_effective_number_of_groups() -> None:
    """group_balance: at a low temperature, exp(H(share)) of its soft shares is the
    effective number of groups that `tokens` reports (semantic_groups, then
    effective_groups); the hinge is 0 once an image reaches the target and pushes a
    collapsed image's maps apart (a gradient)."""
    from vt_explorer.analysis import effective_groups, semantic_groups
    from vt_explorer.distill.losses import group_balance

    g = torch.Generator().manual_seed(0)
    # each pixel has one clear winner (relative value 1 against at most 0.5), every token
    # winning somewhere, in unequal numbers: no near ties for the soft assignment to split
    maps = torch.rand(3, 8, 36, generator=g) * 0.5
    for b in range(3):
        won = torch.cat([torch.arange(8), torch.randint(0, 8 - 2 * b, (28,), generator=g)])
        maps[b, won, torch.arange(36)] = 1.0
    maps = (maps / maps.sum(-1, keepdim=True)).view(3, 8, 6, 6)
    for b in range(3):
        want = effective_groups(semantic_groups(maps[b].numpy())[1])
        short = group_balance(maps[b : b + 1], groups=8.0, temperature=1e-4).item()
        assert np.isclose(np.exp(np.log(8.0) - short), want, rtol=1e-3)
        assert group_balance(maps[b : b + 1], groups=want * 0.99, temperature=1e-4) == 0
    # token 0 looks everywhere (a flat map, at its maximum on every pixel) and the others
    # at one pixel: token 0 claims nearly every pixel, far from 4 groups; a gradient
    peaked = torch.full((4, 9), 0.1 / 8)
    peaked[:, 0] = 0.9
    peaked[0] = 1 / 9
    collapsed = peaked.view(1, 4, 3, 3).requires_grad_()
    loss = group_balance(collapsed, groups=4.0)
    loss.backward()
    assert loss > 0.5 and collapsed.grad.abs().sum() > 0


def test_fixed_sample_is_fixed_ordered_and_nested() -> None:
    """The held-out sample: the same every time, in dataset order, without repeats, all of a
    small source, and a smaller limit picks a subset of a larger one's sample (so cards
    written with different --holdout-limit values compare on shared images)."""
    from vt_explorer.data import fixed_sample

    a = fixed_sample(10_000, 1000)
    assert torch.equal(a, fixed_sample(10_000, 1000)) and len(a.unique()) == 1000
    assert torch.equal(a, a.sort().values) and int(a.max()) < 10_000
    assert set(a.tolist()) <= set(fixed_sample(10_000, 2000).tolist())
    assert torch.equal(fixed_sample(7, 1000), torch.arange(7))


def test_distill_set_changes_the_students_architecture(pool, tmp_path, capsys) -> None:
    """``distill --set KEY=VALUE`` changes the student's config as ``train --set`` does: the
    card records it and the checkpoint reloads with it; a field the schema refuses is one
    line naming --set."""
    out = tmp_path / "wide"
    argv = [
        "distill",
        "--data",
        str(pool),
        "--out",
        str(out),
        "--samples",
        "16",
        "--batch-size",
        "16",
        "--bank-size",
        "64",
        "--holdout-limit",
        "6",
    ]
    assert main([*argv, "--set", "token_dim=64"]) == 0
    ck = load_checkpoint(out)
    assert ck.card["config"]["vt"]["token_dim"] == 64 and ck.model.vt.token_dim == 64
    assert ck.card["recipe"]["overrides"] == {"token_dim": 64}
    capsys.readouterr()
    assert main([*argv, "--set", "token_dim"]) == 2
    assert "--set: expected KEY=VALUE" in capsys.readouterr().err


def test_real_share_puts_the_photos_own_maps_in_each_batch(pool, tmp_path, monkeypatch) -> None:
    """--real-share: that share of each batch is the pool photos' own maps at the model's
    input size (unresampled, mirrored or not), the rest crops of the bank; the real maps are
    split like the bank (no held-out image among them), and the card records the share."""
    import vt_explorer.distill as distill_mod
    import vt_explorer.distill.loop as distill_loop
    from vt_explorer.model import create_model

    cpu = torch.device("cpu")
    student = create_model("vt_lite0_imagenet_filter")
    student.load_pretrained()
    args = _args(pool, tmp_path / "o", real_share=0.5, batch_size=8, mix=0.0)
    (bank,), ((_, held, _),), ((real,),) = feature_sets(args, student, WNIDS, cpu, False)
    assert real.features.shape == (12, 112, 14, 14) and bank.features.shape[-1] == 4
    rows = lambda t: {t[i].float().numpy().tobytes() for i in range(len(t))}  # noqa: E731
    assert not rows(real.features) & rows(held.features)
    seen: list[torch.Tensor] = []
    labelled = distill_mod.label_views
    monkeypatch.setattr(
        distill_loop,
        "label_views",
        lambda t, x, bf16=False: (seen.append(x.clone()), labelled(t, x, bf16))[1],
    )
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    teacher = teacher_model(cpu, fold=True)
    views = make_views(args, teacher, bank.features, torch.full((12,), -1), 14, real.features)
    distill_step(args, student, teacher, opt, views, g)
    own = rows(real.features) | rows(real.features.flip(-1))
    assert all(r in own for r in rows(seen[0][:4])) and not rows(seen[0][4:]) & own
    card = distill(
        _args(pool, tmp_path / "card", samples=16, eval_every=16, real_share=0.5), progress=False
    )
    assert "a share of 0.5 of each batch" in card["distillation"]["views"]


def test_window_views_are_unresampled_blocks_of_the_bank_maps() -> None:
    """Each window view equals a plain slice of its bank map (mirrored or not) at an integer
    offset; every offset of a 6x6 map's 4x4 windows occurs; maps smaller than the window
    are refused, naming the fix."""
    bank = torch.randn(3, 2, 6, 6).half()
    idx = torch.tensor([0, 1, 2] * 200)
    v = window_views(bank, idx, 4, torch.Generator().manual_seed(0))
    assert v.shape == (600, 2, 4, 4) and v.dtype == torch.float32
    found: set[tuple[int, int, bool]] = set()
    for i, x in zip(idx.tolist(), v, strict=True):
        hits = [
            (t, c, f)
            for t in range(3)
            for c in range(3)
            for f in (False, True)
            if torch.equal(
                x, (lambda w: w.flip(-1) if f else w)(bank[i, :, t : t + 4, c : c + 4].float())
            )
        ]
        assert hits, "a window view is not a slice of its own map"
        found.update(hits)
    assert len(found) == 18  # 9 offsets x mirrored or not
    with pytest.raises(ValueError, match="raise --bank-size"):
        window_views(bank, idx, 7, torch.Generator())


def test_window_share_in_the_batch_and_its_checks(pool, tmp_path, monkeypatch) -> None:
    """--window-share: after the real share, that share of the batch is whole-cell windows of
    the same photos' bank maps; the card records it; shares above the batch or a bank smaller
    than the model's input are refused before any work."""
    import vt_explorer.distill as distill_mod
    import vt_explorer.distill.loop as distill_loop
    from vt_explorer.model import create_model

    cpu = torch.device("cpu")
    student = create_model("vt_lite0_imagenet_filter")
    student.load_pretrained()
    args = _args(pool, tmp_path / "o", window_share=0.5, batch_size=8, mix=0.0, bank_size=288)
    (bank,), _, _ = feature_sets(args, student, WNIDS, cpu, False)
    seen: list[torch.Tensor] = []
    labelled = distill_mod.label_views
    monkeypatch.setattr(
        distill_loop,
        "label_views",
        lambda t, x, bf16=False: (seen.append(x.clone()), labelled(t, x, bf16))[1],
    )
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    teacher = teacher_model(cpu, fold=True)
    maps = bank.features.float()
    blocks = {
        w.numpy().tobytes()
        for m in maps
        for t in range(5)
        for c in range(5)
        for w in (m[:, t : t + 14, c : c + 14], m[:, t : t + 14, c : c + 14].flip(-1))
    }
    views = make_views(args, teacher, bank.features, torch.full((12,), -1), 14)
    distill_step(args, student, teacher, opt, views, torch.Generator().manual_seed(0))
    got = [x.numpy().tobytes() for x in seen[0]]
    assert all(b in blocks for b in got[:4]) and not any(b in blocks for b in got[4:])
    with pytest.raises(ValueError, match="more than the whole batch"):
        distill(_args(pool, tmp_path / "x", real_share=0.6, window_share=0.5), progress=False)
    with pytest.raises(ValueError, match="--bank-size of at least"):
        distill(_args(pool, tmp_path / "y", window_share=0.5), progress=False)
    card = distill(
        _args(pool, tmp_path / "card", samples=16, eval_every=16, window_share=0.25, bank_size=256),
        progress=False,
    )
    assert "a share of 0.25 is whole-cell windows" in card["distillation"]["views"]


def test_nudge_views_step_against_plain_autograd_and_its_direction() -> None:
    """One nudge step is x + size * std(x) * sign(d log p_T(target | x) / dx), computed here
    by plain autograd; more steps raise the target's log-probability for (nearly) every map;
    the input is left alone."""
    teacher = teacher_model(torch.device("cpu"), fold=True)
    x = torch.randn(6, 112, 14, 14, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    target = torch.tensor([1, 50, 300, 500, 700, 999])
    one = nudge_views(teacher, x, target, 1, 0.05)
    ref = x.clone().requires_grad_(True)
    logp = torch.log_softmax(teacher.tail(ref), -1)[torch.arange(6), target].sum()
    (grad,) = torch.autograd.grad(logp, ref)
    expect = x + 0.05 * x.flatten(1).std(1)[:, None, None, None] * grad.sign()
    assert torch.allclose(one, expect, atol=1e-5) and torch.equal(x, before)
    with torch.no_grad():
        lp = lambda v: torch.log_softmax(teacher.tail(v), -1)[torch.arange(6), target]  # noqa: E731
        gain = lp(nudge_views(teacher, x, target, 3, 0.02)) - lp(x)
    assert (gain > 0).sum() >= 5 and gain.mean() > 0


def test_nudge_share_in_distill_step_and_card(pool, tmp_path, monkeypatch) -> None:
    """--nudge-share: that share of each batch goes through nudge_views (random rows, random
    targets among the 1000 classes) before the teacher labels it; the card records it."""
    import vt_explorer.distill as distill_mod

    calls: list[tuple[int, int, int]] = []
    import vt_explorer.distill.views as distill_views

    real_nudge = distill_mod.nudge_views

    def spy(teacher, x, target, steps, size, bf16=False):
        calls.append((len(x), int(target.min()), int(target.max())))
        return real_nudge(teacher, x, target, steps, size, bf16)

    monkeypatch.setattr(distill_views, "nudge_views", spy)
    card = distill(
        _args(
            pool,
            tmp_path / "card",
            samples=32,
            eval_every=32,
            batch_size=16,
            nudge_share=0.25,
            mix=0.0,
        ),
        progress=False,
    )
    assert [c[0] for c in calls] == [4, 4] and all(0 <= c[1] <= c[2] < 1000 for c in calls)
    assert "nudged towards random classes" in card["distillation"]["views"]


def test_fixed_crop_box_is_a_fixed_random_resized_crop() -> None:
    """crop<k>: a photo's k-th crop is the same on every call, differs between k and between
    photos, lies inside the photo with area 25-100% and aspect 3/4-4/3; Preprocess resizes
    exactly that box; an unknown mode (crop0, cropx) is refused."""
    from PIL import Image

    from vt_explorer.preprocess import Preprocess, fixed_crop_box

    a, b = make_image((200, 20, 20), 96, seed=1), make_image((20, 20, 200), 96, seed=2)
    a = a.resize((120, 90))
    boxes = [fixed_crop_box(a, k) for k in (1, 2, 3)]
    assert fixed_crop_box(a, 1) == boxes[0] and len(set(boxes)) == 3
    assert fixed_crop_box(b, 1) != fixed_crop_box(b.resize((120, 90)), 2)
    pairs = [(a, box) for box in boxes] + [(b, fixed_crop_box(b, k)) for k in range(1, 20)]
    for img, (left, top, right, bottom) in pairs:
        (W, H), w, h = img.size, right - left, bottom - top
        assert left >= 0 and top >= 0 and right <= W + 1e-9 and bottom <= H + 1e-9
        assert 0.25 - 1e-9 <= w * h / (W * H) <= 1 + 1e-9
        assert 3 / 4 - 1e-9 <= w / h <= 4 / 3 + 1e-9
    got = Preprocess(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "crop2", "bilinear")(a)
    ref = a.resize((32, 32), Image.BILINEAR, box=boxes[1])
    assert torch.allclose(
        got, torch.from_numpy(np.asarray(ref, dtype=np.float32) / 255).permute(2, 0, 1)
    )
    for bad in ("crop0", "cropx"):
        with pytest.raises(ValueError, match="unknown resize mode"):
            Preprocess(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), bad)(a)


def test_real_views_draw_each_photos_crops_too(pool, tmp_path, monkeypatch) -> None:
    """--real-views 3: the real bank holds each photo's centre map and two fixed crops' maps
    (split like the bank), the real share of a batch draws from all three, and the card says so."""
    import vt_explorer.distill as distill_mod
    import vt_explorer.distill.loop as distill_loop
    from vt_explorer.model import create_model

    cpu = torch.device("cpu")
    student = create_model("vt_lite0_imagenet_filter")
    student.load_pretrained()
    args = _args(pool, tmp_path / "o", real_share=1.0, real_views=3, batch_size=64, mix=0.0)
    (bank,), _, real_sets = feature_sets(args, student, WNIDS, cpu, False)
    assert [len(s) for s in real_sets] == [1, 1, 1] and all(len(s[0]) == 12 for s in real_sets)
    real = torch.stack([s[0].features for s in real_sets])
    assert not torch.equal(real[0], real[1]) and not torch.equal(real[1], real[2])
    seen: list[torch.Tensor] = []
    labelled = distill_mod.label_views
    monkeypatch.setattr(
        distill_loop,
        "label_views",
        lambda t, x, bf16=False: (seen.append(x.clone()), labelled(t, x, bf16))[1],
    )
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    teacher = teacher_model(cpu, fold=True)
    views = make_views(args, teacher, bank.features, torch.full((12,), -1), 14, real)
    distill_step(args, student, teacher, opt, views, torch.Generator().manual_seed(0))
    owner = {}
    for v in range(3):
        for m in real[v].float():
            owner[m.numpy().tobytes()] = v
            owner[m.flip(-1).numpy().tobytes()] = v
    views = [owner.get(x.numpy().tobytes()) for x in seen[0]]
    assert None not in views and set(views) == {0, 1, 2}
    with pytest.raises(ValueError, match="add --real-share"):
        distill(_args(pool, tmp_path / "x", real_views=2), progress=False)
    card = distill(
        _args(pool, tmp_path / "card", samples=16, eval_every=16, real_share=0.5, real_views=2),
        progress=False,
    )
    assert "the centre crop and 1 fixed random-resized crops" in card["distillation"]["views"]


def test_image_crops_are_trunk_maps_of_fresh_crops_of_each_photo() -> None:
    """ImageCrops: each view is the trunk's map of a crop of *its own* photo at the model's
    input size, normalised as the model normalises (a photo of one colour gives, whatever
    the crop, the trunk's map of that colour's 224-px square), and successive calls differ."""
    from vt_explorer.data import normalize
    from vt_explorer.distill import ImageCrops
    from vt_explorer.features import folded_trunk
    from vt_explorer.model import create_model

    student = create_model("vt_lite0_imagenet_filter")
    student.load_pretrained()
    student.eval()
    colours = torch.tensor([[200, 20, 20], [20, 200, 20], [20, 20, 200]], dtype=torch.uint8)
    photos = colours[:, :, None, None].expand(3, 3, 96, 96).contiguous()
    crops = ImageCrops(photos, folded_trunk(student), student.cfg.mean, student.cfg.std, 224)
    idx = torch.tensor([2, 0, 1, 2])
    views = crops(idx, torch.Generator().manual_seed(0))
    assert views.shape == (4, 112, 14, 14) and views.dtype == torch.float32
    with torch.no_grad():
        squares = colours[idx][:, :, None, None].expand(4, 3, 224, 224)
        want = student.features(normalize(squares, student.cfg.mean, student.cfg.std))
    torch.testing.assert_close(views, want, atol=2e-3, rtol=1e-3)
    textured = torch.randint(
        0, 256, (2, 3, 96, 96), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )
    crops = ImageCrops(textured, folded_trunk(student), student.cfg.mean, student.cfg.std, 224)
    g = torch.Generator().manual_seed(0)
    a, b = crops(torch.tensor([0, 0]), g), crops(torch.tensor([0, 0]), g)
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a, b)


def test_image_share_in_the_batch_the_split_and_the_card(pool, tmp_path, monkeypatch) -> None:
    """--image-share: after the real share that share of the batch comes from the crops, for
    the same photos as the rest of the batch; the decoded photos are the bank's row for row
    (split like it: their trunk maps at bank size are the bank); shares above the whole batch
    are refused; the card records the share."""
    import vt_explorer.distill as distill_mod
    import vt_explorer.distill.loop as distill_loop
    from vt_explorer.data import normalize
    from vt_explorer.model import create_model

    cpu = torch.device("cpu")
    student = create_model("vt_lite0_imagenet_filter")
    student.load_pretrained()
    args = _args(pool, tmp_path / "o", real_share=0.25, image_share=0.5, batch_size=8, mix=0.0)
    (bank,), holdouts, ((real,),) = feature_sets(args, student, WNIDS, cpu, False)
    (images,) = distill_mod.pool_images(args, student, holdouts, [bank], False)
    assert images.images.shape == (12, 3, 64, 64)
    with torch.no_grad():
        maps = student.eval().features(normalize(images.images, student.cfg.mean, student.cfg.std))
    torch.testing.assert_close(maps.half(), bank.features, atol=2e-2, rtol=2e-2)

    class Spy:  # an image-crop source (vt_explorer.distill.views.ViewSource)
        share = 1.0

        def __call__(self, idx, g):
            self.idx = idx.clone()
            return torch.full((len(idx), 112, 14, 14), 7.0)

        def describe(self):
            return "spy"

    seen: list[torch.Tensor] = []
    labelled = distill_mod.label_views
    monkeypatch.setattr(
        distill_loop,
        "label_views",
        lambda t, x, bf16=False: (seen.append(x.clone()), labelled(t, x, bf16))[1],
    )
    drawn: list[torch.Tensor] = []
    randint = torch.randint
    monkeypatch.setattr(
        torch, "randint", lambda *a, **k: (drawn.append(randint(*a, **k)), drawn[-1])[1]
    )
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    spy = Spy()
    teacher = teacher_model(cpu, fold=True)
    views = make_views(args, teacher, bank.features, torch.full((12,), -1), 14, real.features, spy)
    distill_step(args, student, teacher, opt, views, torch.Generator().manual_seed(0))
    monkeypatch.setattr(torch, "randint", randint)
    assert spy.share == 0.5 and torch.equal(spy.idx, drawn[0][2:6])
    assert (seen[0] == 7).flatten(1).all(1).tolist() == [False] * 2 + [True] * 4 + [False] * 2
    with pytest.raises(ValueError, match="is more than the whole batch"):
        distill(_args(pool, tmp_path / "x", real_share=0.5, image_share=0.6), progress=False)
    card = distill(
        _args(pool, tmp_path / "card", samples=16, eval_every=16, image_share=0.5), progress=False
    )
    assert (
        "a share of 0.5 is fresh random-resized crops of the photos"
        in card["distillation"]["views"]
    )


def test_eval_teacher_is_the_one_that_taught_or_the_plain_one(pool, tmp_path, monkeypatch) -> None:
    """eval --teacher uses the teacher as it taught: Lite0 at the student's output stride
    (dilated for a stride-16 student, so the card's held-out agreement reproduces);
    --teacher plain the plain Lite0."""
    import vt_explorer.model.teacher as teacher_mod
    from vt_explorer.checkpoint import save_checkpoint
    from vt_explorer.model import create_model

    built = []
    real = teacher_mod.teacher_model

    def spy(device, fold=False, student=None):
        t = real(device, fold, student)
        built.append(t.cfg.extra.get("output_stride", 32))
        return t

    monkeypatch.setattr(teacher_mod, "teacher_model", spy)
    import shutil

    shutil.rmtree(pool / "misc")  # eval scores wnid folders only
    save_checkpoint(
        create_model("vt_lite0_os16_head_conv"),
        tmp_path / "s16",
        card={"wnids": WNIDS, "teacher": {"model": "efficientnet_lite0"}},
    )
    for how, stride in ((["--teacher"], 16), (["--teacher", "plain"], 32)):
        assert main(["eval", str(tmp_path / "s16"), str(pool), "--json", *how]) == 0
        assert built[-1] == stride, how
