"""Contract tests over every registered config, and the baselines against torchvision."""

from __future__ import annotations

import pytest
import torch
import torchvision

from vt_explorer.model import (
    ModelConfig,
    SeedViTResNetReference,
    count_complexity,
    create_model,
    get_config,
    list_models,
)

CLASSIFIERS = list_models("classification")


def _images(name: str, batch: int) -> torch.Tensor:
    s = get_config(name).input_size
    return torch.randn(batch, 3, s, s)


def test_registry_lists_what_the_issue_asks_for() -> None:
    names = set(list_models())
    for n in [
        "resnet20",
        "vt_resnet20",
        "vt_resnet20_filter",
        "vit_resnet_seed",
        "resnet18",
        "vt_resnet18",
        "resnet34",
        "vt_resnet34",
        "fpn_r50_conv",
        "fpn_r50_vt",
    ]:
        assert n in names
    assert set(list_models("fpn")) == {"fpn_r50_conv", "fpn_r50_vt"}
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_contract(name: str, tmp_path) -> None:
    from vt_explorer.checkpoint import load_checkpoint, save_checkpoint

    cfg = get_config(name)
    model = create_model(name).eval()
    x = _images(name, 2)
    with torch.no_grad():
        logits = model(x)
        trace = model.trace(x)
    assert logits.shape == (2, cfg.num_classes)
    torch.testing.assert_close(trace.logits, logits, rtol=1e-4, atol=1e-5)
    if cfg.vt is not None:
        kinds = cfg.vt.tokenizer_kinds()
        assert [m.kind for m in trace.modules] == kinds
        L = cfg.vt.tokens
        for i, m in enumerate(trace.modules):
            h, w = m.feature_size
            assert m.tokenizer_attention.shape == (2, L, h, w)
            assert len(m.token_attention) == cfg.vt.depth
            for a in m.token_attention:
                assert a.shape == (2, cfg.vt.heads, L, L)
            if i < len(kinds) - 1:
                assert m.projector_attention.shape == (2, L, h, w)
            else:
                assert m.projector_attention is None
            assert m.tokens.shape == (2, L, cfg.vt.token_dim or model.vt.token_dim)
    # backward reaches every parameter (no dead weights)
    model.train()
    model(x).logsumexp(-1).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert dead == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if cfg.extra.get("freeze_backbone"):  # a frozen trunk: exactly the pretrained part
        kept = ("_conv_stem", "_bn0", "_blocks")
        if cfg.extra.get("cut") == "pool":  # also Lite0's head conv and its classifier
            kept += ("_conv_head", "_bn1", "fc.")
        assert frozen and all(n.startswith(kept) for n in frozen)
    else:
        assert frozen == []
    # save / load round trip
    model.eval()
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k].cpu(), v), k
    with torch.no_grad():  # loaded models run channels_last: other conv kernels, same maths
        torch.testing.assert_close(loaded.model(x), model(x), rtol=1e-3, atol=1e-3)
    assert loaded.config == cfg


@pytest.mark.parametrize("name", ["vt_resnet20", "vt_resnet20_filter", "vit_resnet_seed"])
def test_batch_of_one_and_seven_agree(name: str) -> None:
    model = create_model(name).eval()
    x = _images(name, 7)
    with torch.no_grad():
        full = model.trace(x)
        for i in (0, 6):
            one = model.trace(x[i : i + 1])
            torch.testing.assert_close(one.logits[0], full.logits[i], rtol=1e-4, atol=1e-5)
            a1 = one.modules[0].tokenizer_attention[0]
            torch.testing.assert_close(
                a1, full.modules[0].tokenizer_attention[i], rtol=1e-4, atol=1e-6
            )


def test_seed_trace_has_class_token() -> None:
    model = create_model("vit_resnet_seed").eval()
    with torch.no_grad():
        tr = model.trace(_images("vit_resnet_seed", 2))
    assert tr.class_token
    (m,) = tr.modules
    assert m.tokenizer_attention.shape == (2, 8, 8, 8)
    assert len(m.token_attention) == 6
    assert m.token_attention[0].shape == (2, 8, 9, 9)
    assert m.projector_attention is None


def test_seed_reference_reproduces_the_defect() -> None:
    ref = SeedViTResNetReference(batch_size=100)
    n = sum(p.numel() for p in ref.parameters())
    per_sample = ref.token_wA.numel() + ref.token_wV.numel()
    assert per_sample == 870_400  # the 0.87M per-sample tokenizer weights of VT_PAPER.md
    assert abs(n - 1.94e6) < 0.02e6
    with pytest.raises(RuntimeError, match="training batch size 100"):
        ref(torch.randn(1, 3, 32, 32))
    fixed = create_model("vit_resnet_seed")
    assert sum(p.numel() for p in fixed.parameters()) == n - per_sample + 64 * 8 + 64 * 128


def test_conv_baselines_equal_torchvision() -> None:
    for depth in ("18", "34"):
        ours = create_model(f"resnet{depth}").eval()
        tv = getattr(torchvision.models, f"resnet{depth}")().eval()
        assert list(ours.state_dict()) == list(tv.state_dict())
        ours.load_state_dict(tv.state_dict())
        ours_cost = count_complexity(ours)
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            tv(torch.zeros(1, 3, 224, 224))
        assert ours_cost.params == sum(p.numel() for p in tv.parameters())
        assert ours_cost.flops == fc.get_total_flops()
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), tv(x))


def test_vt_resnet18_is_close_to_the_paper() -> None:
    cost = count_complexity(create_model("vt_resnet18"))
    assert abs(cost.macs / 1.569e9 - 1) < 0.10
    assert abs(cost.params / 11.7e6 - 1) < 0.10
    r18 = count_complexity(create_model("resnet18"))
    assert cost.macs < r18.macs  # the VT stage is cheaper than the conv stage it replaces
    assert cost.stage("vt").macs * 2 < r18.stage("layer4").macs


def test_stage_costs_add_up() -> None:
    for name in ["vt_resnet20", "vit_resnet_seed", "fpn_r50_vt"]:
        cost = count_complexity(create_model(name))
        assert sum(s.params for s in cost.stages) == cost.params
        assert sum(s.flops for s in cost.stages) == cost.flops


@pytest.mark.slow
def test_fpn_necks() -> None:
    x = torch.randn(1, 3, 128, 128)
    outs = {}
    for neck in ("conv", "vt"):
        model = create_model(f"fpn_r50_{neck}").eval()
        with torch.no_grad():
            feats = model(x)
        assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]
        assert all(f.shape[1] == 256 for f in feats)
        outs[neck] = count_complexity(model, 128).stage("neck").macs
    assert outs["vt"] < outs["conv"]


def test_overrides_and_config_round_trip() -> None:
    model = create_model(
        "vt_resnet20", num_classes=5, tokens=6, transformer="paper", pos_encoding=True
    )
    cfg = model.cfg
    assert cfg.num_classes == 5 and cfg.classes is None and cfg.vt.tokens == 6
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with torch.no_grad():
        tr = model.eval().trace(torch.randn(1, 3, 32, 32))
    assert tr.logits.shape == (1, 5)
    assert tr.modules[1].token_attention[0].shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="unknown config keys"):
        create_model("vt_resnet20", tokenz=3)
    with pytest.raises(ValueError, match="has no VT stage"):
        create_model("resnet20", tokens=3)
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({"name": "x", "bogus": 1})


def test_any_input_resolution() -> None:
    model = create_model("vt_resnet20").eval()
    with torch.no_grad():
        tr = model.trace(torch.randn(1, 3, 48, 40))
    assert tr.modules[0].tokenizer_attention.shape == (1, 16, 24, 20)


def test_flop_count_does_not_depend_on_memory_format_or_attention_kernel() -> None:
    from vt_explorer.model.attention import set_fused_attention

    model = create_model("vt_resnet20")
    ref = count_complexity(model).flops
    model.to(memory_format=torch.channels_last)
    assert count_complexity(model).flops == ref
    assert count_complexity(set_fused_attention(model, False)).flops == ref
    assert all(m.fused is False for m in model.modules() if hasattr(m, "fused"))
