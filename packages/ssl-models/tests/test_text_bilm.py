import numpy as np
import pytest
import torch

from ssl_models.text import IGNORE_INDEX, BidirectionalLM, RecurrentEncoder, bilm_targets

VOCAB = 60


def _loop_targets(ids, mask):
    fwd = [[IGNORE_INDEX] * len(r) for r in ids]
    bwd = [[IGNORE_INDEX] * len(r) for r in ids]
    for b in range(len(ids)):
        for t in range(len(ids[b])):
            if not mask[b][t]:
                continue
            if t + 1 < len(ids[b]) and mask[b][t + 1]:
                fwd[b][t] = ids[b][t + 1]
            if t > 0 and mask[b][t - 1]:
                bwd[b][t] = ids[b][t - 1]
    return fwd, bwd


def test_bilm_targets_match_loop_reference_with_both_padding_sides():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 2 + [1] * 5])
    fwd, bwd = bilm_targets(ids, mask)
    ref_f, ref_b = _loop_targets(ids.tolist(), mask.tolist())
    assert fwd.tolist() == ref_f and bwd.tolist() == ref_b


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bilm_loss_is_sum_of_direction_means(cell):
    torch.manual_seed(0)
    method = BidirectionalLM(RecurrentEncoder(VOCAB, 16, 24, num_layers=2, cell=cell)).eval()
    ids = torch.randint(1, VOCAB, (2, 6))
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        loss = method.training_loss(batch).item()
        fwd, bwd = method.encoder.forward_directions(ids, mask)
        w = method.softmax.weight.double().numpy()
        bias = method.softmax.bias.double().numpy()
    ref_f, ref_b = _loop_targets(ids.tolist(), mask.tolist())
    means = []
    for states, targets in ((fwd, ref_f), (bwd, ref_b)):
        nll = [
            -_log_softmax(states[b, t].double().numpy() @ w.T + bias)[targets[b][t]]
            for b in range(2)
            for t in range(6)
            if targets[b][t] != IGNORE_INDEX
        ]
        assert len(nll) == 5 + 3
        means.append(np.mean(nll))
    assert loss == pytest.approx(means[0] + means[1], rel=1e-5)
    assert method.num_loss_tokens(batch) == 8


def test_bilm_needs_a_bidirectional_encoder():
    with pytest.raises(TypeError, match="bidirectional"):
        BidirectionalLM(RecurrentEncoder(VOCAB, 8, 8, bidirectional=False))
