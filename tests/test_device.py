"""Devices and precision (issue 22), on the CPU: the placement asked for is checked before anything loads (a CUDA
device torch cannot see, an index out of range, a dtype the device cannot run, a model too large, a prefix cache
larger than the device), bfloat16 weights keep float32 logits within the documented bound of a float32 model,
and every figure says what produced it. Tests that need CUDA are marked ``cuda`` and skipped without it."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from loomwork import ledger, ops  # noqa: E402
from loomwork.backends.base import SamplingParams  # noqa: E402
from loomwork.engine import device  # noqa: E402
from loomwork.engine.torch_engine import float32_head  # noqa: E402
from loomwork.errors import InvalidInput  # noqa: E402
from tests.tiny_model import build_tiny_gemma, build_tiny_lm  # noqa: E402

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
# docs/backends.md, "Devices and precision": bfloat16 weights, float32 logits
BF16_LOGPROB_BOUND = 0.05  # nats, any token of the tiny test models (0.15 on Gemma 3 270M)
BF16_KL_BOUND = 1e-4  # nats per position (1e-3 on Gemma 3 270M)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")
@pytest.mark.parametrize("spec,message", [
    ("cuda", "sees no CUDA device: use --device cpu"), ("cuda:3", "sees no CUDA device"),
    ("gpu", "the device is auto, cpu, cuda or cuda:N, not 'gpu'"), ("cuda:x", "not 'cuda:x'")])
def test_a_device_that_is_not_there_is_refused(spec, message):
    with pytest.raises(InvalidInput, match=message):
        device.resolve(spec)


def test_auto_and_dtypes():
    auto = device.resolve()
    assert (auto.device, auto.dtype) == (("cuda:0", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32"))
    assert device.resolve("cpu", "bfloat16").precision == {"device": "cpu", "weights": "bfloat16", "logits": "float32"}
    with pytest.raises(InvalidInput, match="float16 weights on the CPU are not supported"):
        device.resolve("cpu", "float16")
    with pytest.raises(InvalidInput, match="the dtype is one of auto, float32, bfloat16, float16, not 'int8'"):
        device.resolve("cpu", "int8")


def test_the_environment_is_read_and_refused_before_a_model_loads(monkeypatch, tmp_path):
    from loomwork.backends import hf
    from loomwork.backends.hf import HFBackend

    loaded = []
    monkeypatch.setattr(hf, "load", lambda *a, **k: loaded.append(a))
    monkeypatch.setenv("LOOMWORK_DTYPE", "float16")
    with pytest.raises(InvalidInput, match="float16 weights on the CPU"):
        HFBackend("gemma-3-270m")
    monkeypatch.setenv("LOOMWORK_DTYPE", "float32")
    monkeypatch.setenv("LOOMWORK_KV_BUDGET", "100000GiB")
    with pytest.raises(InvalidInput, match="more than cpu has"):
        HFBackend("gemma-3-270m")
    assert loaded == []


def test_a_model_that_does_not_fit_is_refused_with_the_numbers(monkeypatch, tiny_base):
    from loomwork.backends.hf_load import load

    need = device.weights_bytes(tiny_base, "float32")
    assert need == sum(p.numel() * 4 for p in build_tiny_lm(seed=3)[0].parameters())  # from the headers alone
    assert device.weights_bytes(tiny_base, "bfloat16") == need // 2
    monkeypatch.setattr(device, "free_bytes", lambda _d: int(need * 0.6))
    with pytest.raises(InvalidInput, match=r"needs about 0\.0 GiB on cpu in float32 .* free there"):
        load(tiny_base)
    load(tiny_base, device.resolve("cpu", "bfloat16"))  # half the bytes: it fits


@pytest.mark.parametrize("build", [build_tiny_lm, build_tiny_gemma])
def test_bfloat16_weights_keep_float32_logits_within_the_documented_bound(build):
    lm, tok = build()
    ids = torch.tensor([tok.encode("The old lighthouse keeper climbed the stairs and looked at the sea. " * 3)])
    low = copy.deepcopy(lm).to(torch.bfloat16)
    assert float32_head(low) and not float32_head(copy.deepcopy(lm))  # a float32 model keeps its own head
    with torch.no_grad():
        ref = torch.log_softmax(lm(input_ids=ids).logits[0].double(), -1)
        logits = low(input_ids=ids).logits
        lp = torch.log_softmax(logits[0].double(), -1)
    assert logits.dtype == torch.float32  # the head reads the bfloat16 body in float32
    picked = ids[0, 1:, None]
    diff = (ref[:-1].gather(-1, picked) - lp[:-1].gather(-1, picked)).abs().max()
    kl = (ref.exp() * (ref - lp)).sum(-1).max()
    assert 0 < float(diff) < BF16_LOGPROB_BOUND and float(kl) < BF16_KL_BOUND


async def test_figures_say_what_produced_them(store):
    from loomwork.backends.hf import HFBackend

    lm, tok = build_tiny_lm()
    backend = HFBackend("tiny-bf16", lm=copy.deepcopy(lm).to(torch.bfloat16), tokenizer=tok)
    assert backend.precision() == {"device": "cpu", "weights": "bfloat16", "logits": "float32"}
    _t, root = ops.new_tree(store, "The river ran")
    kids = await ops.expand(store, root.id, backend, SamplingParams(n=2, max_tokens=5, seed=1, temperature=0.8))
    with store.read() as tx:
        assert tx.generation(kids[0].generation_id).params["precision"]["weights"] == "bfloat16"
    report = await ledger.path_report(store, kids[0].id, backend.ref, backend)
    assert report["precision"]["weights"] == "bfloat16" and report["nodes"][-1]["precision"]["device"] == "cpu"
    assert report["nodes"][-1]["ledger"]["decoding"] > 0
    assert backend.cache_stats()["device"] == "cpu"


@cuda
@needs_cuda
async def test_the_engine_on_cuda_matches_the_cpu(store):
    """On a GPU: the same samples' logprobs on CUDA (float32 here, to compare) as on the CPU, within 1e-3."""
    from loomwork.backends.hf import HFBackend

    lm, tok = build_tiny_lm()
    on_cpu = HFBackend("tiny-cpu", lm=copy.deepcopy(lm), tokenizer=tok)
    on_gpu = HFBackend("tiny-gpu", lm=copy.deepcopy(lm).to("cuda"), tokenizer=tok)
    params = SamplingParams(n=3, max_tokens=8, seed=2)
    a = await on_cpu.complete("The river ran", params)
    b = await on_gpu.complete("The river ran", params)
    assert on_gpu.precision()["device"].startswith("cuda")
    for x, y in zip(a.completions, b.completions):
        for s, t in zip(x.tokens, y.tokens):
            if s.id != t.id:
                break  # a near tie drawn differently: the rest may differ
            assert abs(s.logprob - t.logprob) < 1e-3
    score = await on_gpu.score("The river ran", " on and on")
    want = await on_cpu.score("The river ran", " on and on")
    assert [x.logprob for x in score] == pytest.approx([x.logprob for x in want], abs=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")
def test_the_commands_take_a_device_and_refuse_one_that_is_not_there():
    import json

    from click.testing import CliRunner

    from loomwork.cli import cli

    runner = CliRunner()
    root = json.loads(runner.invoke(cli, ["new", "The river", "--json"]).stdout)["root"]["id"]
    for args in (["expand", root, "-m", "mock"], ["serve", "--port", "1"], ["tune", "x", "--kl-budget", "1"],
                 ["compare", "-m", "mock"], ["bits", root]):
        out = runner.invoke(cli, [*args, "--device", "cuda:1"])
        assert out.exit_code == 2 and "sees no CUDA device" in out.output, (args, out.output)
    out = runner.invoke(cli, ["expand", root, "-m", "mock", "-n", "1", "--max-tokens", "2", "--device", "cpu",
                              "--dtype", "bfloat16"])
    assert out.exit_code == 0, out.output
    bad = runner.invoke(cli, ["expand", root, "-m", "mock", "--dtype", "half"])
    assert bad.exit_code == 2 and "not 'half'" in bad.output
