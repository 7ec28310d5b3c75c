"""Find, convert and load a transformers model. torch and transformers are imported here, lazily.

GGUF files are dequantised to float32 torch weights once (slow: ~75 s for Gemma 3 270M) and the result is saved
as safetensors in the user cache, so that later loads take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import warnings
from pathlib import Path

from .. import config
from ..errors import BackendError, InvalidInput, NotFound
from ..progress import interactive, status
from ..engine.device import Placement, check_fits
from ..engine.device import resolve as resolve_placement
from ..levers import adapter as adapters
from .catalog import PACKAGED

_DONE = "loomwork-converted.ok"  # written last: a cache dir without it is a crashed conversion


def require_torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            f"the hf backend needs torch and transformers ({exc.name} is missing): run ./setup.sh, or "
            "pip install torch==2.13.0 'loomwork[hf]'"
        ) from None
    return torch


def resolve_source(model: str) -> tuple[str, Path]:
    """``("dir", path)`` for a Hugging Face directory, ``("gguf", path)`` for a GGUF file."""
    if model in PACKAGED:
        return "gguf", PACKAGED[model].gguf_path()
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise NotFound(f"{path} is a directory but not a Hugging Face model (no config.json)")
        return "dir", path
    if path.is_file() and path.suffix == ".gguf":
        return "gguf", path
    known = ", ".join(PACKAGED)
    raise NotFound(f"unknown hf model {model!r}: use a packaged name ({known}), a model directory or a .gguf file")


def _conversion_dir(model: str, gguf: Path | None = None) -> Path:
    """Where the converted weights of ``model`` live; keyed so a new package or transformers version reconverts."""
    tf = importlib.metadata.version("transformers")
    if model in PACKAGED:
        key = f"{model}-{PACKAGED[model].version()}-tf{tf}"
    else:
        gguf = gguf or Path(model).expanduser()
        st = gguf.stat()
        key = f"{gguf.stem}-" + hashlib.sha1(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}|{tf}".encode()).hexdigest()[:12]
    return config.cache_dir() / "hf" / key


def converted_dir(model: str) -> Path | None:
    """The directory holding this model's torch weights, if they exist yet (never converts or assembles)."""
    if model not in PACKAGED and Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    target = _conversion_dir(model)
    return target if (target / _DONE).exists() else None


def _quiet_unless_interactive() -> None:
    import transformers

    if interactive():
        transformers.utils.logging.enable_progress_bar()
    else:
        transformers.utils.logging.disable_progress_bar()
        # the GGUF converter uses tqdm directly, which only this switch (read per bar) silences
        os.environ.setdefault("TQDM_DISABLE", "1")


def convert_gguf(model: str, gguf: Path) -> Path:
    require_torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _conversion_dir(model, gguf)
    if (target / _DONE).exists():
        return target
    _quiet_unless_interactive()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with status(f"Converting {model} from GGUF to torch weights (once; cached in {target.parent})"):
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            lm = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
        except Exception as exc:
            raise BackendError(f"cannot load GGUF file {gguf}: {exc}") from None
        # A GGUF-loaded model refuses save_pretrained until its quantizer is cleared (MODELS.md).
        lm.hf_quantizer = None
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _DONE).write_text(str(gguf))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def load(model: str, placement: Placement | None = None):
    """(model, tokenizer) in eval mode, where ``placement`` says (LOOMWORK_DEVICE and LOOMWORK_DTYPE when None:
    float32 on the CPU unless asked otherwise). The weights load straight to the device in their dtype (never
    float32 on the CPU first); a model that would not fit is refused with the numbers before anything loads.
    ``BASE+NAME`` is BASE with the LoRA adapter NAME (levers/adapter.py) merged into its weights."""
    base, adapter = adapters.split_model(model)
    if adapter is not None:
        return _with_adapter(base, adapter, placement)
    torch = require_torch()
    placement = placement or resolve_placement()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model in PACKAGED and not PACKAGED[model].installed():
        raise NotFound(f"model {model!r} is not installed: {PACKAGED[model].install}")
    if model not in PACKAGED:
        resolve_source(model)  # validates the path before anything else looks at it
    directory = converted_dir(model)
    if directory is None:
        _kind, path = resolve_source(model)
        directory = convert_gguf(model, path)
    check_fits(directory, placement)
    torch.set_num_threads(os.cpu_count() or 1)
    _quiet_unless_interactive()
    where = {} if placement.device == "cpu" else {"device_map": placement.device}  # straight to the device
    with status(f"Loading {model}" + ("" if placement.device == "cpu" else f" onto {placement.device}")):
        try:
            tok = AutoTokenizer.from_pretrained(str(directory))
            lm = AutoModelForCausalLM.from_pretrained(str(directory), dtype=placement.torch_dtype(), **where)
        except Exception as exc:
            raise BackendError(f"cannot load model from {directory}: {exc}") from None
    lm.eval()
    return lm, tok


def _with_adapter(base: str, name: str, placement: Placement | None = None):
    meta = adapters.meta(name)
    if meta.get("base") != base:
        raise InvalidInput(f"adapter {name!r} was trained on {meta.get('base')}, not {base}: use "
                           f"hf:{meta.get('base')}+{name}")
    try:
        from peft import PeftModel
    except ImportError:
        raise BackendError("adapters need peft: pip install 'loomwork[tune]'") from None
    lm, tok = load(base, placement)
    with status(f"Applying adapter {name}"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' renamed gradient-checkpointing calls in peft
        lm = PeftModel.from_pretrained(lm, str(adapters.checkpoint(name))).merge_and_unload()
    lm.eval()
    return lm, tok
