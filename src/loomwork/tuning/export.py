"""Adapters that leave the loom: a portable PEFT folder (the adapter, its base named by its public identity, the
record of what shaped it and a README), or with ``merged`` a full transformers model directory with the adapter
merged into the base's weights, which ``AutoModelForCausalLM.from_pretrained`` loads on its own.

A packaged base is a GGUF file (Q4_K_M for Gemma 3 270M) that loomwork dequantises to float32: the adapter was
trained against those weights, so logits equal the loom's only on them (``--merged``, or the dequantised
directory the README names); on the upstream model's own weights the adapter still applies, on slightly different
numbers. The export is written to a new folder next to the target and renamed into place: all of it or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

from ..errors import InvalidInput
from . import adapters


def _readable(root: Path) -> None:
    """Files 0644 and folders 0755: an export is for others to read."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def _base_names(meta: dict) -> tuple[str, str]:
    """(the public name written as the base, the local directory whose weights the adapter was trained on)."""
    from ..backends.hf_load import converted_dir

    identity = (meta.get("provenance") or {}).get("base_model") or {}
    local = converted_dir(meta["base"])
    public = identity.get("upstream") or identity.get("path") or meta["base"]
    return public, str(local) if local else meta["base"]


def _readme(name: str, meta: dict, public: str, local: str, merged: bool) -> str:
    prov = meta.get("provenance") or {}
    ident = prov.get("base_model") or {}
    data = prov.get("data") or {}
    base_line = (f"{ident.get('package')} {ident.get('version')} ({ident.get('file')}, sha256 {ident.get('sha256')})"
                 if ident.get("package") else f"{ident.get('path', meta['base'])} (sha256 {ident.get('sha256')})")
    load = (f"AutoModelForCausalLM.from_pretrained('{name}')" if merged else
            f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), '{name}')")
    def num(x) -> str:
        return "?" if x is None else f"{x:.4f}"

    return "\n".join([
        f"# {meta['name']}", "",
        f"A LoRA adapter made by loomwork ({meta['config']['method']}, KL budget {meta['config']['kl_budget']} "
        f"bits/token; spent {num(meta.get('kl_bits'))} ± {num(meta.get('kl_se'))} bits/token at step "
        f"{meta.get('step')}), exported to the folder `{name}`.", "",
        f"- Base: {public}. Trained on the weights of {base_line}, dequantised to float32 by loomwork "
        f"(locally: {local}).",
        f"- Data: {data.get('rows')} rows (sha256 {data.get('sha256')}); {data.get('train', {}).get('rows')} trained "
        f"on, {data.get('heldout', {}).get('rows')} held out by prompt.",
        "- The whole record (data, base, seeds, libraries, command, curve): loomwork.json.",
        "" if merged else "- BASE: the directory above for the loom's exact numbers, or the public base (the adapter "
                          "applies; numbers differ slightly from quantisation).",
        "", "Load with transformers" + ("" if merged else " and peft") + f": `{load}`", ""])


def export(name: str, target: str | Path, merged: bool = False) -> Path:
    """Write adapter ``name`` to the new folder ``target``; refuses a target that exists."""
    meta = adapters.meta(name)
    target = Path(target).expanduser()
    if target.exists():
        raise InvalidInput(f"{target} exists already: give a new folder to export into")
    if not target.parent.is_dir():
        raise InvalidInput(f"cannot export to {target}: the folder {target.parent} does not exist")
    ckpt = adapters.checkpoint(name)
    public, local = _base_names(meta)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if merged:
            from ..backends.hf_load import load

            lm, tok = load(f"{meta['base']}+{name}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lm.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        else:
            shutil.copytree(ckpt, tmp, ignore=shutil.ignore_patterns("trainer_state.pt"))
            config = json.loads((tmp / "adapter_config.json").read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = public
            (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        record = {**meta, "exported": {"merged": merged, "base_model_name_or_path": public, "trained_on": local}}
        record.pop("pid", None)
        (tmp / "loomwork.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        (tmp / "README.md").write_text(_readme(target.name, meta, public, local, merged), encoding="utf-8")
        _readable(tmp)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
