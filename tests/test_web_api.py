"""The JSON API in process (httpx over ASGI): every route, errors, streaming and the safety checks."""

from __future__ import annotations

import json

import httpx
import pytest

pytest.importorskip("fastapi")

from loomwork import ops  # noqa: E402
from loomwork.web import create_app  # noqa: E402

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def client(store):
    app = create_app(store, default_model="mock:default")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def _events(body: str) -> list[tuple[str, dict]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_tree_life_cycle(client):
    made = (await client.post("/api/trees", json={"prompt": "Once"})).json()
    root, tree_id = made["root"]["id"], made["tree"]["id"]
    resp = await client.post(f"/api/nodes/{root}/expand", json={"params": {"n": 2, "max_tokens": 5, "seed": 1}})
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = _events(resp.text)
    assert events[0][0] == "status" and events[-1][0] == "done"
    kids = events[-1][1]["children"]
    assert len(kids) == 2 and all("mean_logprob" in k for k in kids)
    streamed = ["", ""]
    for name, data in events:
        if name == "token":
            streamed[data["index"]] += data["text"]
    assert streamed == [k["text"] for k in kids]
    children = (await client.get(f"/api/nodes/{root}/children")).json()
    assert [c["id"] for c in children] == [k["id"] for k in kids]
    assert (await client.get(f"/api/nodes/{root}")).json()["child_count"] == 2
    path = (await client.get(f"/api/nodes/{kids[0]['id']}/path")).json()
    assert [p["id"] for p in path] == [root, kids[0]["id"]]
    v0 = (await client.get(f"/api/trees/{tree_id}/version")).json()["version"]
    edited = (await client.post(f"/api/nodes/{kids[0]['id']}/edit", json={"text": " edited"})).json()
    assert edited["origin"] == "edit"
    assert (await client.get(f"/api/trees/{tree_id}/version")).json()["version"] > v0
    tok_text = kids[1]["text"]
    if len(tok_text) > 1:
        split = (await client.post(f"/api/nodes/{kids[1]['id']}/split", json={"offset": 1})).json()
        assert split["head"]["text"] + split["tail"]["text"] == tok_text
        merged = (await client.post(f"/api/nodes/{kids[1]['id']}/merge")).json()
        assert merged["text"] == tok_text
    await client.post(f"/api/nodes/{edited['id']}/bookmark", json={"on": True})
    tagged = (await client.post(f"/api/nodes/{edited['id']}/tags", json={"add": ["x", "y"], "remove": ["y"]})).json()
    assert tagged["tags"] == ["x"] and tagged["bookmarked"]
    await client.post(f"/api/nodes/{edited['id']}/archive", json={"on": True})
    assert edited["id"] not in [c["id"] for c in (await client.get(f"/api/nodes/{root}/children")).json()]
    undone = (await client.post(f"/api/trees/{tree_id}/undo")).json()
    assert undone["kind"] == "archive"
    assert (await client.post(f"/api/trees/{tree_id}/redo")).json()["kind"] == "archive"
    hist = (await client.get(f"/api/trees/{tree_id}/history")).json()
    assert hist[0]["kind"] == "expand"
    hits = (await client.get("/api/search", params={"q": "EDITED"})).json()
    assert hits[0]["node"]["id"] == edited["id"] and hits[0]["path"] == [root, edited["id"]]
    assert (await client.delete(f"/api/nodes/{edited['id']}")).json() == {"deleted": 1}


async def test_branch_from_an_alternative_token(client, store):
    _, root = ops.new_tree(store, "The river")
    resp = await client.post(f"/api/nodes/{root.id}/expand", json={"params": {"n": 1, "max_tokens": 6, "seed": 2}})
    kid = _events(resp.text)[-1][1]["children"][0]
    tok = kid["tokens"][2]
    alt = next(a for a, _ in tok["top"] if a not in (tok["text"], ""))
    made = (await client.post(f"/api/nodes/{kid['id']}/branch", json={"token_index": 2, "alternative": alt})).json()
    assert made["text"] == alt and made["origin"] == "model"
    head = store.node(kid["id"])
    assert made["parent_id"] == head.id and len(head.tokens) == 2
    assert made["tokens"][0]["logprob"] == dict(map(tuple, tok["top"]))[alt]
    siblings = [c["text"] for c in (await client.get(f"/api/nodes/{head.id}/children")).json()]
    assert sorted(siblings) == sorted([alt, kid["text"][len(head.text):]])


@pytest.mark.parametrize("method, path, body, status, message", [
    ("get", "/api/nodes/nope", None, 404, "no node with id"),
    ("post", "/api/nodes/{root}/split", {"offset": 99}, 400, "split offset"),
    ("post", "/api/nodes/{root}/expand", {"params": {"n": 0}}, 400, "n: Input should be greater"),
    ("post", "/api/nodes/{root}/expand", {"model": "nope:x"}, 404, "unknown backend"),  # refused before any stream
    ("post", "/api/nodes/{root}/children", {"txt": "x"}, 400, "invalid request: text: Field required"),
    ("post", "/api/trees/{tree}/undo", None, 400, "nothing to undo"),
])
async def test_errors_are_one_clear_message(client, store, method, path, body, status, message):
    tree, root = ops.new_tree(store, "r")
    url = path.format(root=root.id, tree=tree.id)
    resp = await getattr(client, method)(url, **({"json": body} if body is not None else {}))
    assert resp.status_code == status
    text = resp.json()["error"] if status != 200 else _events(resp.text)[-1][1]["message"]
    assert message in text


async def test_host_origin_and_token_checks(store):
    app = create_app(store, default_model="mock:default")
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    assert (await c.get("/api/trees")).status_code == 200
    assert (await c.get("/api/trees", headers={"host": "evil.example:8765"})).status_code == 400
    r = await c.post("/api/trees", json={"prompt": "x"}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and store.trees() == []
    assert (await c.post("/api/trees", json={"prompt": "x"}, headers={"origin": BASE})).status_code == 200

    guarded = create_app(store, host="0.0.0.0", port=8765, token="s3cret", default_model="mock:default")
    g = httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url=BASE)
    assert (await g.get("/api/trees")).status_code == 401
    assert (await g.get("/static/main.js")).status_code == 401
    assert (await g.get("/api/trees", headers={"authorization": "Bearer s3cret"})).status_code == 200
    first = await g.get("/?token=s3cret")
    assert first.status_code == 303 and "loomwork_token_8765=s3cret" in first.headers["set-cookie"]
    assert (await g.get("/api/trees")).status_code == 200  # the cookie set by the redirect
    fresh = httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url=BASE)
    assert (await fresh.get("/api/trees", headers={"authorization": "Bearer wrong"})).status_code == 401


async def test_static_ui_is_served(client):
    page = await client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/main.js">' in page.text
    js = await client.get("/static/main.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "innerHTML" not in js.text


async def test_choose_and_bits(client, store):
    tree, root = ops.new_tree(store, "Bits")
    resp = await client.post(f"/api/nodes/{root.id}/expand", json={"params": {"n": 4, "max_tokens": 3, "seed": 1}})
    kids = _events(resp.text)[-1][1]["children"]
    chosen = (await client.post(f"/api/nodes/{kids[1]['id']}/choose", json={})).json()
    assert chosen["bits"] == 2.0 and len(chosen["candidates"]) == 4
    written = (await client.post(f"/api/nodes/{kids[1]['id']}/children", json={"text": " my words"})).json()
    report = (await client.get(f"/api/nodes/{written['id']}/bits")).json()
    assert report["model"] == "mock:default" and report["path"]["selection_bits"] == 2.0
    assert report["nodes"][-1]["intervention_bits"] > 0
    cached = (await client.get(f"/api/nodes/{written['id']}/bits", params={"score": "false"})).json()
    assert cached["path"] == report["path"] and cached["path"]["pending"] == 0  # from the cache, at once
    more = (await client.post(f"/api/nodes/{written['id']}/children", json={"text": " and more"})).json()
    unscored = (await client.get(f"/api/nodes/{more['id']}/bits", params={"score": "false"})).json()
    assert unscored["path"]["intervention_bits"] is None and unscored["path"]["pending"] == 1
    events = _events((await client.get(f"/api/nodes/{more['id']}/bits/stream")).text)
    assert events[-1][0] == "done" and events[-1][1]["report"]["path"]["pending"] == 0
    assert events[-1][1]["report"]["nodes"][-1]["intervention_bits"] > 0
    whole = (await client.get(f"/api/trees/{tree.id}/bits")).json()
    assert whole["tree_totals"]["selection_bits"] == 2.0 and whole["choices"] == 1
    bad = await client.post(f"/api/nodes/{kids[1]['id']}/choose", json={"acceptable": [kids[0]["id"]]})
    assert bad.status_code == 400 and "include the chosen" in bad.json()["error"]
