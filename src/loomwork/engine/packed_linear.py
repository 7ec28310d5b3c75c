"""Linear layers on weights packed once for oneDNN, whenever no gradients are recorded.

On this project's 2-core CPU, torch's default product (MKL sgemm on the row-major weight) runs the skinny
products of decoding far below the memory bandwidth: Gemma 3's 262,144 x 640 output projection takes 44 ms for
one row and 78 ms for eight, where the same product on a weight reordered once into oneDNN's blocked layout
takes 19 and 21 ms (35 GB/s of the machine's 42). Every layer gains alike: a batch-8 decoding step of Gemma
115 -> 59 ms, a 1,000-token prefill 3.2 -> 0.9 s. These are torch's own kernels (the ones torch.compile's
weight freezing uses on CPUs); calling them directly avoids compiling for every shape.

A row's result barely depends on which rows share its product: exactly not for Gemma's 640-wide products, by
float32 rounding (7e-6) between one row and several for the 2,048-wide one; plain sgemm varies more.

Costs and limits: a second copy of each weight (1.07 GB for Gemma 3 270M in float32), made at a layer's first
use and again when its weight is replaced or changed in place (its version counter). A change through
``weight.data`` (peft's merge does that) is invisible to the counter: the hf backend installs this on the model
it was given, whose weights are final (adapters are merged before); whoever changes weights that way afterwards
calls :func:`install` again, which drops the packed copies. While gradients are recorded, or for a weight that
is not float32 on the CPU, the plain product runs on the parameter itself; saving and state dicts are unchanged.
"""

from __future__ import annotations

import types
from contextlib import contextmanager

BATCH_HINT = 64  # oneDNN picks its blocked layout for this many rows; measured best from 1 to 1,000 rows here
_WORKS: bool | None = None


def _pack(weight):
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), BATCH_HINT)


def _packed_product(x, packed, bias):
    import torch

    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _weight_key(weight) -> tuple:
    try:
        version = weight._version
    except RuntimeError:  # an inference tensor has no version counter, and cannot be changed in place either
        version = -1
    return weight.data_ptr(), version, tuple(weight.shape)


def _forward(self, x):
    import torch

    weight = self.weight
    if torch.is_grad_enabled() or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.device.type != "cpu":
        return torch.nn.functional.linear(x, weight, self.bias)
    key = _weight_key(weight)
    packed = self.__dict__.get("_loomwork_packed")
    if packed is None or packed[0] != key:
        packed = self.__dict__["_loomwork_packed"] = (key, _pack(weight))
    bias = None if self.bias is None else self.bias.detach()
    return _packed_product(x, packed[1], bias)


def available() -> bool:
    """Whether torch has the oneDNN ops and they give the plain product's result (checked once, on a probe)."""
    global _WORKS
    if _WORKS is None:
        import torch

        try:
            gen = torch.Generator().manual_seed(0)
            w, x = torch.randn(96, 80, generator=gen), torch.randn(5, 80, generator=gen)
            with torch.no_grad():
                _WORKS = bool(torch.allclose(_packed_product(x, _pack(w), None), x @ w.t(), rtol=1e-5, atol=1e-5))
        except Exception:  # a torch built without oneDNN, or ops renamed in a later release
            _WORKS = False
    return _WORKS


def install(lm, pack_now: bool = False) -> int:
    """Give every float32 CPU ``nn.Linear`` of ``lm`` the packed forward (same modules and weights); returns how
    many. Calling it again drops the packed copies made so far (after weights were changed through ``.data``).
    ``pack_now``: pack every weight at once (at load) rather than at each layer's first use."""
    import torch

    if not available():
        return 0
    count = 0
    for module in lm.modules():
        if type(module) is torch.nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32:
            module.forward = types.MethodType(_forward, module)
            module.__dict__.pop("_loomwork_packed", None)
            if pack_now:
                with torch.no_grad():
                    module.__dict__["_loomwork_packed"] = (_weight_key(module.weight), _pack(module.weight))
            count += 1
    return count


@contextmanager
def plain_products(lm):
    """transformers' own products for a while (the benchmarks' baselines); packed again on the way out."""
    patched = [m for m in lm.modules() if getattr(m.__dict__.get("forward"), "__func__", None) is _forward]
    for m in patched:
        del m.forward
    try:
        yield
    finally:
        for m in patched:
            m.forward = types.MethodType(_forward, m)
