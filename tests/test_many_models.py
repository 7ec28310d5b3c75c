"""Several models at once (issue 26): n samples from each of several models under one node, each child its own
generation (so it says which model wrote it), one seed for all; through the library, the CLI's JSON and the API."""

from __future__ import annotations

import json

import httpx
import pytest

from loomwork import expansion, ops
from loomwork.backends import get_backend
from loomwork.backends.base import SamplingParams
from loomwork.errors import InvalidInput, Unsupported

pytest.importorskip("fastapi")

from loomwork.web import create_app  # noqa: E402


async def test_each_model_writes_its_own_children_with_one_seed(store):
    tree, root = ops.new_tree(store, "Once upon a time")
    a, b = get_backend("mock:default"), get_backend("mock:slow")
    seen = []
    kids = await expansion.expand_with_models(store, root.id, [a, b], SamplingParams(n=2, max_tokens=4, seed=7),
                                              on_token=lambda k, e: seen.append((k, e.index)))
    assert len(kids) == 4 and {k for k, _ in seen} == {0, 1}
    gens = [store.generation(g) for g in dict.fromkeys(k.generation_id for k in kids)]
    assert [f"{g.backend}:{g.model}" for g in gens] == ["mock:default", "mock:slow"]
    assert {g.seed for g in gens} == {7}
    # the same as asking each model on its own with that seed
    alone = await expansion.expand(store, root.id, a, SamplingParams(n=2, max_tokens=4, seed=7))
    assert [k.text for k in alone] == [k.text for k in kids[:2]]
    with pytest.raises(InvalidInput, match="named twice"):
        await expansion.expand_with_models(store, root.id, [a, a], SamplingParams(n=1))
    with pytest.raises(Unsupported):  # steering is checked for every model before any runs
        await expansion.expand_with_models(store, root.id, [a, b], SamplingParams.make(
            n=1, steer=[{"name": "nothing", "coef": 1.0}]))
    assert len(store.children(root.id)) == 6  # the refused ones wrote nothing


async def test_the_api_streams_every_models_samples_and_marks_the_children(store):
    tree, root = ops.new_tree(store, "Once upon a time")
    app = create_app(store, default_model="mock:default")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as c:
        r = await c.post(f"/api/nodes/{root.id}/expand", json={"models": ["mock:default", "mock:slow"],
                                                                "params": {"n": 2, "max_tokens": 3, "seed": 1}})
        events = [(b.split("\n")[0][7:], json.loads(b.split("data: ", 1)[1])) for b in r.text.strip().split("\n\n")]
        tokens = [d for name, d in events if name == "token"]
        assert {d["index"] for d in tokens} == {0, 1, 2, 3}
        assert {d["model"] for d in tokens if d["index"] >= 2} == {"mock:slow"}
        done = events[-1]
        assert done[0] == "done" and [k["model"] for k in done[1]["children"]] == ["mock:default"] * 2 + ["mock:slow"] * 2
        streamed = ["", "", "", ""]
        for d in tokens:
            streamed[d["index"]] += d["text"]
        assert streamed == [k["text"] for k in done[1]["children"]]
        kids = (await c.get(f"/api/nodes/{root.id}/children")).json()
        assert [k["model"] for k in kids] == ["mock:default"] * 2 + ["mock:slow"] * 2
        bad = await c.post(f"/api/nodes/{root.id}/expand", json={"model": "mock:default", "models": ["mock:default",
                                                                                                     "mock:slow"]})
        assert bad.status_code == 400 and "not both" in bad.json()["error"]
        one = await c.post(f"/api/nodes/{root.id}/expand", json={"models": ["mock:default"]})
        assert one.status_code == 400
