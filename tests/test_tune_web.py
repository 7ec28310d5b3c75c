"""Tuning through the API, as the page does it: start a run on trees, follow its events to the end, stop one and
resume it; bad requests refused with nothing claimed. The runs are real (their own process, a tiny model)."""

import asyncio
import json

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from loomwork import ops  # noqa: E402
from loomwork.tuning import adapters  # noqa: E402
from loomwork.web import create_app  # noqa: E402
from tests.test_web_api import BASE, _events  # noqa: E402

WORDS = ["river", "stone", "light", "bread", "cloud", "grass", "paper", "glass"]


@pytest.fixture
def base(tiny_base):
    return tiny_base


def bookmarked_trees(store) -> list[str]:
    """A tree per prompt, each with a bookmarked written continuation: the trees' SFT exports."""
    ids = []
    for i, w in enumerate(WORDS):
        tree, root = ops.new_tree(store, f"A {w}:")
        ops.set_bookmark(store, ops.add_child(store, root.id, " zz" * (i % 4 + 1) + "." * (i // 4 + 1)).id)
        ids.append(tree.id)
    return ids


@pytest.fixture
async def client(store, monkeypatch):
    monkeypatch.setattr("loomwork.web.tune_api.FOLLOW_POLL_S", 0.1)
    app = create_app(store, default_model="mock:default")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


def _body(store, base: str, name: str, **settings) -> dict:
    return {"name": name, "base": base, "trees": bookmarked_trees(store), "kl_budget": 50.0, "lr": 5e-3,
            "eval_every": 2, "lora_r": 4, **settings}


async def _follow(client, name: str) -> list[tuple[str, dict]]:
    resp = await client.get(f"/api/adapters/{name}/events", timeout=300)
    assert resp.status_code == 200
    return _events(resp.text)


async def test_a_tune_started_from_the_page_runs_to_the_end_and_is_followed(store, base, client):
    body = _body(store, base, "web-style", epochs=2, heldout=0.25, kl_prompts=2, kl_samples=2, kl_tokens=6)
    started = await client.post("/api/adapters", json=body)
    assert started.status_code == 200, started.text
    assert started.json()["status"] in ("starting", "training")
    listed = (await client.get("/api/adapters")).json()
    assert [a["name"] for a in listed] == ["web-style"]
    events = await _follow(client, "web-style")
    names = [e for e, _d in events]
    assert names[0] == "load" and "eval" in names and names[-1] == "done", names
    steps = [d for e, d in events if e == "step"]
    assert [s["step"] for s in steps] == list(range(1, steps[0]["total"] + 1))
    evals = [d for e, d in events if e == "eval"]
    assert evals[0]["step"] == 0 and evals[0]["kl_bits"] == pytest.approx(0.0, abs=1e-9)
    assert all("kl_se" in e and "heldout_loss" in e for e in evals)
    done = events[-1][1]
    assert done["status"] == "done" and done["model"] == f"hf:{base}+web-style"
    prov = done["provenance"]["data"]
    assert prov["source"]["trees"] == body["trees"] and prov["heldout"]["rows"] == 2
    # a follower that comes later gets the whole run again, and one resuming where it left off gets the rest
    again = await _follow(client, "web-style")
    assert [e for e, _d in again] == names
    # bad requests: one clear error each, nothing claimed
    for bad, message in [({**body, "name": "web-style"}, "exists already"),
                         ({**body, "name": "x", "trees": []}, "at least one tree"),
                         ({**body, "name": "x", "kl_budget": 0}, "KL budget"),
                         ({**body, "name": "x", "method": "ppo"}, "unknown method"),
                         ({**body, "name": "x", "trees": body["trees"][:1]}, "at least 2 rows"),
                         ({**body, "name": "bad name"}, "name"),
                         ({**body, "name": "x", "base": "/no/such/model"}, "unknown hf model")]:
        resp = await client.post("/api/adapters", json=bad)
        assert resp.status_code in (400, 404) and message in resp.json()["error"], (bad, resp.text)
    assert [a["name"] for a in (await client.get("/api/adapters")).json()] == ["web-style"]
    assert (await client.get("/api/adapters/nope/events")).status_code == 404
    assert (await client.post("/api/adapters/web-style/stop")).status_code == 400  # not running


async def test_a_run_stopped_from_the_page_keeps_its_checkpoint_and_resumes(store, base, client):
    from loomwork.tuning.train import resume

    body = _body(store, base, "stoppable", epochs=40, batch_size=2, kl_prompts=1, kl_samples=1, kl_tokens=4)
    assert (await client.post("/api/adapters", json=body)).status_code == 200
    for _ in range(600):  # the run's own events, read as the page's follower reads them, until it has trained
        seen, _offset = adapters.events("stoppable")
        if any(e["event"] == "eval" and e["step"] > 0 for e in seen):
            break
        await asyncio.sleep(0.1)
    assert (await client.post("/api/adapters/stoppable/stop")).status_code == 200
    events = await _follow(client, "stoppable")
    final = events[-1][1]
    assert final["status"] == "stopped by request" and 0 < final["step"] < 120
    assert (await client.post("/api/adapters/stoppable/stop")).status_code == 400  # not running any more
    kept = final["step"]
    record = resume("stoppable")
    assert record["status"] == "done" and record["step"] == 120 > kept
    lines = [json.loads(x) for x in (adapters.directory("stoppable") / "progress.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "step": kept}.items() <= next(e for e in lines if e["event"] == "resumed").items()


async def test_a_run_killed_outright_shows_as_interrupted_not_training(store, base, client):
    import os
    import signal

    body = _body(store, base, "killed", epochs=40, batch_size=2, kl_prompts=1, kl_samples=1, kl_tokens=4)
    assert (await client.post("/api/adapters", json=body)).status_code == 200
    for _ in range(600):
        seen, _offset = adapters.events("killed")
        if any(e["event"] == "step" for e in seen):
            break
        await asyncio.sleep(0.1)
    os.kill(adapters.describe("killed")["pid"], signal.SIGKILL)  # no chance to write its status
    for _ in range(50):
        state = (await client.get("/api/adapters/killed")).json()["status"]
        if state != "training":
            break
        await asyncio.sleep(0.1)
    assert state == "interrupted"  # its process is gone (reaped, not a zombie that looks alive)
    events = await _follow(client, "killed")
    assert events[-1][0] == "done" and events[-1][1]["status"] == "interrupted"
