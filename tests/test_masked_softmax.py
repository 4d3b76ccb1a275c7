"""The one masked log-softmax of the AR and VAE decoders (molgen.nn.sampling)."""
import torch

from molgen.models import autoregressive, vae
from molgen.nn.sampling import masked_log_softmax


def test_both_models_use_the_same_masked_log_softmax():
    assert autoregressive._masked_log_softmax is masked_log_softmax
    assert vae._masked_log_softmax is masked_log_softmax


def test_allowed_entries_are_normalised_and_the_rest_impossible():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    allowed = torch.tensor([[True, False, True], [True, True, True]])
    out = masked_log_softmax(logits, allowed)
    assert out[0, 1] == float("-inf")
    torch.testing.assert_close(out[0, [0, 2]], torch.log_softmax(logits[0, [0, 2]], -1))
    torch.testing.assert_close(out[1], torch.log_softmax(logits[1], -1))


def test_a_row_with_nothing_allowed_is_impossible_not_nan_and_has_zero_gradient():
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    allowed = torch.tensor([[False, False], [True, False]])
    out = masked_log_softmax(logits, allowed)
    assert not out.isnan().any()
    assert torch.isinf(out[0]).all() and (out[0] < 0).all()  # probability 0 for every choice
    assert out[1, 0] == 0.0
    # a caller that selects the impossible row away (padding, finished molecules) gets finite gradients
    picked = torch.where(torch.tensor([False, True]), out[:, 0], torch.zeros(2))
    picked.sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[0] == 0).all()
