"""Accounts and roles on a shared server (docs/teams.md): tokens stored as hashes, one answer for every bad
token, every forbidden action of every role refused with nothing changed, and each write recorded under its
account. Over HTTP in process (httpx over ASGI) and through the library directly."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select, update

pytest.importorskip("fastapi")

from loomwork import accounts, ops  # noqa: E402
from loomwork.curation import record_choice  # noqa: E402
from loomwork.errors import Forbidden  # noqa: E402
from loomwork.store import access, schema  # noqa: E402
from loomwork.store.access import Principal, as_principal  # noqa: E402
from loomwork.supervision import queues, ratings  # noqa: E402
from loomwork.web import create_app  # noqa: E402
from loomwork.web.permissions import RULES  # noqa: E402

BASE = "http://127.0.0.1:8765"
ROLE_OF = {"outsider": None, "viewer": "viewer", "rater": "rater", "editor": "editor"}


def digest(store) -> str:
    """Every row of every table but presence and read marks (who has a tree open, or has read what, is not a change
    to anything)."""
    h = hashlib.sha256()
    with store.read() as tx:
        for table in schema.metadata.sorted_tables:
            if table.name in ("presence", "node_reads"):
                continue
            rows = tx.conn.execute(select(table)).all()
            h.update(table.name.encode())
            for r in sorted(repr(tuple(r)) for r in rows):
                h.update(r.encode())
    return h.hexdigest()


@pytest.fixture
def team(store):
    """A tree owned by `owner`, shared with one account per role; a queue on it; a steering vector and a grader
    made by the owner."""
    tokens = {name: accounts.add(store, name) for name in ("owner", *ROLE_OF, "boss")}
    accounts.revoke(store, "boss")
    tokens["admin"] = accounts.add(store, "admin", admin=True)
    with as_principal(Principal("owner")):
        tree, root = ops.new_tree(store, "The problem")
        a = ops.add_child(store, root.id, " step one")
        b = ops.add_child(store, a.id, " step two")
        for name, role in ROLE_OF.items():
            if role:
                accounts.grant(store, name, tree.id, role)
        queues.create_queue(store, "q", tree=tree.id)
    with store.tx() as tx:
        tx.conn.execute(schema.steering_vectors.insert().values(
            id="v1", name="calm", model="mock:default", layer=1, method="actadd", pairs=[], norm=1.0, vector=[1.0],
            created_at=datetime.now(timezone.utc), created_by="owner"))
    app = create_app(store, default_model="mock:default", accounts=True, rate_limit=1000)

    def client(name: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {tokens[name]}"} if name else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=headers)

    return {"store": store, "tree": tree.id, "root": root.id, "a": a.id, "b": b.id, "tokens": tokens,
            "client": client, "app": app}


def test_tokens_are_stored_only_as_hashes_and_expire(store):
    token = accounts.add(store, "ada", expires_days=1)
    assert token.startswith("lw_") and len(token) == 46
    with store.read() as tx:
        stored = [tuple(r) for r in tx.conn.execute(select(schema.accounts))]
    assert token not in repr(stored) and hashlib.sha256(token.encode()).hexdigest() in repr(stored)
    assert accounts.authenticate(store, token) == Principal("ada")
    with store.tx() as tx:  # a day later
        tx.conn.execute(update(schema.accounts).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert accounts.authenticate(store, token) is None
    assert [a["status"] for a in accounts.listing(store)] == ["expired"]
    fresh = accounts.rotate(store, "ada")
    assert accounts.authenticate(store, fresh) == Principal("ada") and accounts.authenticate(store, token) is None
    accounts.revoke(store, "ada")
    assert accounts.authenticate(store, fresh) is None


async def test_every_bad_token_gets_the_same_answer(team, tmp_path):
    from loomwork.store import Store

    with Store.open(str(tmp_path / "other.db")) as other:  # a token of another server's database
        foreign = accounts.add(other, "viewer")
    real = team["tokens"]["viewer"]
    bad = [None, "", "nonsense", "lw_" + "a" * 43, foreign, team["tokens"]["boss"], real[:-1], real + "x",
           "lw_é" + "a" * 42, "Bearer", real.upper()]
    answers = set()
    for token in bad:
        headers = {} if token is None else {"Authorization": f"Bearer {token}".encode("utf-8")}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=team["app"]), base_url=BASE) as c:
            r = await c.get("/api/trees", headers=headers)
            answers.add((r.status_code, r.text))
    assert len(answers) == 1 and answers.pop()[0] == 401
    async with team["client"]("viewer") as c:
        assert (await c.get("/api/trees")).status_code == 200


def _requests(t: dict) -> dict[tuple[str, str], tuple[str, dict | None]]:
    """A well-formed request for every route that acts on a tree, node or queue."""
    tree, root, a, b = t["tree"], t["root"], t["a"], t["b"]
    gen = {"model": "mock:default", "params": {"n": 1, "max_tokens": 2}}
    return {
        ("GET", "/api/trees/{tree_id}"): (f"/api/trees/{tree}", None),
        ("GET", "/api/trees/{tree_id}/settings"): (f"/api/trees/{tree}/settings", None),
        ("PUT", "/api/trees/{tree_id}/settings"): (f"/api/trees/{tree}/settings", {"memory": "m"}),
        ("PATCH", "/api/trees/{tree_id}/settings"): (f"/api/trees/{tree}/settings", {"memory": "m"}),
        ("GET", "/api/trees/{tree_id}/version"): (f"/api/trees/{tree}/version", None),
        ("GET", "/api/trees/{tree_id}/history"): (f"/api/trees/{tree}/history", None),
        ("GET", "/api/trees/{tree_id}/undo"): (f"/api/trees/{tree}/undo", None),
        ("POST", "/api/trees/{tree_id}/undo"): (f"/api/trees/{tree}/undo", {"force": True}),
        ("POST", "/api/trees/{tree_id}/redo"): (f"/api/trees/{tree}/redo", {"force": True}),
        ("GET", "/api/trees/{tree_id}/bits"): (f"/api/trees/{tree}/bits", None),
        ("GET", "/api/trees/{tree_id}/events"): (f"/api/trees/{tree}/events", None),
        ("POST", "/api/trees/{tree_id}/presence"): (f"/api/trees/{tree}/presence", {"client": "c", "node_id": a}),
        ("GET", "/api/trees/{tree_id}/reads"): (f"/api/trees/{tree}/reads", None),
        ("POST", "/api/trees/{tree_id}/reads"): (f"/api/trees/{tree}/reads", {"nodes": [a]}),
        ("GET", "/api/trees/{tree_id}/roles"): (f"/api/trees/{tree}/roles", None),
        ("PUT", "/api/trees/{tree_id}/roles"): (f"/api/trees/{tree}/roles", {"account": "viewer", "role": "owner"}),
        ("DELETE", "/api/trees/{tree_id}"): (f"/api/trees/{tree}", None),
        ("GET", "/api/nodes/{node_id}"): (f"/api/nodes/{a}", None),
        ("GET", "/api/nodes/{node_id}/path"): (f"/api/nodes/{b}/path", None),
        ("GET", "/api/nodes/{node_id}/children"): (f"/api/nodes/{a}/children", None),
        ("GET", "/api/nodes/{node_id}/outline"): (f"/api/nodes/{root}/outline", None),
        ("GET", "/api/nodes/{node_id}/step"): (f"/api/nodes/{a}/step", None),
        ("GET", "/api/nodes/{node_id}/subtree"): (f"/api/nodes/{root}/subtree", None),
        ("GET", "/api/nodes/{node_id}/bits"): (f"/api/nodes/{b}/bits", None),
        ("GET", "/api/nodes/{node_id}/bits/stream"): (f"/api/nodes/{b}/bits/stream", None),
        ("GET", "/api/nodes/{node_id}/next"): (f"/api/nodes/{b}/next?model=mock:default", None),
        ("GET", "/api/nodes/{node_id}/mass-tree"): (f"/api/nodes/{b}/mass-tree?model=mock:default", None),
        ("GET", "/api/nodes/{node_id}/logit-lens"): (f"/api/nodes/{b}/logit-lens", None),
        ("POST", "/api/nodes/{node_id}/children"): (f"/api/nodes/{a}/children", {"text": " more"}),
        ("POST", "/api/nodes/{node_id}/edit"): (f"/api/nodes/{a}/edit", {"text": " changed"}),
        ("POST", "/api/nodes/{node_id}/split"): (f"/api/nodes/{a}/split", {"offset": 2}),
        ("POST", "/api/nodes/{node_id}/merge"): (f"/api/nodes/{b}/merge", None),
        ("POST", "/api/nodes/{node_id}/archive"): (f"/api/nodes/{b}/archive", {"on": True}),
        ("POST", "/api/nodes/{node_id}/bookmark"): (f"/api/nodes/{b}/bookmark", {"on": True}),
        ("POST", "/api/nodes/{node_id}/tags"): (f"/api/nodes/{b}/tags", {"add": ["t"]}),
        ("POST", "/api/nodes/{node_id}/chapter"): (f"/api/nodes/{b}/chapter", {"title": "c"}),
        ("POST", "/api/nodes/{node_id}/move"): (f"/api/nodes/{b}/move", {"parent_id": root}),
        ("POST", "/api/nodes/{node_id}/branch"): (f"/api/nodes/{b}/branch", {"token_index": 0, "alternative": "x"}),
        ("POST", "/api/nodes/{node_id}/choose"): (f"/api/nodes/{b}/choose", {}),
        ("POST", "/api/nodes/{node_id}/expand"): (f"/api/nodes/{b}/expand", gen),
        ("POST", "/api/nodes/{node_id}/sweep"): (f"/api/nodes/{b}/sweep", {"name": "calm", "coefs": [0, 1], **gen}),
        ("POST", "/api/nodes/{node_id}/bon"): (f"/api/nodes/{b}/bon", {"grader": "g", **gen}),
        ("POST", "/api/nodes/{node_id}/grow"): (f"/api/nodes/{b}/grow", {"grader": "g", "nodes": 2}),
        ("POST", "/api/nodes/{node_id}/goodhart"): (f"/api/nodes/{b}/goodhart", {"proxy": "g", "gold": "g"}),
        ("DELETE", "/api/nodes/{node_id}"): (f"/api/nodes/{b}", None),
        ("GET", "/api/queues/{queue}/next"): ("/api/queues/q/next?rater=x", None),
        ("GET", "/api/queues/{queue}/items/{node_id}"): (f"/api/queues/q/items/{a}?rater=x", None),
        ("POST", "/api/queues/{queue}/items/{node_id}/critique"): (f"/api/queues/q/items/{a}/critique", None),
        ("POST", "/api/queues/{queue}/ratings"): ("/api/queues/q/ratings", {
            "node_id": a, "rater": "x", "label": 1, "question": ratings.DEFAULT_QUESTIONS[0]}),
        ("GET", "/api/queues/{queue}/summary"): ("/api/queues/q/summary", None),
        ("PUT", "/api/queues/{queue}/roles"): ("/api/queues/q/roles", {"account": "viewer", "role": "reviewer"}),
        ("GET", "/api/queues/{queue}/disagreements"): ("/api/queues/q/disagreements", None),
        ("POST", "/api/queues/{queue}/adjudications"): ("/api/queues/q/adjudications", {
            "node_id": a, "question": ratings.DEFAULT_QUESTIONS[0], "label": 1}),
    }


def _forbidden(rule: tuple[str, ...], role: str | None) -> bool:
    if rule[0] in ("tree", "node"):
        return access.rank(role) < access.rank(rule[1])
    if rule[0] == "queue":  # none of these accounts has a place on the queue: a member rates the tree
        return access.rank(role) < access.rank("rater") if rule[1] == "member" else True
    return False


async def test_every_forbidden_action_for_every_role_is_refused_and_changes_nothing(team):
    requests = _requests(team)
    scoped = {k for k, rule in RULES.items() if rule[0] in ("tree", "node", "queue")}
    assert scoped <= set(requests), f"no request written for {sorted(scoped - set(requests))}"
    before, tried = digest(team["store"]), 0
    for who, role in ROLE_OF.items():
        async with team["client"](who) as c:
            for key in sorted(scoped):
                if not _forbidden(RULES[key], role):
                    continue
                url, body = requests[key]
                r = await c.request(key[0], url, json=body)
                assert r.status_code == 403, (who, key, r.status_code, r.text)
                assert who in r.json()["error"], r.text
                tried += 1
    assert tried > 100 and digest(team["store"]) == before


async def test_every_route_has_an_access_rule(team):
    listed = [x for r in team["app"].routes for x in getattr(getattr(r, "original_router", None), "routes", [r])]
    routes = {(m, r.path) for r in listed for m in getattr(r, "methods", ()) or () if m != "HEAD"}
    routes -= {("GET", "/api/openapi.json")}
    assert routes - set(RULES) == set(), "a route without an access rule is refused to everyone but admins"
    assert set(RULES) - routes == set(), "a rule for a route that does not exist"


def test_the_library_refuses_writes_whatever_the_route(team):
    """Below the routes: each write function, run as an account, checks the role where it locks the tree."""
    store, a, b, tree = team["store"], team["a"], team["b"], team["tree"]
    before = digest(store)
    writes = [lambda: ops.add_child(store, a, " x"), lambda: ops.edit(store, a, " y"),
              lambda: ops.split(store, a, 2), lambda: ops.merge(store, b), lambda: ops.set_archived(store, b),
              lambda: ops.set_bookmark(store, b), lambda: ops.tag(store, b, "t"), lambda: ops.move(store, b, team["root"]),
              lambda: ops.delete_subtree(store, b), lambda: ops.undo(store, tree, force=True),
              lambda: record_choice(store, b), lambda: ops.delete_tree(store, tree)]
    for name in ("viewer", "rater", "outsider"):
        with as_principal(Principal(name)):
            for write in writes:
                with pytest.raises(Forbidden):
                    write()
            if name != "rater":
                with pytest.raises(Forbidden):
                    ratings.rate(store, a, name, 1)
    with as_principal(Principal("outsider")):
        with pytest.raises(Forbidden):
            store.node(a)  # not even a read
        with pytest.raises(Forbidden):
            store.path(b)
        with store.read() as tx:
            assert tx.trees() == [] and tx.search("step") == []
    with as_principal(Principal("editor")):
        with pytest.raises(Forbidden):  # the owner's operation: taking it back is the owner's call
            ops.undo(store, tree, force=True)
        with pytest.raises(Forbidden):
            ops.delete_tree(store, tree)
        with pytest.raises(Forbidden):
            accounts.grant(store, "viewer", tree, "editor")
        with pytest.raises(Forbidden):
            queues.create_queue(store, "q2", tree=tree)
    assert digest(store) == before


async def test_escalation_through_shared_records_and_names(team):
    store, a, tree = team["store"], team["a"], team["tree"]
    async with team["client"]("editor") as c:
        r = await c.delete("/api/steering/calm")
        assert r.status_code == 403 and "only they or an admin" in r.json()["error"]
        r = await c.post("/api/queues", json={"name": "mine", "tree": tree})
        assert r.status_code == 403
        r = await c.post("/api/steering", json={"name": "s", "layer": 1, "model": "mock:default",
                                                "plus_node": a, "minus_node": a})
        # a node it can see passes the access check and reaches the model, which (the mock) makes no vectors
        assert r.status_code == 400 and "editor" not in r.json()["error"], r.text
    async with team["client"]("outsider") as c:
        r = await c.post("/api/steering", json={"name": "s", "layer": 1, "model": "mock:default",
                                                "plus_node": a, "minus_node": a})
        assert r.status_code == 403, r.text  # another tree's text, read through a shared record
        r = await c.post("/api/adapters", json={"name": "x", "trees": [tree], "kl_budget": 1.0,
                                                "base": "gemma-3-270m"})
        assert r.status_code == 403 and "not shared with outsider" in r.text  # training on another's tree
        assert (await c.get("/api/trees")).json() == []
        assert (await c.get(f"/api/resolve?ref={tree[:5]}")).status_code == 404
        assert (await c.get("/api/search?q=step")).json() == []
    async with team["client"]("rater") as c:  # a rating is the account's own, whatever name it gives
        r = await c.post("/api/queues/q/ratings", json={"node_id": a, "rater": "owner", "label": 1,
                                                        "question": ratings.DEFAULT_QUESTIONS[0]})
        assert r.status_code == 200, r.text
    assert [r["rater"] for r in ratings.current_for_tree(store, tree).values()] == ["rater"]


async def test_a_queue_rater_rates_the_queue_and_sees_nothing_else(team):
    store, a = team["store"], team["a"]
    with as_principal(Principal("owner")):
        accounts.grant_queue(store, "outsider", "q", "rater")
    async with team["client"]("outsider") as c:
        item = (await c.get("/api/queues/q/next?rater=outsider")).json()
        assert item["step"]["id"] in (team["a"], team["b"])
        assert [q["name"] for q in (await c.get("/api/queues")).json()] == ["q"]
        view = (await c.get(f"/api/queues/q/items/{a}?rater=outsider")).json()
        assert view["step"]["text"] == " step one"
        r = await c.post("/api/queues/q/ratings", json={"node_id": a, "rater": "x", "label": -1,
                                                        "question": ratings.DEFAULT_QUESTIONS[0]})
        assert r.status_code == 200, r.text
        for url in (f"/api/nodes/{a}", f"/api/trees/{team['tree']}", "/api/queues/q/summary"):
            assert (await c.get(url)).status_code == 403, url
        r = await c.put("/api/queues/q/roles", json={"account": "outsider", "role": "reviewer"})
        assert r.status_code == 403  # no promoting oneself


async def test_writes_record_the_account_not_the_header(team):
    store = team["store"]
    async with team["client"]("editor") as c:
        c.headers["X-Loomwork-User"] = "owner"
        made = (await c.post(f"/api/nodes/{team['a']}/children", json={"text": " mine"})).json()
        assert made["author"] == "editor"
        await c.post(f"/api/nodes/{made['id']}/choose", json={})
        history = (await c.get(f"/api/trees/{team['tree']}/history")).json()
    assert history[-1]["actor"] == "editor"
    assert store.node(made["id"]).author == "editor"
    with store.read() as tx:
        assert tx.conn.execute(select(schema.choices.c.actor)).scalars().all() == ["editor"]
        assert tx.conn.execute(select(schema.queues.c.created_by)).scalars().all() == ["owner"]


async def test_admins_see_everything_and_revocation_is_prompt(team, monkeypatch):
    from loomwork.web import auth

    monkeypatch.setattr(auth, "CACHE_S", 0.0)
    async with team["client"]("admin") as c:
        assert [t["id"] for t in (await c.get("/api/trees")).json()] == [team["tree"]]
        assert (await c.get(f"/api/trees/{team['tree']}/roles")).status_code == 200
    async with team["client"]("viewer") as c:
        assert (await c.get("/api/trees")).status_code == 200
        accounts.revoke(team["store"], "viewer")
        assert (await c.get("/api/trees")).status_code == 401


async def test_model_work_has_a_rate_limit_per_account(store):
    token = accounts.add(store, "busy")
    other = accounts.add(store, "calm")
    app = create_app(store, default_model="mock:default", accounts=True, rate_limit=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        root = (await c.post("/api/trees", json={"prompt": "Go"})).json()["root"]["id"]
        codes = [(await c.post(f"/api/nodes/{root}/expand", json={"params": {"n": 1, "max_tokens": 1}})).status_code
                 for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = await c.post(f"/api/nodes/{root}/expand", json={"params": {"n": 1, "max_tokens": 1}})
        assert int(r.headers["retry-after"]) >= 1 and "allowance" in r.json()["error"]
        assert (await c.post(f"/api/nodes/{root}/children", json={"text": " by hand"})).status_code == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                 headers={"Authorization": f"Bearer {other}"}) as c:
        mine = (await c.post("/api/trees", json={"prompt": "Mine"})).json()["root"]["id"]
        assert (await c.post(f"/api/nodes/{mine}/expand", json={"params": {"n": 1}})).status_code == 200


def test_only_its_maker_stops_or_deletes_an_adapter(store):
    from loomwork.tuning import adapters, jobs

    adapters.begin("shared-style", {"name": "shared-style", "base": "gemma-3-270m", "pid": 999_999_999,
                                    "data": {"source": {"trees": [], "by": "ada"}}})
    for name in ("bob", "eve"):
        with as_principal(Principal(name)):
            with pytest.raises(Forbidden, match="only they or an admin"):
                adapters.delete("shared-style")
            with pytest.raises(Forbidden):
                jobs.request_stop("shared-style")
    assert adapters.directory("shared-style").is_dir()
    with as_principal(Principal("ada")):
        adapters.delete("shared-style")
    assert not adapters.directory("shared-style").is_dir()


def test_grants_that_change_nothing_record_nothing_and_none_takes_a_role_away(team):
    store, tree = team["store"], team["tree"]
    with store.read() as tx:
        v = tx.version(tree)
    with as_principal(Principal("owner")):
        accounts.grant(store, "viewer", tree, "viewer")  # as it was
        accounts.grant(store, "boss", tree, None)  # had none
        with store.read() as tx:
            assert tx.version(tree) == v
        roles = accounts.grant(store, "viewer", tree, "none")
    assert "viewer" not in [r["account"] for r in roles]
    with store.read() as tx:
        assert tx.version(tree) == v + 1


def test_a_tree_made_at_the_terminal_is_owned_by_the_account_named_like_its_maker(store, monkeypatch):
    accounts.add(store, "ada")
    monkeypatch.setenv("LOOMWORK_USER", "ada")
    tree, _root = ops.new_tree(store, "Made at the terminal")
    assert accounts.sharing(store, tree.id) == [{"account": "ada", "role": "owner"}]
    monkeypatch.setenv("LOOMWORK_USER", "nobody-here")
    other, _root = ops.new_tree(store, "By someone without an account")
    assert accounts.sharing(store, other.id) == []


async def test_the_api_takes_none_or_null_to_take_a_role_away(team):
    async with team["client"]("owner") as c:
        for role in ("none", None):
            await c.put(f"/api/trees/{team['tree']}/roles", json={"account": "rater", "role": "rater"})
            r = await c.put(f"/api/trees/{team['tree']}/roles", json={"account": "rater", "role": role})
            assert r.status_code == 200 and "rater" not in [x["account"] for x in r.json()]
        r = await c.put(f"/api/trees/{team['tree']}/roles", json={"account": "*", "role": "owner"})
        assert r.status_code == 400
    async with team["client"]("editor") as c:
        r = await c.delete(f"/api/trees/{team['tree']}")
        assert r.status_code == 403 and "is an editor of" in r.json()["error"]
