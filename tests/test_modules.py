"""Each module against a direct reference computation of the paper's equation."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vt_explorer.model import (
    FilterTokenizer,
    Projector,
    RecurrentTokenizer,
    TokenPositionEncoding,
    TokenTransformer,
    TokenTransformerLayer,
    VTConfig,
    VTModule,
)

B, C, H, W, L, CT = 3, 8, 5, 6, 4, 12


def flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> X in R^{B x HW x C}, the paper's layout."""
    return x.flatten(2).transpose(1, 2)


def test_filter_tokenizer_matches_eq1() -> None:
    tok = FilterTokenizer(C, L, CT)
    x = torch.randn(B, C, H, W)
    tokens, attn = tok(x)
    X = flat(x)
    W_A = tok.to_scores.weight.T  # C x L
    W_V = tok.to_value.weight.T  # C x C_T
    A = torch.softmax(X @ W_A, dim=1)  # softmax over HW
    T = A.transpose(1, 2) @ X @ W_V
    assert tokens.shape == (B, L, CT)
    assert attn.shape == (B, L, H, W)
    torch.testing.assert_close(tokens, T)
    torch.testing.assert_close(attn, A.transpose(1, 2).reshape(B, L, H, W))


def test_filter_tokenizer_without_value_projection_keeps_width() -> None:
    tok = FilterTokenizer(C, L)
    tokens, _ = tok(torch.randn(2, C, H, W))
    assert tokens.shape == (2, L, C)
    assert isinstance(tok.to_value, torch.nn.Identity)


def test_tokenizer_maps_sum_to_one_over_pixels() -> None:
    _, attn = FilterTokenizer(C, L, CT)(torch.randn(B, C, H, W) * 5)
    torch.testing.assert_close(attn.sum(dim=(-1, -2)), torch.ones(B, L))
    assert (attn >= 0).all()


def test_recurrent_tokenizer_matches_eq2() -> None:
    tok = RecurrentTokenizer(C, CT, CT)
    x = torch.randn(B, C, H, W)
    t_in = torch.randn(B, L, CT)
    tokens, attn = tok(x, t_in)
    X = flat(x)
    W_R = t_in @ tok.to_filters.weight.T  # B x L x C
    A = torch.softmax(X @ W_R.transpose(1, 2), dim=1)
    T = A.transpose(1, 2) @ X @ tok.to_value.weight.T
    torch.testing.assert_close(tokens, T)
    torch.testing.assert_close(attn.sum(dim=(-1, -2)), torch.ones(B, L))


def test_recurrent_tokenizer_norm_in_normalises_incoming_tokens_first() -> None:
    """norm_in: W_R = LN(T_in) W_{T->R}; scaling T_in then leaves the maps unchanged."""
    tok = RecurrentTokenizer(C, CT, CT, norm_in=True)
    x = torch.randn(B, C, H, W)
    t_in = torch.randn(B, L, CT)
    tokens, attn = tok(x, t_in)
    mu, var = t_in.mean(-1, keepdim=True), t_in.var(-1, unbiased=False, keepdim=True)
    W_R = ((t_in - mu) / torch.sqrt(var + 1e-5)) @ tok.to_filters.weight.T
    A = torch.softmax(flat(x) @ W_R.transpose(1, 2), dim=1)
    torch.testing.assert_close(attn.flatten(2), A.transpose(1, 2))
    torch.testing.assert_close(tokens, A.transpose(1, 2) @ flat(x) @ tok.to_value.weight.T)
    _, attn_big = tok(x, 50 * t_in)
    torch.testing.assert_close(attn_big, attn, atol=1e-4, rtol=1e-3)
    _, attn_plain = RecurrentTokenizer(C, CT, CT)(x, 50 * t_in)
    assert attn_plain.amax((-1, -2)).mean() > attn.amax((-1, -2)).mean()  # saturates


def test_recurrent_tokens_depend_on_incoming_tokens() -> None:
    tok = RecurrentTokenizer(C, CT, CT)
    x = torch.randn(B, C, H, W)
    t1, a1 = tok(x, torch.randn(B, L, CT))
    t2, a2 = tok(x, torch.randn(B, L, CT))
    assert not torch.allclose(a1, a2)
    assert not torch.allclose(t1, t2)


def test_recurrent_tokenizer_requires_tokens() -> None:
    with pytest.raises(ValueError, match="previous module's tokens"):
        RecurrentTokenizer(C, CT, CT)(torch.randn(1, C, H, W))


def test_filter_tokenizer_rejects_wrong_channels() -> None:
    with pytest.raises(RuntimeError):
        FilterTokenizer(C, L, CT)(torch.randn(1, C + 1, H, W))


def test_paper_transformer_matches_eq3_eq4() -> None:
    tr = TokenTransformer(CT, form="paper")
    t = torch.randn(B, L, CT)
    out, attns = tr(t, need_weights=True)
    layer = tr.layers[0]
    K, Q = layer.attn.to_q.weight.T, layer.attn.to_k.weight.T
    F1, F2 = layer.mlp[0].weight.T, layer.mlp[2].weight.T
    att = torch.softmax((t @ K) @ (t @ Q).transpose(1, 2), dim=-1)
    t_mid = t + att @ t  # eq. 3
    ref = t_mid + torch.relu(t_mid @ F1) @ F2  # eq. 4
    torch.testing.assert_close(out, ref)
    assert len(attns) == 1 and attns[0].shape == (B, 1, L, L)
    torch.testing.assert_close(attns[0][:, 0], att)
    assert layer.mlp[0].bias is None and isinstance(layer.norm1, torch.nn.Identity)


def test_multihead_layer_matches_reference() -> None:
    heads, qk = 3, 6
    layer = TokenTransformerLayer(CT, heads=heads, qk_dim=qk, mlp_dim=20, value_proj=True)
    t = torch.randn(B, L, CT)
    out, attn = layer(t, need_weights=True)
    a = layer.attn
    h = layer.norm1(t)
    q, k, v = a.to_q(h), a.to_k(h), a.to_v(h)
    dq, dv = qk // heads, CT // heads
    outs, maps = [], []
    for i in range(heads):
        qi, ki = q[..., i * dq : (i + 1) * dq], k[..., i * dq : (i + 1) * dq]
        m = torch.softmax(qi @ ki.transpose(1, 2) / math.sqrt(dq), dim=-1)
        maps.append(m)
        outs.append(m @ v[..., i * dv : (i + 1) * dv])
    t1 = t + a.to_out(torch.cat(outs, dim=-1))
    ref = t1 + layer.mlp(layer.norm2(t1))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(attn, torch.stack(maps, dim=1))
    torch.testing.assert_close(attn.sum(-1), torch.ones(B, heads, L))


@pytest.mark.parametrize("form", ["mhsa", "paper"])
def test_fused_attention_equals_explicit(form: str) -> None:
    tr = TokenTransformer(CT, depth=2, heads=4, qk_dim=8, form=form)
    t = torch.randn(B, L, CT)
    fused, none = tr(t, need_weights=False)
    explicit, maps = tr(t, need_weights=True)
    assert none == []
    assert len(maps) == 2
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_heads_must_divide_widths() -> None:
    with pytest.raises(ValueError, match="heads=5"):
        TokenTransformer(CT, heads=5, qk_dim=10)


def test_unknown_transformer_form() -> None:
    with pytest.raises(ValueError, match="unknown transformer form"):
        TokenTransformer(CT, form="graph")


@pytest.mark.parametrize("scaled", [True, False])
def test_projector_matches_eq5(scaled: bool) -> None:
    proj = Projector(C, CT, attn_dim=7, scaled=scaled)
    x = torch.randn(B, C, H, W)
    t = torch.randn(B, L, CT)
    out, attn = proj(x, t, need_weights=True)
    X = flat(x)
    s = 1 / math.sqrt(7) if scaled else 1.0
    P = torch.softmax((X @ proj.to_q.weight.T) @ (t @ proj.to_k.weight.T).transpose(1, 2) * s, -1)
    ref = X + P @ t @ proj.to_v.weight.T
    torch.testing.assert_close(out, ref.transpose(1, 2).reshape(B, C, H, W))
    assert attn.shape == (B, L, H, W)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(B, H, W))  # softmax over L per pixel
    fused, none = proj(x, t, need_weights=False)
    assert none is None
    torch.testing.assert_close(fused, out, rtol=1e-5, atol=1e-5)


def test_position_encoding_reference_and_resolution_independence() -> None:
    pe = TokenPositionEncoding(CT, grid=4, pos_dim=5)
    t = torch.randn(B, L, CT)
    for hw in [(H, W), (16, 16), (3, 3)]:
        attn = torch.softmax(torch.randn(B, L, hw[0] * hw[1]), -1).reshape(B, L, *hw)
        out = pe(t, attn)
        assert out.shape == (B, L, CT)
        maps = F.interpolate(
            attn * hw[0] * hw[1], size=(4, 4), mode="bilinear", align_corners=False
        )
        p = maps.flatten(2) @ pe.to_pos.weight.T
        torch.testing.assert_close(out, torch.cat([t, p], -1) @ pe.fuse.weight.T)
    # uniform maps encode identically whatever the resolution
    u1 = torch.full((1, L, 4, 4), 1 / 16)
    u2 = torch.full((1, L, 32, 32), 1 / 1024)
    torch.testing.assert_close(pe(t[:1], u1), pe(t[:1], u2))


@pytest.mark.parametrize("kind", ["filter", "recurrent"])
def test_vt_module_trace_shapes(kind: str) -> None:
    cfg = VTConfig(tokens=L, token_dim=CT, heads=2, depth=2, pos_encoding=True, pos_grid=4)
    mod = VTModule(C, cfg, kind)
    x = torch.randn(B, C, H, W)
    t_in = torch.randn(B, L, CT) if kind == "recurrent" else None
    x_out, tokens, trace = mod(x, t_in, need_weights=True)
    assert x_out.shape == x.shape and tokens.shape == (B, L, CT)
    assert trace.kind == kind and trace.num_tokens == L and trace.feature_size == (H, W)
    assert [a.shape for a in trace.token_attention] == [(B, 2, L, L)] * 2
    assert trace.projector_attention.shape == (B, L, H, W)
    x_fused, t_fused, none = mod(x, t_in, need_weights=False)
    assert none is None
    torch.testing.assert_close(x_fused, x_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t_fused, tokens, rtol=1e-5, atol=1e-5)


def test_layer_scale_starts_every_residual_branch_at_its_gain() -> None:
    """LayerScale (VTConfig.layer_scale, not in the paper): at gain 0 the transformer layer
    and the projector are the identity, and the gain is what training moves first."""
    from vt_explorer.model.projector import Projector
    from vt_explorer.model.transformer import TokenTransformer

    torch.manual_seed(0)
    t = torch.randn(2, 5, 16)
    x = torch.randn(2, 16, 4, 4)
    for gain in (0.0, 0.5):
        tr = TokenTransformer(16, heads=2, qk_dim=8, mlp_dim=8, layer_scale=gain)
        proj = Projector(16, 16, 8, layer_scale=gain)
        out, _ = tr(t)
        xo, _ = proj(x, t)
        if gain == 0:
            assert torch.equal(out, t) and torch.equal(xo, x)
        else:  # the branch scaled by the gain: half of the plain layer's update
            plain = TokenTransformer(16, heads=2, qk_dim=8, mlp_dim=8)
            plain.load_state_dict({k: v for k, v in tr.state_dict().items() if "scale" not in k})
            layer, ref = tr.layers[0], plain.layers[0]
            a_ref, _ = ref.attn(ref.norm1(t))
            torch.testing.assert_close(layer.scale1(layer.attn(layer.norm1(t))[0]), 0.5 * a_ref)
    out.sum().backward()
    assert tr.layers[0].scale1.gamma.grad is not None


def test_scaled_recurrent_tokenizer_divides_eq2_scores_by_sqrt_c() -> None:
    """``recurrent_scaled`` (not in the paper): softmax_HW(X W_R^T / sqrt(C)), against a plain
    reference computation of eq. 2 with the same weights."""
    from vt_explorer.model.tokenizer import RecurrentTokenizer

    torch.manual_seed(0)
    tok = RecurrentTokenizer(64, 16, 64, norm_in=False, scaled=True)
    x, t_in = torch.randn(2, 64, 5, 5), torch.randn(2, 4, 16)
    tokens, attn = tok(x, t_in)
    xf = x.flatten(2).transpose(1, 2)  # b n c
    w_r = t_in @ tok.to_filters.weight.T  # b l c
    a = torch.softmax((xf @ w_r.transpose(1, 2)) / math.sqrt(64), dim=1)  # b n l, over pixels
    torch.testing.assert_close(attn.flatten(2), a.transpose(1, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokens, a.transpose(1, 2) @ xf, atol=1e-5, rtol=1e-5)


def test_a_tokenizer_kind_registered_once_is_built_validated_and_named(monkeypatch) -> None:
    """Registering a kind in tokenizer.TOKENIZERS is the one edit a new tokenizer needs: a
    config naming it builds (VTModule), its traces name it, model cards accept it; an
    unregistered kind is refused at build and at card check, naming the known kinds."""
    import dataclasses

    from vt_explorer.cardcheck import check_config
    from vt_explorer.model import create_model, get_config
    from vt_explorer.model import tokenizer as tok

    class Halves(nn.Module):  # tokens_in ignored: the filter tokenizer under another name
        def __init__(self, c, cfg, dim, pos):
            super().__init__()
            self.inner = tok.FilterTokenizer(c, cfg.tokens, dim, pos)

        def forward(self, x, tokens_in=None):
            return self.inner(x)

    base = get_config("vt_resnet20")
    cfg = base.replace(vt=dataclasses.replace(base.vt, variant="halves"))
    with pytest.raises(ValueError, match="unknown tokenizer kind 'halves' \\(known: filter"):
        create_model(cfg)
    with pytest.raises(ValueError, match="variant"):
        check_config(json.loads(json.dumps(cfg.to_dict())))
    monkeypatch.setitem(tok.TOKENIZERS, "halves", Halves)
    torch.manual_seed(0)
    model = create_model(cfg).eval()
    trace = model.trace(torch.randn(2, 3, 32, 32))
    assert [m.kind for m in trace.modules] == ["filter"] + ["halves"] * (cfg.vt.num_modules - 1)
    assert trace.logits.shape == (2, cfg.num_classes)
    check_config(json.loads(json.dumps(cfg.to_dict())))  # the card schema accepts it now
