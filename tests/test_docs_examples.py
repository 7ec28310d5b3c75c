"""The docs as a newcomer runs them (issue 27).

(a) The README's tour is what it prints: scripts/docs_tour.py --check runs it with the real default model, in a
fresh database, and compares every block it shows (ids and times aside).

(b) Every command line of README.md and docs/*.md — `$ loomwork …` in console blocks, `loomwork …` in sh blocks
and indented code blocks — runs as written, in order, one fresh database a document, and exits 0 (or fails the
way the doc shows it failing). Ids the README names are the ones the same commands printed in this run (the
README's shown ids are mapped to this run's by the order they first appear); the docs' placeholders (NODE, TREE,
T1, G …) name a prepared tree, node or grader; optional parts in [brackets] are given (alternatives a|b left out).
Models: the mock model is the default; where a doc names a packaged model, a small random model of the same kind
stands in (MODELS below: training and judging with Gemma take minutes on 2 cores; the tour runs Gemma for real).
Python code blocks are run too, with the same stand-ins.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_docs import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Lines that cannot run here, with the reason. Keep it short: prefer running a command at its smallest setting.
SKIP = {
    r"^(\S*/)?loomwork serve\b": "a server that runs until stopped (tests/e2e/conftest.py starts one for the "
                                  "browser tests)",
    r"openai:http://127\.0\.0\.1:8000": "an OpenAI-compatible server on port 8000 (tests/test_llama_server.py "
                                        "tests against one)",
}

# Stand-ins, (pattern, replacement, reason), applied to every line before it runs.
MODELS = [
    (r"hf:gemma-3-270m", "hf:{tiny}", ("tuning, judging and steering with Gemma take minutes on 2 cores; a "
                                       "10-layer random Llama (layers 6 and 8 exist) takes seconds")),
    (r"^(loomwork tune (?!.*--(base|resume)).*?)(\s+#.*)?$", r"\1 --base hf:{tiny}", "tune's default base is Gemma"),
    (r"hf:smollm2-135m-instruct", "mock", "a second packaged model would load for a judge or a comparison"),
    (r"--db (postgresql://loom@db/loom|…)", "--db {home}/team.sqlite",
     "the example's PostgreSQL server `db`: the same commands on a SQLite file"),
]

# Commands that need a local model whose layers can be steered run with the stand-in as their default model.
LOCAL = r"\bsteer\b|logit-lens"

PLACEHOLDERS = {"NODE": "node", "TREE": "tree", "T1": "tree", "T2": "tree2", "T3": "tree3",
                "G": "judge-a", "G1": "judge-a", "G2": "judge-b"}


def commands(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line number, command, the output the doc shows after it) for every command line of a markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, fence, blank, indented = [], None, True, False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        indented = fence is None and line.startswith("    ") and (blank or indented)
        if fence is not None:
            cmd = line[2:] if line.startswith("$ ") else (
                line if fence in ("sh", "bash", "shell") and re.match(r"(\S+/)?loomwork ", line) else None)
            if cmd is not None:
                shown = []
                for nxt in lines[i + 1:]:
                    if nxt.startswith(("$ ", "```")):
                        break
                    shown.append(nxt)
                found.append((i + 1, cmd, shown))
        elif indented and line.startswith("    loomwork "):
            found.append((i + 1, line.strip(), []))
        blank = not line.strip()
    return found


def code_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    blocks = re.finditer(r"```python\n(.*?)```", text, re.DOTALL)
    return [(text[:m.start()].count("\n") + 1, m.group(1)) for m in blocks]


def optional_parts(line: str) -> str:
    """`[--beam 2]` → `--beam 2`; `[-m MODEL]` and `[--strategy beam|tilted]` are left out."""
    def one(m):
        inner = m.group(1)
        return "" if "|" in inner or re.search(r"\b[A-Z]{2,}\b", inner) else " " + inner

    return re.sub(r"\s*\[([^\[\]]*)\]", one, line)


def _tiny(path: Path) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_model import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=10,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


class Runner:
    """Runs one document's commands in order in its own data directory, with the substitutions above."""

    def __init__(self, tour, home: Path, tiny: str):
        self.tour, self.home, self.tiny = tour, home, tiny
        home.mkdir(parents=True)
        self.shell = tour.Shell(home, {"LOOMWORK_HOME": str(home), "LOOMWORK_DB": None, "LOOMWORK_USER": None,
                                       "LOOMWORK_MODEL": "mock", "LOOMWORK_PROGRESS": "0"})
        self.ids: dict[str, str] = {}  # an id the doc shows → the id this run printed in its place

    def prepare(self) -> None:
        """Three trees, each grown, chosen in, written in and bookmarked; two judges; a pairs file."""
        names = {}
        for key, prompt in (("tree", "A lighthouse story:"), ("tree2", "A kitchen story:"),
                            ("tree3", "A garden story:")):
            tree, root = re.findall(self.tour.ID, self.ok(f'loomwork new "{prompt}"'))
            kids = re.findall(self.tour.ID, self.ok(f"loomwork expand {root} -n 3 --max-tokens 8 --seed 1"))
            self.ok(f"loomwork choose {kids[0]}")
            node = re.findall(self.tour.ID, self.ok(f'loomwork add {kids[0]} " And then it rained."'))[0]
            self.ok(f"loomwork bookmark {node}")
            names[key] = tree
            names.setdefault("node", node)
        for name in ("judge-a", "judge-b"):
            self.ok(f"loomwork grader create {name} --judge mock")
        (self.home / "pairs.jsonl").write_text('{"plus": "Dear Sir", "minus": "hey"}\n'
                                               '{"plus": "Yours sincerely", "minus": "cheers"}\n')
        self.placeholders = {k: names.get(v, v) for k, v in PLACEHOLDERS.items()}

    def ok(self, line: str) -> str:
        done = self.shell.run(line)
        assert done.rc == 0, f"preparing: {line}\n{done.out}"
        return done.out

    def substitute(self, line: str, code: bool = False) -> str:
        line = line if code else optional_parts(line)
        for pattern, repl, _why in MODELS:
            line = re.sub(pattern, repl.format(tiny=self.tiny, home=self.home), line)
        for shown, mine in self.ids.items():
            line = re.sub(rf"(?<![A-Za-z0-9]){shown}(?![A-Za-z0-9])", mine, line)
            line = re.sub(rf"(?<![A-Za-z0-9]){shown[:4]}(?![A-Za-z0-9])", mine[:4], line)
        if getattr(self, "placeholders", None):
            line = re.sub(r"\b(" + "|".join(self.placeholders) + r")\b", lambda m: self.placeholders[m.group(1)],
                          line)
        return line

    def run(self, where: str, line: str, shown: list[str]) -> None:
        mine = self.substitute(line)
        env = ""
        if re.search(LOCAL, mine):
            env = f"LOOMWORK_MODEL=hf:{self.tiny} "
        t = time.perf_counter()
        done = self.shell.run(env + mine, input="1\n" * 3000)
        print(f"{time.perf_counter() - t:6.1f} s  {where}  {env}{mine}"[:160])
        fails = bool(shown) and shown[0].startswith("error:")
        assert (done.rc != 0) == fails, (f"{where}: `{line}`\n  ran as `{env}{mine}`\n  exit status {done.rc}"
                                         f"{' (the doc shows it failing)' if fails else ''}\n{done.out[-3000:]}")
        if fails:
            assert done.out.split(":")[0] == "error", done.out
        theirs = [i for i in dict.fromkeys(re.findall(self.tour.ID, "\n".join(shown))) if i not in self.ids]
        new = [i for i in dict.fromkeys(re.findall(self.tour.ID, done.out)) if i not in self.ids.values()]
        self.ids.update(zip(theirs, new))


@pytest.fixture(scope="module")
def tour():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_tour", ROOT / "scripts" / "docs_tour.py")
    module = sys.modules["docs_tour"] = importlib.util.module_from_spec(spec)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_the_readme_tour_prints_what_it_shows():
    """The README's blocks between docs_tour.py's markers are what the tour prints (the real Gemma, ~25 s)."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_tour.py"), "--check"], capture_output=True,
                       text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]


def test_the_commands_are_found(tour):
    found = {p.name: commands(p) for p in DOCS}
    readme = [c for _, c, _ in found["README.md"]]
    assert sum(len(v) for v in found.values()) >= 55
    assert 'loomwork new "The old lighthouse keeper climbed the stairs and"' in readme
    assert any(c.startswith("loomwork bon NODE") for _, c, _ in found["graders.md"])  # an indented block
    assert any(c.startswith("loomwork compare") for _, c, _ in found["lens.md"])  # an sh block
    assert optional_parts("grow N --nodes 30 [--beam 2] [--strategy beam|tilted] [-m MODEL]") == \
        "grow N --nodes 30 --beam 2"
    assert tour.parse("LOOMWORK_USER=ann loomwork show ab12 --tokens | head -4  # c") == \
        ({"LOOMWORK_USER": "ann"}, ["show", "ab12", "--tokens"], ("head", 4), None)


def test_inline_commands_name_real_commands_and_options():
    """Commands the prose names in `backticks` (synopses, not run): each names a command and options it has."""
    import click

    from loomwork.cli import cli

    for path in DOCS:
        text = path.read_text(encoding="utf-8").split("<!-- generated by scripts/cli_docs.py")[0]
        for m in re.finditer(r"`(?:\S+/)?loomwork ([^`]+)`", text):
            where = f"{path.name}:{text[:m.start()].count(chr(10)) + 1}: `loomwork {m.group(1)}`"
            words = re.sub(r"^--db \S+ ", "", m.group(1)).split()
            cmd = cli
            while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
                cmd, words = cmd.get_command(click.Context(cmd), words[0]), words[1:]
                assert cmd is not None, f"{where}: no such command"
            known = {"-h", "--help"} | {o for p in cmd.params for o in getattr(p, "opts", []) +
                                        getattr(p, "secondary_opts", []) if o.startswith("-")}
            for opt in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(words)):
                assert opt in known, f"{where}: {cmd.name} has no option {opt}"


@pytest.mark.parametrize("doc", [p.name for p in DOCS if commands(p) or code_blocks(p)])
def test_every_command_in_the_docs_runs(doc, tour, tmp_path_factory, tiny_base10, kept, monkeypatch):
    path = next(p for p in DOCS if p.name == doc)
    lines, blocks = commands(path), code_blocks(path)
    home = tmp_path_factory.mktemp(doc.replace(".", "-")) / "home"
    runner = Runner(tour, home, tiny_base10)
    if doc != "README.md":
        runner.prepare()
    for n, line, shown in lines:
        line = line.removeprefix(".venv/bin/")
        if not re.match(r"([A-Z_]+=\S* )*loomwork ", line):
            continue  # ./setup.sh, pytest, llama-server …: not loomwork's
        if any(re.search(p, line) for p in SKIP):
            continue
        runner.run(f"{doc}:{n}", line, shown)
    monkeypatch.setenv("LOOMWORK_HOME", str(home))
    monkeypatch.delenv("LOOMWORK_DB")
    for n, code in blocks:
        code = compile(runner.substitute(code, code=True), f"{doc}:{n}", "exec")
        exec(code, {"__name__": "__docs__"})  # noqa: S102 - the docs' own examples, which is the point


@pytest.fixture(scope="module")
def tiny_base10(tmp_path_factory):
    pytest.importorskip("torch")
    return _tiny(tmp_path_factory.mktemp("tiny10") / "tiny-llama")


@pytest.fixture(scope="module")
def kept(tour):
    with tour.kept_models():
        yield
