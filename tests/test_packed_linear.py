"""Linear layers on oneDNN-packed weights: the plain product's result, batch-invariant, re-packed when the weight
changes, and out of the way of gradients and saving."""

import pytest

torch = pytest.importorskip("torch")

from loomwork.engine import packed_linear  # noqa: E402

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="torch without oneDNN")


class TwoLayers(torch.nn.Module):
    def __init__(self, bias=False):
        super().__init__()
        self.up = torch.nn.Linear(640, 1536, bias=bias)
        self.down = torch.nn.Linear(1536, 640, bias=bias)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


@pytest.mark.parametrize("rows", [1, 3, 8, 65, 700])
@pytest.mark.parametrize("bias", [False, True])
def test_equals_plain_product(rows, bias):
    torch.manual_seed(rows)
    m = TwoLayers(bias)
    x = torch.randn(1, rows, 640)
    with torch.no_grad():
        plain = m(x)
        assert packed_linear.install(m) == 2
        packed = m(x)
    assert packed.shape == plain.shape
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
    assert "_loomwork_packed" in m.up.__dict__  # the packed path ran


def test_a_row_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    lin = torch.nn.Linear(640, 4096, bias=False)
    packed_linear.install(lin)
    x = torch.randn(40, 640)
    with torch.inference_mode():
        alone = lin(x[:1])
        for rows in (2, 8, 40):
            assert torch.equal(lin(x[:rows])[:1], alone)


@pytest.mark.parametrize("through_data", [False, True])
def test_a_changed_weight_is_packed_again(through_data):
    """In place on the parameter: its version counter says so. Through ``weight.data`` (peft's merge), which no
    counter sees: install drops the packed copies."""
    lin = torch.nn.Linear(64, 96, bias=False)
    packed_linear.install(lin)
    x = torch.randn(4, 64)
    with torch.no_grad():
        before = lin(x)
        if through_data:
            lin.weight.data += lin.weight.data
            packed_linear.install(lin)
        else:
            lin.weight.mul_(2.0)
        after = lin(x)
    torch.testing.assert_close(after, 2 * before, rtol=1e-5, atol=1e-5)


def test_gradients_state_dict_and_other_dtypes_unchanged():
    m = TwoLayers()
    keys = list(m.state_dict())
    packed_linear.install(m)
    assert list(m.state_dict()) == keys
    x = torch.randn(4, 640, requires_grad=True)
    m(x).sum().backward()  # recording gradients: the plain product on the parameters
    assert x.grad is not None and m.up.weight.grad is not None
    assert "_loomwork_packed" not in m.up.__dict__
    with torch.no_grad():
        half = m.to(torch.float64)(torch.randn(2, 640, dtype=torch.float64))
    assert half.dtype == torch.float64


def test_install_twice_and_subclasses_left_alone():
    class Custom(torch.nn.Linear):
        pass

    m = torch.nn.Sequential(torch.nn.Linear(8, 8), Custom(8, 8))
    assert packed_linear.install(m) == 1
    assert packed_linear.install(m) == 1


def test_plain_products_for_a_while():
    m = TwoLayers()
    packed_linear.install(m)
    with packed_linear.plain_products(m):
        assert "forward" not in m.up.__dict__  # transformers' own nn.Linear.forward
    assert "forward" in m.up.__dict__
    with torch.no_grad():
        m(torch.randn(2, 640))
    assert "_loomwork_packed" in m.up.__dict__
