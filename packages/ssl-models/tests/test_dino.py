import copy
import math

import pytest
import torch

from ssl_models import DINO, DINOHead, DINOLoss, SmallCNN, build_method


def _softmax(row, t):
    m = max(v / t for v in row)
    e = [math.exp(v / t - m) for v in row]
    s = sum(e)
    return [x / s for x in e]


def _reference_loss(teacher, student, center, tau_t, tau_s):
    """DINO loss by plain loops over Python floats (arXiv:2104.14294, Algorithm 1)."""
    teacher = [[list(map(float, r)) for r in t] for t in teacher]
    student = [[list(map(float, r)) for r in s] for s in student]
    c = list(map(float, center))
    total, terms = 0.0, 0
    for i, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == i:
                continue
            rows = []
            for tr, sr in zip(t, s):
                p = _softmax([a - b for a, b in zip(tr, c)], tau_t)
                q = _softmax(sr, tau_s)
                rows.append(-sum(pk * math.log(qk) for pk, qk in zip(p, q)))
            total += sum(rows) / len(rows)
            terms += 1
    return total / terms


def _outputs(seed, g=2, v=5, b=3, k=7, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    teacher = [scale * torch.randn(b, k, generator=gen) for _ in range(g)]
    student = [scale * torch.randn(b, k, generator=gen) for _ in range(v)]
    return teacher, student


def test_loss_matches_loop_reference_with_centre_and_warmup():
    teacher, student = _outputs(0)
    loss = DINOLoss(7, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=10)
    center = torch.linspace(-0.5, 0.5, 7).unsqueeze(0)
    loss.center.copy_(center)
    for step in (0, 4, 10, 25):
        c = loss.center[0].clone()
        expected = _reference_loss(teacher, student, c, loss.teacher_temperature(step), 0.1)
        assert loss(teacher, student, step=step).item() == pytest.approx(expected, abs=1e-5)


def test_same_view_pairs_are_skipped():
    # Student view 0 equals teacher view 0 and student view 1 equals teacher view 1: were the
    # same-view pairs counted, changing the student's view 0 would move the (0, 0) term too.
    teacher, student = _outputs(1, v=2)
    loss = DINOLoss(7)
    expected = _reference_loss(teacher, student, torch.zeros(7), 0.04, 0.1)
    assert loss(teacher, student).item() == pytest.approx(expected, abs=1e-5)
    # With 2 views there are exactly 2 terms: (t0, s1) and (t1, s0).
    manual = 0.0
    for i, v in ((0, 1), (1, 0)):
        p = torch.softmax(teacher[i] / 0.04, -1)
        manual += (-(p * torch.log_softmax(student[v] / 0.1, -1)).sum(-1)).mean().item()
    assert expected == pytest.approx(manual / 2, abs=1e-5)


def test_centre_follows_ema_formula_exactly():
    teacher, student = _outputs(2, scale=3.0)
    loss = DINOLoss(7, center_momentum=0.9)
    c0 = torch.randn(1, 7, generator=torch.Generator().manual_seed(3))
    loss.center.copy_(c0)
    loss(teacher, student)
    rows = torch.cat(teacher).double()
    expected = 0.9 * c0.double() + 0.1 * rows.mean(dim=0, keepdim=True)
    torch.testing.assert_close(loss.center.double(), expected, atol=1e-6, rtol=0)
    # A second batch composes: c2 = 0.9 c1 + 0.1 mean2.
    teacher2, _ = _outputs(4, scale=3.0)
    c1 = loss.center.double().clone()
    loss(teacher2, student)
    expected2 = 0.9 * c1 + 0.1 * torch.cat(teacher2).double().mean(dim=0, keepdim=True)
    torch.testing.assert_close(loss.center.double(), expected2, atol=1e-6, rtol=0)


def test_centre_is_a_buffer_that_survives_dtype_and_state_dict():
    teacher, student = _outputs(5)
    loss = DINOLoss(7).to(torch.float64)
    assert loss.center.dtype == torch.float64
    assert "center" in loss.state_dict()
    t64 = [t.double() for t in teacher]
    loss(t64, [s.double() for s in student])
    expected = 0.1 * torch.cat(t64).mean(dim=0, keepdim=True)  # from c = 0
    torch.testing.assert_close(loss.center, expected, atol=1e-15, rtol=0)

    restored = DINOLoss(7).to(torch.float64)
    restored.load_state_dict(copy.deepcopy(loss.state_dict()))
    assert torch.equal(restored.center, loss.center)
    assert restored(t64, student).item() == loss(t64, student).item()


def test_teacher_temperature_schedule():
    loss = DINOLoss(4, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=100)
    assert loss.teacher_temperature(0) == pytest.approx(0.04)
    assert loss.teacher_temperature(50) == pytest.approx(0.055)
    assert loss.teacher_temperature(99) == pytest.approx(0.04 + 0.03 * 0.99)
    assert loss.teacher_temperature(100) == pytest.approx(0.07)
    assert loss.teacher_temperature(10_000) == pytest.approx(0.07)
    assert DINOLoss(4, teacher_temp=0.06).teacher_temperature(0) == pytest.approx(0.06)


def test_uniform_outputs_give_log_k():
    k = 11
    zeros = [torch.zeros(4, k) for _ in range(2)]
    assert DINOLoss(k)(zeros, [*zeros, torch.zeros(4, k)]).item() == pytest.approx(
        math.log(k), abs=1e-6
    )


def test_centring_turns_a_collapsed_teacher_into_a_uniform_target():
    # The teacher outputs one constant vector (collapse). Once the centre has absorbed it
    # (momentum 0: one update), the target is uniform, so the loss is the cross-entropy of the
    # uniform distribution against the student: ln K for a uniform student.
    k = 6
    const = torch.tensor([[4.0, -1.0, 0.5, 2.0, 0.0, 3.0]]).expand(5, k)
    loss = DINOLoss(k, center_momentum=0.0)
    teacher = [const.clone(), const.clone()]
    loss(teacher, [torch.zeros(5, k)] * 3)
    torch.testing.assert_close(loss.center, const[:1])
    assert loss(teacher, [torch.zeros(5, k)] * 3).item() == pytest.approx(math.log(k), abs=1e-6)
    s = torch.randn(5, k, generator=torch.Generator().manual_seed(0))
    expected = (-torch.log_softmax(s / 0.1, -1).mean(-1)).mean().item()
    assert loss(teacher, [s, s, s]).item() == pytest.approx(expected, abs=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="center_momentum"):
        DINOLoss(4, center_momentum=1.0)
    with pytest.raises(ValueError, match="temperatures"):
        DINOLoss(4, student_temp=0.0)
    with pytest.raises(ValueError, match=r"student_out\[1\] must be \(B, 4\)"):
        DINOLoss(4)([torch.zeros(2, 4)], [torch.zeros(2, 4), torch.zeros(2, 5)])


def test_head_shapes_bottleneck_and_fixed_gain():
    torch.manual_seed(0)
    head = DINOHead(16, output_dim=32, hidden_dim=24, bottleneck_dim=8)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 24), (24, 24), (24, 8)]
    gain = head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad and torch.equal(gain, torch.ones_like(gain))
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 32)
    # g = 1 and a unit bottleneck: every logit is a cosine, so |logit| <= 1, and it equals
    # normalize(mlp(x)) @ normalize(V).T.
    x = torch.randn(5, 16)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    v = head.last_layer.parametrizations.weight.original1
    torch.testing.assert_close(head(x), z @ torch.nn.functional.normalize(v, dim=1).T)
    assert head(x).abs().max() <= 1.0 + 1e-6
    free = DINOHead(16, output_dim=32, hidden_dim=24, bottleneck_dim=8, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad


def _tiny_dino(**kwargs):
    torch.manual_seed(0)
    enc = SmallCNN(in_channels=1, widths=(4, 8))
    args = dict(output_dim=16, hidden_dim=12, bottleneck_dim=6)
    args.update(kwargs)
    return build_method({"name": "dino", **args}, enc)


def _views(b=4, n_local=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 1, 16, 16, generator=g) for _ in range(2)] + [
        torch.randn(b, 1, 8, 8, generator=g) for _ in range(n_local)
    ]


def test_multicrop_loss_equals_loss_on_manually_computed_outputs():
    m = _tiny_dino()
    assert isinstance(m, DINO)
    views = _views()
    reference = copy.deepcopy(m)
    loss = m.training_loss(views)
    with torch.no_grad():
        t = reference.teacher_head(reference.teacher_encoder(torch.cat(views[:2])))
        s_glob = reference.head(reference.encoder(torch.cat(views[:2])))
        s_loc = reference.head(reference.encoder(torch.cat(views[2:])))
    teacher = list(t.split(4))
    student = list(s_glob.split(4)) + list(s_loc.split(4))
    expected = _reference_loss(teacher, student, reference.criterion.center[0], 0.04, 0.1)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    # Only global views reach the teacher (centre = 0.1 * mean of the 2B teacher rows).
    torch.testing.assert_close(m.criterion.center, 0.1 * t.mean(0, keepdim=True))


def test_collapse_monitor_terms_equal_loop_references():
    teacher, student = _outputs(4, scale=3.0)
    center = torch.randn(1, 7, generator=torch.Generator().manual_seed(5))
    criterion = DINOLoss(7, teacher_temp=0.5, student_temp=0.2)
    criterion.center.copy_(center)
    loss = criterion(teacher, student).item()
    targets = [_softmax([a - b for a, b in zip(row.tolist(), center[0].tolist())], 0.5)
               for t in teacher for row in t]  # fmt: skip
    entropies = [-sum(p * math.log(p) for p in row) for row in targets]
    mean = [sum(col) / len(targets) for col in zip(*targets)]
    terms = {k: v.item() for k, v in criterion.last_terms.items()}
    assert terms["teacher_entropy"] == pytest.approx(sum(entropies) / len(entropies), abs=1e-6)
    assert terms["teacher_student_kl"] == pytest.approx(loss - terms["teacher_entropy"], abs=1e-6)
    assert terms["teacher_marginal_entropy"] == pytest.approx(
        -sum(p * math.log(p) for p in mean), abs=1e-6
    )


def test_collapse_warning_names_uniform_and_one_prototype_collapse():
    healthy = _tiny_dino()
    assert healthy.collapse_warning() is None and healthy.training_diagnostics() == {}
    healthy.training_loss(_views(b=8))
    assert set(healthy.training_diagnostics()) == {
        "teacher_entropy", "teacher_student_kl", "teacher_marginal_entropy"
    }  # fmt: skip
    assert healthy.collapse_warning() is None
    # Temperatures of 1000 flatten every target and prediction: uniform collapse (KL ~ 0).
    flat = _tiny_dino(teacher_temp=1000.0, warmup_teacher_temp=1000.0, student_temp=1000.0)
    flat.training_loss(_views(b=8))
    assert flat.training_diagnostics()["teacher_entropy"] == pytest.approx(math.log(16), abs=1e-3)
    assert flat.training_diagnostics()["teacher_student_kl"] == pytest.approx(0, abs=1e-4)
    assert "uniform collapse" in flat.collapse_warning()
    # Uniform targets the student does not match yet (the early phase of a healthy run): no
    # warning.
    early = _tiny_dino(teacher_temp=1000.0, warmup_teacher_temp=1000.0)
    early.training_loss(_views(b=8))
    assert early.training_diagnostics()["teacher_student_kl"] > 0.01 * math.log(16)
    assert early.collapse_warning() is None
    # One image in both global views and near-zero temperatures: every target and prediction is
    # the same one-hot.
    sharp = _tiny_dino(teacher_temp=1e-4, warmup_teacher_temp=1e-4, student_temp=1e-4)
    image = _views()[0][:1].expand(8, -1, -1, -1)
    sharp.training_loss([image, image])
    assert sharp.training_diagnostics()["teacher_marginal_entropy"] == pytest.approx(0, abs=1e-6)
    assert "collapse to one prototype" in sharp.collapse_warning()


def test_any_number_of_local_views_and_too_few_views():
    m = _tiny_dino()
    for n_local in (0, 1, 6):
        assert torch.isfinite(m.training_loss(_views(n_local=n_local)))
    with pytest.raises(ValueError, match="needs 2 global views"):
        m.training_loss(_views()[:1])
    with pytest.raises(ValueError, match="same shape"):
        v = _views()
        m.training_loss([v[0], v[2]])


def test_teacher_gets_no_gradient_and_follows_ema():
    m = _tiny_dino(momentum=0.9)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m.training_loss(_views()).backward()
    assert all(p.grad is None for p in m.teacher_encoder.parameters())
    assert all(p.grad is None for p in m.teacher_head.parameters())
    assert all(not p.requires_grad for p in m.teacher_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
    before = [p.detach().clone() for p in m.teacher_encoder.parameters()]
    opt.step()
    student = [p.detach().clone() for p in m.encoder.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, student))
    m.after_optimizer_step(1, 10)
    lam = m.momentum_at(1, 10)
    assert lam == pytest.approx(0.9)  # k = 0: the base momentum
    for t_old, s, t_new in zip(before, student, m.teacher_encoder.parameters()):
        torch.testing.assert_close(t_new, lam * t_old + (1 - lam) * s, atol=1e-6, rtol=0)
    assert int(m.global_step) == 1


def test_momentum_schedule_values():
    m = _tiny_dino(momentum=0.996)
    assert m.momentum_at(1, 100) == pytest.approx(0.996)
    assert m.momentum_at(51, 100) == pytest.approx(0.998)  # k = 50: cos term is 1/2
    k = 99
    expected = 1.0 - 0.004 * (math.cos(math.pi * k / 100) + 1) / 2
    assert m.momentum_at(100, 100) == pytest.approx(expected)
    with pytest.raises(ValueError, match="step"):
        m.momentum_at(0, 100)


def test_temperature_warmup_is_driven_by_steps_and_saved():
    m = _tiny_dino(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=10)
    m.after_optimizer_step(5, 100)
    assert "global_step" in m.state_dict()
    views = _views()
    reference = copy.deepcopy(m)
    loss = m.training_loss(views)
    with torch.no_grad():
        t = reference.teacher_head(reference.teacher_encoder(torch.cat(views[:2])))
        sg = reference.head(reference.encoder(torch.cat(views[:2])))
        sl = reference.head(reference.encoder(torch.cat(views[2:])))
    expected = _reference_loss(
        list(t.split(4)), list(sg.split(4)) + list(sl.split(4)), torch.zeros(16), 0.055, 0.1
    )
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    restored = _tiny_dino(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=10)
    restored.load_state_dict(m.state_dict())
    assert int(restored.global_step) == 5


def test_embed_is_student_encoder_and_export_prefix():
    m = _tiny_dino().eval()
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(m.embed(x), m.encoder(x))
    keys = {k for k in m.state_dict() if k.startswith("encoder.")}
    assert keys == {f"encoder.{k}" for k in m.encoder.state_dict()}


def test_centre_is_averaged_over_ranks(monkeypatch):
    # Simulated 2-rank run: this rank holds `rows`, the other rank `other`; all_reduce sums the
    # per-rank row sums. The centre must be the EMA of the mean over both ranks' 2 * 4 rows.
    import ssl_models.losses.dino_loss as dino_loss_module

    rows = torch.arange(12.0).reshape(4, 3)
    other = -3.0 * torch.ones(4, 3)

    def fake_all_reduce(t):
        t.add_(other.sum(dim=0, keepdim=True))

    monkeypatch.setattr(dino_loss_module, "is_distributed", lambda: True)
    monkeypatch.setattr(dino_loss_module, "world_size", lambda: 2)
    monkeypatch.setattr(dino_loss_module.dist, "all_reduce", fake_all_reduce)
    loss = DINOLoss(3, center_momentum=0.5)
    loss([rows[:2], rows[2:]], [rows[:2], rows[2:]])
    expected = 0.5 * torch.cat([rows, other]).mean(dim=0, keepdim=True)
    torch.testing.assert_close(loss.center, expected)


def test_last_layer_frozen_for_the_first_steps_only():
    """freeze_last_layer_steps=2: steps 1-2 leave the head's last layer untouched (AdamW with
    weight decay would otherwise move it even at zero gradient), step 3 updates it; the rest of
    the student moves from step 1."""
    torch.manual_seed(0)
    model = DINO(SmallCNN(in_channels=1, widths=(8, 16)), output_dim=32, hidden_dim=16,
                 bottleneck_dim=8, freeze_last_layer_steps=2)  # fmt: skip
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                            weight_decay=0.04)  # fmt: skip
    last = model.head.last_layer.parametrizations.weight.original1
    first_conv = next(model.encoder.parameters())
    gen = torch.Generator().manual_seed(1)
    for step in (1, 2, 3):
        views = [torch.randn(4, 1, 16, 16, generator=gen) for _ in range(2)]
        before_last, before_conv = last.detach().clone(), first_conv.detach().clone()
        opt.zero_grad(set_to_none=True)
        model.training_loss(views).backward()
        assert last.grad is not None and last.grad.abs().sum() > 0
        model.before_optimizer_step(step, 10)
        opt.step()
        model.after_optimizer_step(step, 10)
        assert not torch.equal(first_conv, before_conv)
        if step <= 2:
            assert last.grad is None
            assert torch.equal(last, before_last)
        else:
            assert (last - before_last).abs().max() > 1e-6


def test_freeze_last_layer_steps_rejects_negative():
    with pytest.raises(ValueError, match="freeze_last_layer_steps"):
        DINO(SmallCNN(in_channels=1, widths=(8, 16)), output_dim=8, hidden_dim=8,
             bottleneck_dim=4, freeze_last_layer_steps=-1)  # fmt: skip
