"""Faithfulness checks: token ablation, deletion curves, model randomisation, Fig. 6 stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vt_explorer.analysis import (
    ablated_probabilities,
    deletion_curves,
    entropy_ratio,
    foreground_share,
    randomisation_check,
    randomisation_steps,
    rank_correlation,
)
from vt_explorer.model import create_model


def _model(**kw):
    return create_model("vt_resnet20", **kw).eval()


def test_ablation_with_all_tokens_kept_reproduces_the_prediction() -> None:
    model = _model()
    x = torch.randn(1, 3, 32, 32)
    tr = model.trace(x)
    pred = int(tr.logits[0].argmax())
    keep = torch.ones(1, 16, dtype=torch.bool)
    p = ablated_probabilities(model, tr, keep, pred)
    torch.testing.assert_close(p[0], tr.probabilities[0, pred], atol=1e-5, rtol=1e-5)


def test_ablation_matches_a_plain_recomputation_without_the_token() -> None:
    """Reference: run the last module's transformer on the other tokens by hand."""
    model = _model()
    tr = model.trace(torch.randn(1, 3, 32, 32))
    t = tr.modules[-1].tokens_in[0]
    keep = torch.ones(16, dtype=torch.bool)
    keep[3] = False
    out, _ = model.vt.blocks[-1].transformer(t[keep][None])
    ref = torch.softmax(model.fc(model.head_norm(out.mean(1))), -1)[0, 2]
    got = ablated_probabilities(model, tr, keep[None], 2)[0]
    torch.testing.assert_close(got, ref)


def test_ablating_a_token_the_classifier_ignores_changes_nothing() -> None:
    """Identical tokens (constant tokenizer scores) with a zeroed transformer residual:
    removing any one leaves the average, hence the prediction, unchanged; a model with
    distinct tokens does change."""
    model = _model()
    last = model.vt.blocks[-1]
    with torch.no_grad():
        for p in last.transformer.parameters():
            p.zero_()
    tr = model.trace(torch.randn(1, 3, 32, 32))
    # make the last module's input tokens identical copies of the first one
    tr.modules[-1].tokens_in = tr.modules[-1].tokens_in[:, :1].expand(-1, 16, -1).clone()
    res = deletion_curves(model, tr, random_orders=2)
    np.testing.assert_allclose(res.single, 0, atol=1e-7)
    np.testing.assert_allclose(res.curve, res.curve[0], atol=1e-7)
    # distinct tokens (set, not left to a random model, whose tokens may be near copies)
    live = _model()
    tr2 = live.trace(torch.randn(1, 3, 32, 32))
    g = torch.Generator().manual_seed(0)
    tr2.modules[-1].tokens_in = 3 * torch.randn(tr2.modules[-1].tokens_in.shape, generator=g)
    assert np.abs(deletion_curves(live, tr2, random_orders=2).single).max() > 1e-4


def test_deletion_curve_shapes_order_and_score() -> None:
    model = _model()
    tr = model.trace(torch.randn(1, 3, 32, 32))
    res = deletion_curves(model, tr, random_orders=3)
    assert res.curve.shape == res.random_curve.shape == res.single.shape == (16,)
    assert (np.diff(res.importance[res.order]) <= 0).all()  # most important first
    assert np.isclose(res.curve[0], tr.probabilities[0, res.predicted].item(), atol=1e-5)
    assert np.isclose(res.score, np.mean(res.random_curve - res.curve))


def test_ablation_rejects_conv_models_and_bad_masks() -> None:
    conv = create_model("resnet20").eval()
    tr = conv.trace(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="no visual tokens"):
        deletion_curves(conv, tr)
    model = _model()
    tr = model.trace(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="at least one"):
        ablated_probabilities(model, tr, torch.zeros(1, 16, dtype=torch.bool), 0)


def test_rank_correlation_against_a_plain_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    n = 50
    ref = 1 - 6 * ((ra - rb) ** 2).sum() / (n * (n * n - 1))  # no ties
    assert np.isclose(rank_correlation(a, b), ref)
    assert np.isclose(rank_correlation(a, 3 * a + 1), 1) and np.isclose(rank_correlation(a, -a), -1)


def test_randomised_model_maps_differ_and_untouched_maps_do_not() -> None:
    model = _model()
    x = torch.randn(1, 3, 32, 32)
    res = randomisation_check(model, x)
    steps = randomisation_steps(model)
    assert res.steps == [s for s, _ in steps] and res.correlation.shape == (len(steps), 3)
    assert res.steps[:2] == ["classifier", "vt2.transformer"]
    # the classifier and the last module's transformer come after every map: maps unchanged
    np.testing.assert_allclose(res.correlation[:2], 1.0)
    # once the last tokenizer is random its maps no longer match
    k = res.steps.index("vt2.tokenizer")
    assert res.correlation[k, 2] < 0.9 and np.allclose(res.correlation[k, :2], 1.0)
    # with the whole trunk random, no module's maps keep their ranking
    assert (np.abs(res.correlation[-1]) < 0.9).all()


def test_foreground_share_and_entropy_ratio() -> None:
    maps = np.zeros((2, 4, 4))
    maps[0, :2, :2] = 0.25  # inside the mask
    maps[1] = 1 / 16  # uniform
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    np.testing.assert_allclose(foreground_share(maps, mask), [1.0, 0.25], atol=1e-6)
    r = entropy_ratio(maps)
    assert np.isclose(r[1], 1.0) and np.isclose(r[0], np.log(4) / np.log(16))


def test_randomisation_is_safe_to_run_concurrently_on_one_shared_model() -> None:
    """Four threads check one shared model at once (as the app's visitors do): every result
    equals the single-threaded one, the model's weights and torch's global RNG are unchanged,
    and another seed gives another answer (the seed is used, and only the seed)."""
    from concurrent.futures import ThreadPoolExecutor

    model = _model()
    x = torch.randn(1, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    alone = randomisation_check(model, x, seed=3).correlation
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: randomisation_check(model, x, seed=3).correlation, range(4)))
        traces = list(pool.map(lambda _: model.trace(x).logits, range(4)))
    for r in runs:
        np.testing.assert_array_equal(r, alone)
    for t in traces:
        torch.testing.assert_close(t, traces[0])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    other = randomisation_check(model, x, seed=4).correlation
    assert not np.array_equal(other[-1], alone[-1])
