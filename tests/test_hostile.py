"""Hostile input on every surface (API, CLI, imports): one clear error, nothing changed. The inputs live in
tests/fuzz/hostile.json and tests/fuzz/corpus/, so every one ever tried runs again in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from loomwork import ops
from loomwork.cli import cli
from loomwork.store import Store
from loomwork.store.backup import counts
from loomwork.validate import MAX_TEXT
from loomwork.web import create_app
from loomwork.web.security import MAX_BODY

HERE = Path(__file__).parent
HOSTILE = json.loads((HERE / "fuzz" / "hostile.json").read_text())
CORPUS = sorted((HERE / "fuzz" / "corpus").iterdir())
BASE = "http://127.0.0.1:8765"
CONTROL = [chr(c) for c in (*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0))]


def fingerprint(store: Store) -> tuple:
    """Everything a refused request must leave as it was: every table's row count and every tree's version."""
    with store.read() as tx:
        versions = tuple(tx.conn.exec_driver_sql("SELECT id, version FROM trees ORDER BY id").all())
    return tuple(sorted(counts(store).items())), versions


@pytest.fixture
def world(store):
    tree, root = ops.new_tree(store, "The root")
    child = ops.add_child(store, root.id, " a child")
    from loomwork.supervision import queues

    queues.create_queue(store, "q", tree=tree.id, questions=["ok?"])
    return tree, root, child


def _client(app, **headers):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=headers)


def _text_requests(tree, root, child, bad: str) -> list[tuple[str, str, dict]]:
    return [
        ("POST", "/api/trees", {"prompt": bad}),
        ("POST", "/api/trees", {"prompt": "fine", "title": bad}),
        ("POST", f"/api/nodes/{root.id}/children", {"text": bad}),
        ("POST", f"/api/nodes/{child.id}/edit", {"text": bad}),
        ("POST", f"/api/nodes/{child.id}/tags", {"add": [bad]}),
        ("POST", f"/api/nodes/{child.id}/move", {"parent_id": bad}),
        ("POST", f"/api/nodes/{child.id}/expand", {"model": bad}),
        ("POST", f"/api/nodes/{child.id}/expand", {"model": "mock:default", "params": {"stop": [bad]}}),
        ("POST", f"/api/nodes/{child.id}/choose", {"candidates": [child.id, bad]}),
        ("POST", "/api/queues", {"name": bad, "tree": tree.id}),
        ("POST", "/api/queues", {"name": "q2", "tree": tree.id, "questions": [bad]}),
        ("POST", "/api/queues/q/ratings", {"node_id": child.id, "rater": bad, "question": "ok?", "label": 1}),
        # a URL cannot hold a lone surrogate: a client sends its bytes, which the server reads as U+FFFD
        ("GET", "/api/search?q=" + quote(bad, errors="surrogatepass"), None),
    ]


@pytest.mark.parametrize("name", list(HOSTILE["refused_text"]))
async def test_api_refuses_invalid_text_everywhere_and_changes_nothing(store, world, name):
    bad = HOSTILE["refused_text"][name]
    app = create_app(store, default_model="mock:default")
    before = fingerprint(store)
    async with _client(app) as c:
        for method, path, body in _text_requests(*world, bad):
            # the body goes as the JSON escape of the bad string: how a lone surrogate arrives over HTTP
            r = await c.request(method, path, content=None if body is None else json.dumps(body),
                                headers={"content-type": "application/json"})
            ok = r.status_code < 500 if "/search" in path and "\x00" not in bad else 400 <= r.status_code < 500
            assert ok, (method, path, r.status_code, r.text[:200])
            assert r.status_code == 200 or isinstance(r.json()["error"], str), r.text[:200]
    assert fingerprint(store) == before


@pytest.mark.parametrize("name", list(HOSTILE["refused_tags"]))
async def test_api_refuses_bad_tags(store, world, name):
    app = create_app(store, default_model="mock:default")
    before = fingerprint(store)
    async with _client(app) as c:
        r = await c.post(f"/api/nodes/{world[2].id}/tags", content=json.dumps({"add": [HOSTILE["refused_tags"][name]]}),
                         headers={"content-type": "application/json"})
    assert r.status_code == 400 and "tag" in r.json()["error"]
    assert fingerprint(store) == before


async def test_api_bodies_sizes_and_shapes(store, world):
    tree, root, child = world
    app = create_app(store, default_model="mock:default")
    before = fingerprint(store)
    async with _client(app) as c:
        cases = [
            (b"[" * 100_000 + b"]" * 100_000, 400),  # 100k-deep JSON
            (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
            (b'{"text": "\xff\xfe not UTF-8"}', 400),
            (b'{"text": "' + b"x" * (MAX_TEXT + 1) + b'"}', 400),  # over the text limit, under the body limit
            (b'{"text": "' + b"x" * (MAX_BODY + 1) + b'"}', 413),  # over the body limit: refused unread
            (b'{"text": 5}', 400), (b'{"text": ["a"]}', 400), (b"", 400), (b"null", 400),
        ]
        for body, status in cases:
            r = await c.post(f"/api/nodes/{root.id}/children", content=body,
                             headers={"content-type": "application/json"})
            assert r.status_code == status, (body[:40], r.status_code, r.text[:200])
            assert "error" in r.json()

        async def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(MAX_BODY // 65536 + 2):
                yield b"x" * 65536

        r = await c.post(f"/api/nodes/{root.id}/children", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        for path in ("/api/nodes/%00/path", "/api/search?q=a%00b", "/api/search?q=" + "x" * 5000):
            r = await c.get(path)
            assert r.status_code == 400 and "error" in r.json(), (path, r.text[:200])
        r = await c.get("/api/nodes/" + "%ff%fe" + "/path")
        assert r.status_code == 404
        r = await c.get("/api/nothing-here")
        assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    assert fingerprint(store) == before


async def test_server_doors(store):
    loopback = create_app(store, default_model="mock:default")
    async with _client(loopback) as c:
        page = await c.get("/")
        assert page.headers["x-frame-options"] == "DENY"
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert (await c.get("/api/trees")).headers["x-frame-options"] == "DENY"
        assert (await c.get("/api/docs")).status_code == 404  # FastAPI's docs page would load a CDN script
        assert (await c.get("/api/openapi.json")).status_code == 200
        # DNS rebinding: another name for loopback is refused when no token protects the server
        assert (await c.get("/api/trees", headers={"host": "rebind.example:8765"})).status_code == 400

    shared = create_app(store, host="0.0.0.0", port=8765, token="s3cret", default_model="mock:default")
    import socket

    async with _client(shared) as c:
        # non-ASCII tokens everywhere: 401, never a 500 before any auth
        assert (await c.get("/?token=%C3%A9")).status_code == 401
        assert (await c.get("/api/trees", headers={"authorization": "Bearer \u00e9".encode()})).status_code == 401
        assert (await c.get("/api/trees", headers={"cookie": "loomwork_token_8765=\u00e9\u00e8".encode()})
                ).status_code == 401
        # ?token= works on a page (moved into a per-port cookie) but not on API URLs
        assert (await c.get("/api/trees?token=s3cret")).status_code == 401
        first = await c.get("/?token=s3cret")
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert "loomwork_token_8765=s3cret" in first.headers["set-cookie"]
        assert "HttpOnly" in first.headers["set-cookie"] and "Path=/" in first.headers["set-cookie"]
        assert (await c.get("/api/trees")).status_code == 200  # the cookie
        # other machines reach it by this machine's name, with the token
        name = socket.gethostname()
        assert (await c.get("/api/trees", headers={"host": f"{name}:8765"})).status_code == 200
        assert (await c.get("/api/trees", headers={"host": "evil.example:8765"})).status_code == 400

    proxied = create_app(store, host="127.0.0.1", port=8765, token="t", allow_hosts=("loom.example.org",),
                         default_model="mock:default")
    async with _client(proxied, authorization="Bearer t") as c:
        assert (await c.get("/api/trees", headers={"host": "loom.example.org"})).status_code == 200
        assert (await c.get("/api/trees", headers={"host": "loom.example.org:443"})).status_code == 200
        r = await c.post("/api/trees", json={"prompt": "x"},
                         headers={"host": "loom.example.org", "origin": "https://loom.example.org"})
        assert r.status_code == 200
        r = await c.post("/api/trees", json={"prompt": "x"},
                         headers={"host": "loom.example.org", "origin": "https://evil.example"})
        assert r.status_code == 403


def _run(*args, stdin: bytes | None = None, db: Path) -> subprocess.CompletedProcess:
    """The real command, with real argv bytes (invalid UTF-8 reaches Python as surrogate escapes)."""
    return subprocess.run([sys.executable, "-m", "loomwork.cli", "--db", str(db), *args], input=stdin,
                          capture_output=True, timeout=120)


def _one_clear_line(p: subprocess.CompletedProcess) -> str:
    err = p.stderr.decode("utf-8", "replace").strip()
    assert p.returncode == 1 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_refuses_bytes_that_are_not_utf8(tmp_path):
    db = tmp_path / "cli.sqlite"
    store = Store.open(str(db))
    tree, root = ops.new_tree(store, "root")
    before = fingerprint(store)
    assert "not valid Unicode" in _one_clear_line(_run("add", root.id, b"bad \xff text", db=db))
    assert "not valid Unicode" in _one_clear_line(_run("new", b"\xc3\x28", db=db))
    assert "tag" in _one_clear_line(_run("tag", root.id, b"\xed\xa0\x80", db=db))
    assert "not UTF-8" in _one_clear_line(_run("new", "-", stdin=b"prompt \xff\xfe", db=db))
    assert fingerprint(store) == before


@pytest.mark.parametrize("name", list(HOSTILE["refused_text"]) + list(HOSTILE["refused_tags"]))
def test_cli_refuses_each_hostile_string(store, world, name):
    bad = HOSTILE["refused_text"].get(name, HOSTILE["refused_tags"].get(name))
    tree, root, child = world
    before = fingerprint(store)
    commands = [["tag", child.id, bad]]
    if name in HOSTILE["refused_text"]:
        commands += [["new", bad], ["new", "ok", "--title", bad], ["add", root.id, bad], ["edit", child.id, bad],
                     ["move", child.id, bad], ["show", bad], ["rate", child.id, "1", "--rater", bad],
                     ["queue", "create", bad, "--tree", tree.id]]
    for argv in commands:
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 1 and result.output.startswith("error: "), (argv, result.output)
        assert result.output.count("\n") == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert fingerprint(store) == before


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_cli_imports_of_the_corpus_are_clean_or_refused_whole(store, path):
    before = fingerprint(store)
    result = CliRunner().invoke(cli, ["import", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    if result.exit_code == 0:
        assert fingerprint(store) != before
        tree = result.output.split("into tree ")[1].split()[0]
        for fmt in ("json", "pyloom", "loomsidian", "jsonl", "markdown", "text"):  # it exports again, every way
            out = CliRunner().invoke(cli, ["export", tree, "--format", fmt])
            assert out.exit_code == 0, (fmt, out.output)
    else:
        assert result.exit_code == 1 and result.output.startswith("error: ") and result.output.count("\n") == 1
        assert fingerprint(store) == before


def test_generated_monsters_are_refused(store, tmp_path):
    before = fingerprint(store)
    deep = tmp_path / "deep.json"
    deep.write_text('{"root": ' + '{"id": "x", "text": "a", "children": [' * 100_000 + "]}" * 100_000 + "}")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"root": {"id": "a", "text": "x" * (MAX_TEXT + 1)}}))
    for path, message in ((deep, "nested more than"), (huge, "the limit is 1,000,000")):
        result = CliRunner().invoke(cli, ["import", str(path)])
        assert result.exit_code == 1 and message in result.output, result.output[:300]
    assert fingerprint(store) == before


def test_database_paths_that_cannot_be_databases(tmp_path):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("hello")
    foreign = tmp_path / "foreign.sqlite"
    import sqlite3

    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE loomwork_meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT INTO loomwork_meta VALUES ('schema_version', '5'), ('app', 'loomwork')")
    con.execute("CREATE TABLE nodes (id TEXT)")
    con.commit()
    con.close()
    cases = [(str(tmp_path), "is a directory"), (str(a_file / "x.sqlite"), "is a file, not a directory"),
             (str(tmp_path / "no" / "such" / "dir.sqlite"), "does not exist"),
             ("sqlite:///" + str(tmp_path / "stray" / "x.db"), "does not exist"),
             ("postgres:/oops", "does not exist"), (str(a_file), "not a SQLite database"),
             (str(foreign), "not a loomwork database")]
    for db, message in cases:
        result = CliRunner().invoke(cli, ["--db", db, "trees"])
        assert result.exit_code == 1 and message in result.output, (db, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.sqlite", "plain.txt"]  # no stray directories


def test_terminal_output_escapes_control_characters_and_files_keep_them(store, tmp_path):
    texts = HOSTILE["accepted_text_shown_escaped"]
    tree, root = ops.new_tree(store, "".join(texts.values()))
    node = ops.add_child(store, root.id, texts["retitle"] + " and more")
    ops.tag(store, node.id, "fine")
    outputs = [CliRunner().invoke(cli, argv).output for argv in (
        ["show", node.id], ["show", tree.id], ["show", node.id, "--path"], ["show", node.id, "--tokens"],
        ["trees"], ["export", tree.id, "--format", "text"], ["export", tree.id, "--format", "markdown"],
        ["history", tree.id], ["show", node.id, "--json"], ["export", tree.id, "--format", "pyloom"])]
    for out in outputs:
        assert not any(ch in out for ch in CONTROL), repr(out[:200])
    assert json.loads(outputs[-2])["text"] == path_text_of(store, node.id)  # JSON on stdout means the same text
    assert json.loads(outputs[-1])["root"]["text"] == root.text
    exact = tmp_path / "exact.txt"
    assert CliRunner().invoke(cli, ["export", node.id, "--format", "text", "-o", str(exact)]).exit_code == 0
    assert exact.read_bytes().decode("utf-8").rstrip("\n") == path_text_of(store, node.id)  # \r and all


def path_text_of(store, node_id):
    return "".join(n.text for n in store.path(node_id))


# -- what a reviewer trying it as a new user found -------------------------------------------------------------

def test_non_finite_numbers_in_files_are_refused(store, tmp_path):
    before = fingerprint(store)
    for name, line in (("inf.jsonl", '{"id":"a","parent_id":null,"text":"x","origin":"model","tokens":[{"text":"x",'
                                     '"logprob":-0.5,"top":[["x",-0.5],["y",-Infinity]]}]}'),
                       ("nan.json", '{"root": {"id": "a", "text": "x", "meta": {"w": NaN}}}'),
                       ("pos.jsonl", '{"id":"a","parent_id":null,"text":"x","tokens":[{"text":"x","logprob":2,"top":[]}]}')):
        (tmp_path / name).write_text(line + "\n")
        result = CliRunner().invoke(cli, ["import", str(tmp_path / name)])
        assert result.exit_code == 1 and ("not a JSON number" in result.output or "finite" in result.output), \
            result.output
    assert fingerprint(store) == before


def test_deep_files_without_ids_import_in_linear_space(store, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"root": ' + '{"text": "a", "children": [' * 5000 + '{"text": "end"}' + "]}" * 5000 + "}")
    assert CliRunner().invoke(cli, ["import", str(deep)]).exit_code == 0
    with store.read() as tx:
        stored = sum(len(str(m)) for (m,) in tx.conn.exec_driver_sql("SELECT meta FROM nodes"))
    assert stored < 1_000_000  # was 150 MB: each node kept its whole path as its id


async def test_a_whole_tree_goes_only_when_named(store, world):
    tree, root, child = world
    app = create_app(store, default_model="mock:default")
    async with _client(app) as c:
        r = await c.delete(f"/api/nodes/{root.id}")
        assert r.status_code == 400 and "whole tree" in r.json()["error"]
        assert (await c.delete(f"/api/nodes/{child.id}")).json() == {"deleted": 1}
        assert (await c.post(f"/api/trees/{tree.id}/undo", json={})).status_code == 200  # a subtree comes back
        assert (await c.delete(f"/api/trees/{tree.id}")).json() == {"deleted": 2}
        assert (await c.get(f"/api/trees/{tree.id}")).status_code == 404


async def test_ratings_and_queues_refuse_what_cannot_be(store, world):
    tree, root, child = world
    app = create_app(store, default_model="mock:default")
    before = fingerprint(store)
    async with _client(app) as c:
        rating = {"node_id": child.id, "rater": "bob", "question": "ok?", "label": 1}
        for bad in ({"critique_id": "nonexistent"}, {"critique_id": "x" * 100}, {"label": True}, {"label": "1"}):
            r = await c.post("/api/queues/q/ratings", json={**rating, **bad})
            assert r.status_code == 400, (bad, r.text)
        for bad in ({"seed": 2**63}, {"seed": 2**80}, {"seed": -1}, {"critic": "\u0000"}, {"tag": "a\u001b"},
                    {"min_depth": 2**70}, {"min_depth": 5, "max_depth": 1}, {"min_depth": "1"}, {"unknown": 1}):
            r = await c.post("/api/queues", content=json.dumps({"name": "new", "tree": tree.id, **bad}),
                             headers={"content-type": "application/json"})
            assert r.status_code == 400, (bad, r.text)
        for bad in ({"offset": True}, {"offset": "2"}):
            assert (await c.post(f"/api/nodes/{child.id}/split", json=bad)).status_code == 400
    assert fingerprint(store) == before
    result = CliRunner().invoke(cli, ["queue", "create", "Q", "--tree", tree.id, "--seed", str(2**63)])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "Traceback" not in result.output


async def test_a_shared_server_offers_only_its_own_models(store, world):
    tree, root, child = world
    shared = create_app(store, host="0.0.0.0", port=8765, token="t", default_model="mock:default",
                        allowed_models={"openai:http://gpu-box:8000/v1#big"})
    async with _client(shared, authorization="Bearer t") as c:
        for ref in ("openai:http://169.254.169.254/latest#x", "hf:/etc"):
            r = await c.post(f"/api/nodes/{child.id}/expand", json={"model": ref})
            assert r.status_code == 400 and "does not offer" in r.json()["error"]
        assert (await c.get(f"/api/nodes/{child.id}/next?model=openai:http://10.0.0.1/v1%23x")).status_code == 400
        r = await c.post(f"/api/nodes/{child.id}/expand", json={"model": "mock:default", "params": {"n": 1}})
        assert r.status_code == 200 and "event: done" in r.text
        assert (await c.get("/api/trees", headers={"host": "192.0.2.7:8765"})).status_code == 200  # its IP
        assert (await c.get("/api/trees", headers={"host": "192.0.2.7:9999"})).status_code == 400  # not its port
    local = create_app(store, default_model="mock:default")  # your own machine: any model you name
    async with _client(local) as c:
        r = await c.post(f"/api/nodes/{child.id}/expand", json={"model": "openai:http://[::1"})
        assert r.status_code == 400 and "not a server address" in r.json()["error"]


def test_the_cli_on_odd_ground(store, world, tmp_path, monkeypatch):
    tree, root, child = world
    live = store.engine.url.database
    for argv, message in ((["backup", live, "--force"], "is the database itself"),
                          (["--db", ":memory:", "trees"], "in-memory"), (["--db", "sqlite://", "trees"], "in-memory"),
                          (["--db", "/tmp/\udcff.sqlite", "trees"], "valid UTF-8")):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 1 and message in result.output, (argv, result.output)
    monkeypatch.setenv("LOOMWORK_USER", "a\x1bb")
    result = CliRunner().invoke(cli, ["add", root.id, " x"])
    assert result.exit_code == 1 and "LOOMWORK_USER" in result.output
    monkeypatch.delenv("LOOMWORK_USER")
    result = CliRunner().invoke(cli, ["new", "-"], input="\ufeffwith a byte-order mark".encode())
    assert result.exit_code == 0
    made = result.output.split()[1]
    assert store.tree(made).title == "with a byte-order mark"
    p = subprocess.run([sys.executable, "-m", "loomwork.cli", "new", "-"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, close_fds=True)
    assert p.returncode in (0, 1) and "Traceback" not in p.stderr
    restore_into = tmp_path / "never-made.sqlite"
    result = CliRunner().invoke(cli, ["--db", str(restore_into), "restore", str(tmp_path / "nope.sqlite")])
    assert result.exit_code == 1 and not restore_into.exists()


def test_check_flags_text_no_database_should_hold(tmp_path):
    db = tmp_path / "nul.sqlite"
    store = Store.open(str(db))
    _, root = ops.new_tree(store, "fine")
    import sqlite3

    raw = sqlite3.connect(db)
    raw.execute("UPDATE nodes SET text = 'a' || char(0) || 'b' WHERE id = ?", (root.id,))
    raw.commit()
    raw.close()
    from loomwork.store.check import check

    assert ("text", root.id) in {(p.kind, p.id) for p in check(store).problems}


async def test_wrong_shapes_are_refused_not_taken_as_defaults(tmp_path, monkeypatch):
    """Issue 27: an empty list for the generation settings, an empty candidate list, an empty model name and an
    empty LOOMWORK_USER are each one clear refusal, not silently a default; nothing is changed."""
    from loomwork import ops
    from loomwork.store import Store
    from loomwork.errors import InvalidInput
    from loomwork.store.journal import default_actor
    from loomwork.web.app import create_app

    store = Store.open(str(tmp_path / "w.sqlite"))
    tree, root = ops.new_tree(store, "Once")
    child = ops.add_child(store, root.id, " upon")
    app = create_app(store)
    async with _client(app) as c:
        for method in ("PUT", "PATCH"):
            r = await c.request(method, f"/api/trees/{tree.id}/settings", json={"generation": []})
            assert r.status_code == 400 and "generation" in r.json()["error"]
        r = await c.post(f"/api/nodes/{child.id}/choose", json={"candidates": []})
        assert r.status_code == 400 and "candidates" in r.json()["error"]
        r = await c.post(f"/api/nodes/{child.id}/expand", json={"model": "", "params": {"n": 1}})
        assert r.status_code in (400, 422)
    with store.read() as tx:
        assert len(tx.tree_nodes(tree.id)) == 2 and not (tx.tree(tree.id).meta.get("settings") or {}).get("generation")
    monkeypatch.setenv("LOOMWORK_USER", "")
    with pytest.raises(InvalidInput, match="LOOMWORK_USER"):
        default_actor()
    store.close()


def test_bidirectional_overrides_cannot_disguise_a_tag_or_a_name(store):
    """Issue 27: "\\u202egnp.exe\\u202c" would show as "exe.png": tags and names refuse bidi controls (nothing
    changes), and the terminal shows any in node text escaped."""
    from loomwork import ops
    from loomwork.errors import InvalidInput
    from loomwork.supervision import queues
    from loomwork.validate import terminal_safe

    tree, root = ops.new_tree(store, "Root")
    for bad in ("\u202egnp.exe\u202c", "a\u2066b\u2069"):
        with pytest.raises(InvalidInput, match="bidirectional"):
            ops.tag(store, root.id, bad)
        with pytest.raises(InvalidInput, match="bidirectional"):
            queues.create_queue(store, bad, tree=tree.id, questions=["ok?"])
    assert store.node(root.id).tags == ()
    assert terminal_safe("x\u202ey") == "x\\u202ey" and terminal_safe("שלום\n") == "שלום\n"
