"""The pitch-as-classes head: decoding, its loss, and audibility weights."""

import pytest
import torch

from synthmatch.bridge.core.contract import default
from synthmatch.training.model.heads import AUDIBLE_GAIN, PitchClassHead, make_head
from synthmatch.training.model.models import build_model

C = default()
PITCH = [i for i, p in enumerate(C.params) if p.unit == "semitones"]


def _raw_for(head: PitchClassHead, target: torch.Tensor, confidence: float = 20.0) -> torch.Tensor:
    """Raw outputs that encode `target` exactly: logits peaked on the right class, residual inverted."""
    raw = torch.zeros(len(target), head.n_raw)
    raw[:, : len(head.other)] = torch.logit(target[:, head.other].clamp(1e-4, 1 - 1e-4))
    semis = target[:, head.pitch] * head.span
    cls = torch.round(semis).long()
    base, c = len(head.other), head.n_classes
    for k in range(len(head.pitch)):
        raw[torch.arange(len(target)), base + k * (c + 1) + cls[:, k]] = confidence
        raw[:, base + k * (c + 1) + c] = torch.atanh(2 * (semis[:, k] - cls[:, k]).clamp(-0.499, 0.499))
    return raw


def test_decode_inverts_an_exact_encoding():
    head = PitchClassHead(C)
    assert head.n_classes == 49 and head.n_raw == 13 + 3 * 50
    target = torch.rand(32, 16)
    assert torch.allclose(head.decode(_raw_for(head, target)), target, atol=1e-4)


def test_loss_is_low_for_the_right_answer_and_high_for_a_wrong_pitch():
    head = PitchClassHead(C)
    target = torch.rand(16, 16)
    target[:, [2, 5, 8]] = 1.0  # every oscillator audible
    right = head.loss(_raw_for(head, target), target)
    wrong_t = target.clone()
    wrong_t[:, PITCH] = (wrong_t[:, PITCH] + 5 / 48) % 1.0  # five semitones off
    wrong = head.loss(_raw_for(head, wrong_t), target)
    assert right < 1e-3 < wrong


def test_a_silent_oscillator_has_no_pitch_to_learn():
    head = PitchClassHead(C)
    target = torch.rand(8, 16)
    target[:, 2] = 0.0  # osc1 gain 0
    w = head.weights(target)
    names = list(C.names)
    assert torch.all(w[:, names.index("osc1_pitch")] == 0) and torch.all(w[:, names.index("osc1_position")] == 0)
    assert torch.all(w[:, names.index("filter1_cutoff")] == 1) and torch.all(w[:, names.index("osc1_gain")] == 1)
    target[:, 5] = AUDIBLE_GAIN
    assert torch.all(head.weights(target)[:, names.index("osc2_pitch")] == 1)
    off = target.clone()
    off[:, 0] = (off[:, 0] + 0.3) % 1.0
    assert head.loss(_raw_for(head, off), target) == pytest.approx(
        float(head.loss(_raw_for(head, target), target)), abs=1e-5
    )


@pytest.mark.parametrize(
    "cfg",
    [
        {
            "base": "ast-tiny",
            "depth": 1,
            "dim": 32,
            "heads": 2,
            "head_hidden": 32,
            "frontend": "mel+cqt",
            "head": "pitch-cls",
        },
        {"base": "mlp", "head_hidden": 32, "frontend": "mel+cqt", "head": "pitch-cls"},
        {"base": "cnn", "channels": [4, 8], "head_hidden": 16, "frontend": "mel+cqt", "head": "pitch-cls"},
        {"base": "ast-tiny", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32, "frontend": "mel+cqt"},
        {"base": "ast-tiny-cqt", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32, "salience": True},
    ],
)
def test_every_kind_trains_a_few_steps_on_the_new_front_end(cfg):
    torch.manual_seed(0)
    model = build_model(cfg, C)
    audio, target = torch.randn(8, C.audio.num_samples) * 0.1, torch.rand(8, 16)
    with torch.no_grad():
        views = model.frontend(audio)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model.loss(views, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    out = model.eval()(audio)
    assert out.shape == (8, 16) and bool(((out >= 0) & (out <= 1)).all())


def test_unknown_head_and_frontend_are_refused():
    with pytest.raises(ValueError, match="head"):
        make_head("softmax", C)
    with pytest.raises(ValueError, match="frontend"):
        build_model({"base": "ast-tiny", "frontend": "cqt-only"}, C)
    with pytest.raises(ValueError, match="cqt"):
        build_model({"base": "ast-tiny", "frontend": "mel+cqt", "cqt": {"bins": 3}}, C)


def test_harmonic_salience_points_at_the_played_semitone():
    """One saw oscillator 5 semitones above the note: a plain harmonic sum peaks on class +5."""
    from synthmatch.training.synths.reference import ReferenceSynth

    model = build_model({"base": "ast-tiny-cqt", "salience": True}, C)
    names = list(C.names)
    patch = torch.full((1, 16), 0.5)
    patch[0, names.index("osc1_pitch")] = (5 + 24) / 48
    patch[0, names.index("osc1_position")] = 2 / 3  # saw: every harmonic
    patch[0, [names.index("osc2_gain"), names.index("osc3_gain")]] = 0.0
    patch[0, names.index("filter1_cutoff")] = 1.0  # open
    patch[0, names.index("filter2_cutoff")] = 0.0
    audio = ReferenceSynth(C).render(patch)
    sal = model.salience
    with torch.no_grad():
        sal.weight.zero_()
        sal.weight[:, :, 1] = 1.0  # the centre bin of every harmonic
        views = model.frontend(audio)
        raw = sal(views[1])
    head = model.head_out
    _, logits, _ = head._split(raw)
    assert int(logits[0, 0].argmax()) - 24 == 5
    assert torch.all(raw[:, : len(head.other)] == 0)  # only class logits are touched
