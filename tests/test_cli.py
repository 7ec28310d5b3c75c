"""The CLI end to end (in process, with click's runner), including the bad-input contract: one clear message, a
non-zero exit code, no traceback, and an unchanged database."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest
from click.testing import CliRunner

from loomwork.cli import cli


@pytest.fixture
def run(loomwork_home):
    runner = CliRunner()

    def go(*args, ok=True, input=None):
        result = runner.invoke(cli, [str(a) for a in args], input=input)
        if ok:
            assert result.exit_code == 0, result.output + str(result.exception)
        return result

    return go


def _ids(run, prompt="Once upon a time"):
    data = json.loads(run("new", prompt, "--json").stdout)
    return data["tree"]["id"], data["root"]["id"]


def _db_digest(home) -> str:
    con = sqlite3.connect(home / "loom.sqlite")
    dump = "\n".join(con.iterdump())
    con.close()
    return hashlib.sha256(dump.encode()).hexdigest()


def test_tour(run):
    out = run("new", "Once upon a time").stdout
    assert out.startswith("tree ") and "\nroot " in out
    tree_id, root = _ids(run, "The lighthouse")
    kids = json.loads(run("expand", root, "-m", "mock", "-n", 3, "--max-tokens", 8, "--seed", 1, "--json").stdout)
    assert len(kids["children"]) == 3
    gen = kids["generation"]
    assert gen["backend"] == "mock" and gen["seed"] == 1 and gen["params"]["n"] == 3
    first = kids["children"][0]
    assert first["origin"] == "model" and first["tokens"] and first["generation_id"] == gen["id"]
    assert run("show", first["id"]).stdout == "The lighthouse" + first["text"] + "\n"
    human = json.loads(run("add", first["id"], " and then", "--json").stdout)
    assert human["origin"] == "human"
    edited = json.loads(run("edit", human["id"], " but then", "--json").stdout)
    assert edited["origin"] == "edit" and edited["source_id"] == human["id"]
    assert json.loads(run("show", human["id"], "--json").stdout)["node"]["text"] == " and then"
    split = json.loads(run("split", human["id"], 4, "--json").stdout)
    assert split["head"]["text"] == " and" and split["tail"]["text"] == " then"
    assert json.loads(run("merge", human["id"], "--json").stdout)["text"] == " and then"
    run("bookmark", edited["id"])
    run("tag", edited["id"], "keep", "maybe")
    run("tag", edited["id"], "maybe", "--remove")
    run("archive", kids["children"][2]["id"])
    outline = run("show", tree_id).stdout
    assert "★ #keep" in outline and kids["children"][2]["id"] not in outline
    assert kids["children"][2]["id"] in run("show", tree_id, "--archived").stdout
    run("archive", kids["children"][2]["id"], "--restore")
    run("move", edited["id"], root)
    path = run("show", edited["id"], "--path").stdout.splitlines()
    assert [line.split()[0] for line in path] == [root, edited["id"]]
    listing = run("trees").stdout
    assert tree_id in listing and "The lighthouse" in listing
    exported = json.loads(run("export", tree_id, "--format", "json").stdout)
    assert exported["format"] == "loomwork" and len(exported["root"]["children"]) == 4
    text = run("export", tree_id, "--format", "text").stdout
    assert text.count("\n--- ") + 1 == 4 and "The lighthouse but then" in text
    models = json.loads(run("models", "--json").stdout)
    assert {"mock:default", "hf:gemma-3-270m", "hf:smollm2-135m-instruct"} <= {m["ref"] for m in models}
    assert run("delete", kids["children"][1]["id"], "--yes").stdout.startswith("deleted 1 node")
    assert "would take back" in run("undo", tree_id, "--dry-run").stdout
    undid = run("undo", tree_id).stdout
    words = kids["children"][1]["text"].split()[0]
    assert undid.startswith("undid #") and f"delete “{words}" in undid and "(yours)" in undid  # named by its words
    assert kids["children"][1]["id"] in run("show", tree_id).stdout
    assert run("redo", root).stdout.startswith("redid #")
    log = run("history", tree_id).stdout.splitlines()
    assert "generate 3 after “The lighthouse”" in log[0] and "delete" in log[-1]
    assert "nothing to redo" in run("redo", tree_id, ok=False).stderr


def test_extra_sampling_options_and_prefixes(run):
    _, root = _ids(run)
    out = json.loads(run("expand", root[:5], "-m", "mock", "-n", 2, "-o", "top_k", "5",
                         "-o", "stop", '["."]', "-o", "temperature", "0.7", "--json").stdout)
    assert out["generation"]["params"]["top_k"] == 5 and out["generation"]["params"]["stop"] == ["."]
    assert all("." not in c["text"] for c in out["children"])


BAD = [
    (["show", "nosuchnode"], "no node or tree with id"),
    (["expand", "{root}", "-m", "mock", "-n", "0"], "n: Input should be greater than or equal to 1"),
    (["expand", "{root}", "-m", "mock", "-n", "65"], "n: Input should be less than or equal to 64"),
    (["expand", "{root}", "-m", "mock", "--max-tokens", "-3"], "max_tokens"),
    (["expand", "{root}", "-m", "mock", "-o", "warp", "9"], "unknown sampling parameter"),
    (["expand", "{root}", "-m", "gpt-17"], "unknown model 'gpt-17'"),
    (["expand", "{root}", "-m", "hf:not-a-model"], "unknown hf model"),
    (["expand", "{root}", "-m", "openai:http://127.0.0.1:{port}/v1#m", "-n", "1"], "cannot reach"),
    (["split", "{root}", "0"], "split offset must be between 1 and"),
    (["split", "{root}", "999"], "split offset must be between 1 and"),
    (["move", "{root}", "{child}"], "is a root"),
    (["move", "{child}", "{grandchild}"], "would make a cycle"),
    (["merge", "{root}"], "the origins differ"),
    (["merge", "{grandchild}"], "merge needs exactly one"),
    (["edit", "{child}", "child"], "the same as"),
    (["add", "{tree}", "x"], "is a tree; this command needs a node"),
    (["tag", "{child}", " "], "a tag must be"),
    (["archive", "{root}"], "cannot be archived"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a[:2]) + ":" + m[:20] for a, m in BAD])
def test_bad_input_is_one_clear_error_and_changes_nothing(run, loomwork_home, args, message):
    from tests.servers import free_port

    tree, root = _ids(run)
    child = json.loads(run("add", root, "child", "--json").stdout)["id"]
    grandchild = json.loads(run("add", child, " grandchild", "--json").stdout)["id"]
    ids = {"root": root, "child": child, "grandchild": grandchild, "tree": tree, "port": free_port()}
    before = _db_digest(loomwork_home)
    result = run(*[a.format(**ids) for a in args], ok=False)
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _db_digest(loomwork_home) == before


def test_corrupt_and_foreign_databases(run, tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"\x00garbage" * 100)
    r = run("--db", bad, "trees", ok=False)
    assert r.exit_code == 1 and "not a SQLite database" in r.stderr and bad.read_bytes() == b"\x00garbage" * 100
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()
    r = run("--db", foreign, "new", "x", ok=False)
    assert "not a loomwork database" in r.stderr


def test_stdin_prompt_and_piped_output_is_quiet(run):
    r = run("new", "-", input="from stdin\n")
    root = r.stdout.split()[-1]
    r = run("expand", root, "-m", "mock", "-n", 1, "--max-tokens", 4)
    assert r.stderr == ""  # no progress bar when not on a terminal
    assert run("show", root).stdout == "from stdin\n\n"


def test_show_tree_json_lists_what_the_outline_shows(run):
    """An archived node hides its descendants in the JSON as in the outline; a node's --tree is its subtree."""
    tree_id, root = _ids(run, "The lighthouse")
    kids = json.loads(run("expand", root, "-m", "mock", "-n", 2, "--max-tokens", 4, "--json").stdout)["children"]
    below = json.loads(run("add", kids[0]["id"], " and below", "--json").stdout)
    run("archive", kids[0]["id"])

    def listed(*args):
        return {n["id"] for n in json.loads(run("show", *args, "--tree", "--json").stdout)["nodes"]}

    assert listed(tree_id) == {root, kids[1]["id"]}
    assert listed(tree_id, "--archived") == {root, kids[0]["id"], kids[1]["id"], below["id"]}
    assert listed(kids[0]["id"]) == {kids[0]["id"], below["id"]}  # asked for by name: shown with its subtree


def test_the_terminal_audit_shows_its_own_lines_plainly_and_model_text_escaped(run, tmp_path):
    made = json.loads(run("new", "Problem\x1b[31m", "--json").output)
    step = json.loads(run("add", made["root"]["id"], " step one", "--json").output)
    run("queue", "create", "q", "--tree", made["tree"]["id"])
    out = run("audit", "q", "--rater", "ann", input="1\n0\nq\n").output
    assert "── context" in out and "── step" in out and " step one" in out
    assert "\\u001b[2m" not in out and "\\u001b[1m" not in out  # loomwork's styling is not printed as escapes
    assert "\\u001b[31m" in out and "\x1b" not in out  # the text's own escape is shown, not obeyed
    assert step["id"]


def test_a_prm800k_file_without_its_format_gets_a_hint(run, tmp_path):
    path = tmp_path / "prm.jsonl"
    path.write_text('{"labeler": "x", "question": {"problem": "p"}, "label": {"steps": []}}\n')
    result = run("import", str(path), ok=False)
    assert result.exit_code == 1 and "--format prm800k" in result.output


def test_serve_refuses_a_default_model_whose_weights_are_not_there(run):
    for ref, words in (("hf:gemma-3-27m", "unknown hf model 'gemma-3-27m'"), ("llama:/no/such.gguf", "no GGUF file")):
        result = run("serve", "-m", ref, "--port", "18899", ok=False)
        assert result.exit_code == 1 and words in result.output, result.output


def test_counts_are_said_in_words(run):
    run("new", "One node")
    assert " 1 node " in run("trees").output


def test_show_tokens_on_a_written_node_gives_each_tokens_writing_cost(run, monkeypatch):
    monkeypatch.setenv("LOOMWORK_MODEL", "mock:default")
    root = json.loads(run("new", "Once upon a time", "--json").output)["root"]["id"]
    node = json.loads(run("add", root, " there lived a fox", "--json").output)["id"]
    assert "not scored yet" in run("show", node, "--tokens").output
    writing = [n for n in json.loads(run("bits", node, "--json").output)["nodes"] if n["id"] == node][0]["ledger"]["writing"]
    lines = run("show", node, "--tokens").output.strip().splitlines()
    assert "mock:default" in lines[0] and lines[-1].split()[0] == f"{writing:.2f}"
    assert sum(float(line.split()[0]) for line in lines[1:-1]) == pytest.approx(writing, abs=0.01 * len(lines))


def test_every_option_of_every_command_says_what_it_does():
    import click as _click

    missing = []

    def walk(cmd, name):
        if isinstance(cmd, _click.Group):
            for sub, c in cmd.commands.items():
                walk(c, f"{name} {sub}")
        else:
            missing.extend((name, p.opts[0]) for p in cmd.params
                           if isinstance(p, _click.Option) and not p.help and not p.hidden)

    walk(cli, "loomwork")
    assert missing == []


def test_a_default_model_that_is_not_there_names_the_variable(run, monkeypatch):
    root = json.loads(run("new", "Once", "--json").output)["root"]["id"]
    monkeypatch.setenv("LOOMWORK_MODEL", "hf:nope")
    r = run("expand", root, ok=False)
    assert r.stderr.startswith("error: LOOMWORK_MODEL=hf:nope: unknown hf model 'nope'"), r.stderr
    r = run("expand", root, "-m", "hf:nope", ok=False)  # named on the command line: no variable to blame
    assert "LOOMWORK_MODEL" not in r.stderr and "unknown hf model 'nope'" in r.stderr


@pytest.mark.parametrize("model", ["hf:gemma-3-270m", "llama:gemma-3-270m"])
def test_an_expand_on_the_real_model_writes_nothing_to_stderr(model, loomwork_home):
    """No warning or log line from a dependency (transformers, torch, llama.cpp) reaches a user's terminal: a
    piped expand on the packaged model prints its samples and nothing else (progress shows only on a terminal)."""
    import os
    import subprocess
    import sys

    from loomwork.backends import registry

    if not [m for m in registry.list_models() if m.ref == model and m.installed]:
        pytest.skip(f"{model} is not installed here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    cmd = [sys.executable, "-m", "loomwork.cli"]
    root = subprocess.run([*cmd, "new", "The old lighthouse keeper", "--json"], env=env, capture_output=True,
                          text=True, check=True)
    node = json.loads(root.stdout)["root"]["id"]
    r = subprocess.run([*cmd, "expand", node, "-m", model, "-n", "1", "--max-tokens", "4", "--seed", "1"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    assert r.stderr == "", r.stderr
