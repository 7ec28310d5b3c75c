"""The sliced output projection gives the plain projection's logits, keeps gradients and the saved weights."""

import pytest

torch = pytest.importorskip("torch")

from loomwork.backends import vocab_head  # noqa: E402


class TinyLM(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.head = torch.nn.Linear(48, vocab, bias=False)

    def get_output_embeddings(self):
        return self.head


@pytest.mark.parametrize("rows", [1, 3, 8, 65])
def test_sliced_equals_plain(rows):
    torch.manual_seed(rows)
    lm = TinyLM(vocab_head.MIN_VOCAB + 777)  # a last slice shorter than the others
    x = torch.randn(1, rows, 48)
    with torch.no_grad():
        plain = torch.nn.functional.linear(x, lm.head.weight)
        assert vocab_head.install(lm)
        sliced = lm.head(x)
    assert sliced.shape == plain.shape
    torch.testing.assert_close(sliced, plain, rtol=1e-6, atol=1e-5)


def test_gradients_and_state_dict_unchanged():
    lm = TinyLM(vocab_head.MIN_VOCAB)
    keys = list(lm.state_dict())
    vocab_head.install(lm)
    assert list(lm.state_dict()) == keys
    x = torch.randn(4, 48, requires_grad=True)
    lm.head(x).sum().backward()
    assert x.grad is not None and lm.head.weight.grad is not None


def test_small_vocabulary_left_alone():
    lm = TinyLM(1000)
    assert not vocab_head.install(lm)
