"""Where a torch model runs and in what precision: ``LOOMWORK_DEVICE`` (auto, cpu, cuda, cuda:N; ``--device``) and
``LOOMWORK_DTYPE`` (auto, float32, bfloat16, float16; ``--dtype``). auto is CUDA when torch sees a device, else
the CPU; the weights' dtype on auto is float32 on the CPU (these CPUs have no fast bfloat16) and bfloat16 on CUDA.
Logits and log-softmax are float32 on every device (docs/backends.md states what each precision gives).

Everything is checked before a model loads: a CUDA device torch cannot see, an index out of range, a dtype the
device cannot run, a model that does not fit in its memory, a prefix-cache budget larger than the device: one clear
error, nothing loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput

DEVICES = "auto, cpu, cuda or cuda:N"
DTYPES = ("auto", "float32", "bfloat16", "float16")
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu" or "cuda:N"
    dtype: str  # the weights': float32, bfloat16 or float16 (logits are float32 everywhere)

    @property
    def precision(self) -> dict:
        """What produced a figure: the device, the weights' dtype and the logits' (recorded with generations)."""
        return {"device": self.device, "weights": self.dtype, "logits": "float32"}

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve(device: str | None = None, dtype: str | None = None) -> Placement:
    """The placement asked for (arguments, else LOOMWORK_DEVICE and LOOMWORK_DTYPE, else auto), checked."""
    import torch

    spec = (device or os.environ.get("LOOMWORK_DEVICE") or "auto").strip().lower()
    count = _cuda_count()
    if spec == "auto":
        spec = "cuda:0" if count else "cpu"
    elif spec == "cuda":
        spec = "cuda:0"
    if spec != "cpu":
        m = re.fullmatch(r"cuda:(\d+)", spec)
        if not m:
            raise InvalidInput(f"the device is {DEVICES}, not {spec!r}")
        if not count:
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no device visible"
            raise InvalidInput(f"{spec} was asked for, but torch ({torch.__version__}, {build}) sees no CUDA device: "
                               "use --device cpu")
        if int(m.group(1)) >= count:
            raise InvalidInput(f"{spec} was asked for, but torch sees {count} CUDA device{'s' if count > 1 else ''} "
                               f"(cuda:0 to cuda:{count - 1})")
    want = (dtype or os.environ.get("LOOMWORK_DTYPE") or "auto").strip().lower()
    if want not in DTYPES:
        raise InvalidInput(f"the dtype is one of {', '.join(DTYPES)}, not {want!r}")
    if want == "auto":
        want = "float32" if spec == "cpu" else "bfloat16"
    if spec == "cpu" and want == "float16":
        raise InvalidInput("float16 weights on the CPU are not supported (no fast half-precision products there): "
                           "use float32, or bfloat16")
    if spec != "cpu" and want == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise InvalidInput(f"{spec} cannot run bfloat16: use --dtype float16 or float32")
    return Placement(spec, want)


def free_bytes(device: str) -> int:
    """Memory free for a model on ``device``: the CUDA device's free memory, or the machine's available memory."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(int(device.split(":")[1]))[0])
    try:
        text = Path("/proc/meminfo").read_text()
        return int(re.search(r"MemAvailable:\s+(\d+) kB", text).group(1)) * 1024
    except (OSError, AttributeError):
        return 1 << 62  # nowhere to read it from: do not refuse


def total_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(int(device.split(":")[1]))[1])
    try:
        text = Path("/proc/meminfo").read_text()
        return int(re.search(r"MemTotal:\s+(\d+) kB", text).group(1)) * 1024
    except (OSError, AttributeError):
        return 1 << 62


def weights_bytes(directory: Path, dtype: str) -> int:
    """What a model directory's weights take in memory in ``dtype``: their stored size, scaled from the dtype
    they are stored in (read from the safetensors headers, without loading them)."""
    import json
    import struct

    total = 0
    for f in sorted(Path(directory).glob("*.safetensors")):
        with f.open("rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for n in entry["shape"]:
                count *= n
            total += count * _BYTES[dtype]
    if total == 0:  # another format (a .bin): its size on disk, as it is stored
        total = sum(f.stat().st_size for f in Path(directory).glob("*.bin"))
    return total


def check_fits(directory: Path, placement: Placement, margin: float = 1.1) -> None:
    """Refuse, with the numbers, a model whose weights would not fit where it is to run."""
    need = int(weights_bytes(directory, placement.dtype) * margin)
    free = free_bytes(placement.device)
    if need > free:
        raise InvalidInput(f"the model at {directory} needs about {need / 2**30:.1f} GiB on {placement.device} in "
                           f"{placement.dtype} (weights, +10%), but {free / 2**30:.1f} GiB is free there: use a "
                           "smaller model, another --dtype, or another --device")


def check_kv_budget(budget: int, placement: Placement) -> None:
    """The prefix cache lives on the model's device: a budget larger than the device's memory is refused."""
    total = total_bytes(placement.device)
    if budget > total:
        raise InvalidInput(f"LOOMWORK_KV_BUDGET is {budget / 2**30:.1f} GiB, more than {placement.device} has "
                           f"({total / 2**30:.1f} GiB): the prefix cache lives in the device's memory")
