"""A steering vector as llama.cpp's control-vector GGUF (what ``llama-cvector-generator`` writes and
``llama-server --control-vector-scaled FILE:SCALE`` loads): architecture ``controlvector``, one float32 tensor
``direction.L`` for the vector's block L, added to that block's output at every position, times SCALE. llama.cpp
starts at block 1, so a vector at block 0 cannot be exported. gguf-py (the ``hf`` extra) writes the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InvalidInput
from ..store import Store
from ..store import steering as sql


def export_gguf(store: Store, name: str, path: str | os.PathLike) -> dict:
    """Write vector ``name`` to ``path`` (a new file; refused if it exists); what was written."""
    try:
        import gguf
    except ImportError:
        raise InvalidInput("writing a GGUF needs the gguf package: pip install 'loomwork[hf]'") from None
    with store.read() as tx:
        v = sql.vector(tx, name)
    if v["layer"] < 1:
        raise InvalidInput(f"steering vector {name!r} is at block 0, which llama.cpp's control vectors cannot "
                           "steer (they start at block 1)")
    target = Path(path)
    if target.exists():
        raise InvalidInput(f"{target} exists already: choose another file")
    if not target.parent.is_dir():
        raise InvalidInput(f"no folder {target.parent} to write {target.name} into")
    vec = np.asarray(v["vector"], dtype=np.float32)
    tmp = target.with_name(target.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), "controlvector")
    writer.add_string("controlvector.model_hint", v["model"])
    writer.add_uint32("controlvector.layer_count", 1)
    writer.add_tensor(f"direction.{v['layer']}", vec)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(target)  # never a half-written file under the name asked for
    return {"name": name, "file": str(target), "model": v["model"], "layer": v["layer"], "width": len(vec),
            "norm": v["norm"]}
