"""The README's tour, run as a newcomer runs it: the commands and what they print, written into README.md.

    .venv/bin/python scripts/docs_tour.py            # run the tour in a fresh database and print it (about 25 s)
    .venv/bin/python scripts/docs_tour.py --docs     # ... and rewrite the README's blocks from this run
    .venv/bin/python scripts/docs_tour.py --check    # exit 1 where the README differs from this run
    --slow        also the blocks that take a minute (compare)
    --all         also the blocks whose output is not shown (tuning, graders, audits with Gemma and SmolLM2:
                  10-25 minutes on 2 cores): every command of the README, for real, in sequence
    --subprocess  each command a process of its own, exactly as a reader types it in a shell (about 10 s more a
                  command: the model loads each time), instead of one process that keeps the model loaded

Each block sits in README.md between `<!-- docs_tour.py: NAME -->` and `<!-- /docs_tour.py -->`. The tour starts
from a fresh temporary LOOMWORK_HOME with the default model (hf:gemma-3-270m, the hf engine) and fixed seeds. Its
output is the same run after run on this CPU, in one process or in many: --check --subprocess agrees with the
README. (In one process a prefix cache warmed by an earlier expansion of the same node can change a late token of
a sample, sums taken in another order; the tour's blocks agree all the same, which --subprocess checks.)

Node and tree ids are random in every run: the tour's commands name the ids its own earlier commands printed
(`<root:4>` is the first four characters of the id bound to `root`), so the README shows one run's ids throughout,
and --check compares with its own run's ids in their place (times, and whether a model is converted yet, aside).
The temporary data directory is shown as /home/me/.local/share/loomwork. --docs rewrites the README only when a
block differs. Blocks with `run="all"` are written with the run's ids but run only with --all;
tests/test_docs_examples.py runs them, with every other command of the docs, at the smallest setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ID = r"(?<![A-Za-z0-9_])[a-km-np-z2-9]{10}(?![A-Za-z0-9_])"  # tree.py's alphabet: no l, o, 0, 1
SHOWN_HOME = "/home/me/.local/share/loomwork"


# ---- running a command line as a shell would (the few shell features the docs use) ----------------------------

@dataclass
class Done:
    line: str
    rc: int
    out: str  # standard output and standard error, as a terminal shows them


def parse(line: str) -> tuple[dict, list[str], tuple | None, tuple | None]:
    """`VAR=v … loomwork ARGS [| head -N | grep -A N WORD] [> FILE | >> FILE]  # comment` → (env, ARGS, pipe,
    (FILE, append))."""
    line = re.sub(r"\s+#\s.*$", "", line.strip())
    words = shlex.split(line)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        k, _, v = words.pop(0).partition("=")
        env[k] = v
    pipe = out_file = None
    if "|" in words:
        i = words.index("|")
        then, words = words[i + 1:], words[:i]
        if then[:1] == ["head"] and len(then) <= 2:
            pipe = ("head", int(then[1].lstrip("-n ")) if len(then) == 2 else 10)
        elif then[:2] == ["grep", "-A"] and len(then) == 4:
            pipe = ("grep", int(then[2]), then[3])
        else:
            raise ValueError(f"only `| head -N` and `| grep -A N WORD` are understood: {line}")
    for op in (">", ">>"):
        if op in words:
            i = words.index(op)
            out_file, words = (words[i + 1], op == ">>"), words[:i]
    prog = words.pop(0) if words else ""
    if not prog.endswith("loomwork"):
        raise ValueError(f"not a loomwork command: {line}")
    return env, words, pipe, out_file


class Shell:
    """Runs command lines in a working directory with an environment: in this process through click (models stay
    loaded between commands: use inside `kept_models()`), or each as a process of its own (`subprocess=True`)."""

    def __init__(self, cwd: Path, env: dict, subprocess: bool = False):
        self.cwd, self.env, self.subprocess = Path(cwd), dict(env), subprocess

    def run(self, line: str, input: str | None = None) -> Done:
        env, args, pipe, out_file = parse(line)
        env = {**self.env, **env}
        if self.subprocess:
            return self._process(line, env, input)
        from click.testing import CliRunner

        from loomwork.cli import cli

        old = os.getcwd()
        os.chdir(self.cwd)
        try:
            r = CliRunner().invoke(cli, args, input=input, env=env, prog_name="loomwork")
        finally:
            os.chdir(old)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            import traceback

            raise RuntimeError(f"{line}\n{''.join(traceback.format_exception(*r.exc_info))}")
        if out_file:
            with open(self.cwd / out_file[0], "a" if out_file[1] else "w", encoding="utf-8") as f:
                f.write(r.stdout)
            out = r.stderr
        else:
            out = r.output
        if pipe is not None:
            out = self._pipe(out, pipe)
        return Done(line, r.exit_code, out)

    @staticmethod
    def _pipe(out: str, how: tuple) -> str:
        lines = out.splitlines(keepends=True)
        if how[0] == "head":
            return "".join(lines[:how[1]])
        keep = set()
        for i, x in enumerate(lines):
            if how[2] in x:
                keep.update(range(i, i + how[1] + 1))
        return "".join(x for i, x in enumerate(lines) if i in keep)

    def _process(self, line: str, env: dict, input: str | None) -> Done:
        env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}  # None: unset, as for CliRunner
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        line = re.sub(r"\s+#\s.*$", "", line.strip())
        p = subprocess.run(["bash", "-c", line], cwd=self.cwd, env=env, input=input, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        return Done(line, p.returncode, p.stdout)


@contextlib.contextmanager
def kept_models():
    """Every command closes the models it used when it ends; within this block they stay loaded (one load of
    Gemma, not one a command), and are closed at its end."""
    from loomwork.backends.pool import PROCESS

    real = PROCESS.close

    async def keep():
        pass

    PROCESS.close = keep
    try:
        yield
    finally:
        PROCESS.close = real
        asyncio.run(real())


# ---- the tour ---------------------------------------------------------------------------------------------------

@dataclass
class Step:
    line: str  # as the reader types it; <name> is an id an earlier step printed, <name:4> its first 4 characters
    binds: tuple = ()  # names for the ids this step prints that no earlier step printed, in order
    comment: str = ""
    show: bool = True  # its output goes into the README
    expect: int = 0  # its exit status
    input: str | None = None  # what the reader types


@dataclass
class Block:
    name: str
    steps: list
    run: bool | str = True  # "slow": with --slow or --all only; "all": with --all only (its output is not shown)
    col: int = 0  # where comments start (0: after the longest commented command)
    gap: bool = False  # a blank line between one command's output and the next command
    done: list = field(default_factory=list)


PROMPT = "The old lighthouse keeper climbed the stairs and"
SEA = ("{context}{text} Question: does the passage above mention the sea or the ocean? Answer yes or no. Answer:")

BLOCKS = [
    Block("tour", [
        Step(f'loomwork new "{PROMPT}"', ("tree", "root")),
        Step("loomwork expand <root:4> -n 3 --max-tokens 20 --seed 2", ("m1", "m2", "m3"),
             "default model: hf:gemma-3-270m (base)"),
        Step('loomwork add <m1:4> " Then the light went out."', ("h1",), "your own words (origin H)"),
        Step("loomwork show <tree>", (), "a tree id shows the outline"),
        Step("loomwork show <m1:4> --tokens | head -4", (), "each token's probability and the alternatives"),
        Step("loomwork show <h1:4>", (), "a node id shows its path as one text"),
    ], gap=True),
    Block("ledger", [
        Step("loomwork choose <m1:4>", (), "you continued from 1 of the 3 samples"),
        Step("loomwork bits <h1:4>", (), "the optimization ledger: every lever, per node and along the path"),
    ]),
    Block("steering", [
        Step('loomwork new "I think my neighbour is a"', ("tree2", "root2")),
        Step('loomwork steer create love --plus "Love" --minus "Hate" --layer 6'),
        Step("loomwork expand <root2:4> -n 2 --max-tokens 12 --seed 5", ("u1", "u2"), "the model as it is"),
        Step("loomwork expand <root2:4> -n 2 --max-tokens 12 --seed 5 --steer love=1", ("s1", "s2"),
             "the same seed, steered"),
        Step("loomwork bits <s1:4>", (), "the steering's pressure, in bits"),
    ]),
    Block("loop", [
        Step("loomwork bookmark <h1:4>", (), "the paths worth learning from, one in each tree"),
        Step("loomwork bookmark <s1:4>"),
        Step("loomwork tune style --base hf:gemma-3-270m --tree <tree:4> --tree <tree2:4> --kl-budget 0.3",
             (), "LoRA within 0.3 bits/token of the base"),
        Step("loomwork adapters show style", (), "what shaped it: data sha256, held-out prompts, base"),
        Step("loomwork adapters export style ./style-peft", (), "a PEFT folder (or --merged: a whole model)"),
        Step("loomwork expand <h1:4> -m hf:gemma-3-270m+style", (), "the tuned model back in the loom"),
        Step("loomwork grader create coherent --judge hf:smollm2-135m-instruct", (),
             "log P(yes) - log P(no) of a judge prompt"),
        Step("loomwork bon <h1:4> -n 8 --grader coherent", (), "best-of-n, the pick recorded as the grader's"),
        Step("loomwork grow <h1:4> --grader coherent --nodes 30 --strategy weave", (),
             "judge-guided growth (MiniHF's weave)"),
        Step(f'loomwork grader create mentions-sea --judge hf:gemma-3-270m --template "{SEA}"', (), ""),
        Step("loomwork goodhart <root:4> --proxy mentions-sea --gold coherent --sizes 1,2,4,8,16,32,64", (),
             "does the grader get gamed?"),
    ], run="all", col=86),
    Block("supervision", [
        Step("loomwork queue create steps --tree <tree:4> --critiques half"),
        Step("loomwork audit steps --rater ann", (), "or the /audit page of `loomwork serve`", input="1\n" * 3000),
        Step("loomwork ratings summary steps", (), "agreement, Cohen's kappa, Krippendorff's alpha"),
        Step("loomwork export <tree:4> --format stepwise -o steps.jsonl"),
    ], run="all"),
    Block("compare", [
        Step("loomwork compare -m hf:gemma-3-270m -m hf:smollm2-135m-instruct --suite random-numbers --seed 0 "
             "--out results/ | grep -A 4 d100"),
    ], run="slow"),
    Block("sharing", [
        Step('LOOMWORK_USER=ann loomwork tag <m3:4> glass', (), "ann, at the same database"),
        Step("loomwork undo <tree:4> --dry-run"),
        Step("loomwork undo <tree:4>", expect=1),
        Step("loomwork check", (), "every invariant, each problem with its row id"),
        Step("loomwork backup loom-2026-11-23.sqlite", (), "a consistent copy while the server runs"),
    ]),
    Block("models", [Step("loomwork models")]),
]


def fill(line: str, ids: dict) -> str:
    def one(m):
        name, cut = m.group(1), m.group(2)
        if name not in ids:
            raise KeyError(f"{line}: no earlier step printed an id for <{name}>")
        return ids[name][:int(cut)] if cut else ids[name]

    return re.sub(r"<([a-z][a-z0-9]*)(?::(\d+))?>", one, line)


def runs(block: Block, slow: bool = False, every: bool = False) -> bool:
    return every or block.run is True or (block.run == "slow" and slow)


def run_tour(shell: Shell, blocks=BLOCKS, slow: bool = False, every: bool = False, log=None) -> dict:
    """Run the blocks that run, in order, binding ids; returns the ids. Each block's `done` gets its results."""
    ids: dict[str, str] = {}
    for block in blocks:
        block.done = []
        if not runs(block, slow, every):
            continue
        for step in block.steps:
            line = fill(step.line, ids)
            done = shell.run(line, input=step.input)
            done.out = done.out.replace(str(shell.env.get("LOOMWORK_HOME", "\0")), SHOWN_HOME)
            if log:
                log(f"$ {line}\n{done.out}")
            if done.rc != step.expect:
                raise SystemExit(f"`{line}` exited with {done.rc}, not {step.expect}:\n{done.out}")
            new = [i for i in dict.fromkeys(re.findall(ID, done.out)) if i not in ids.values()]
            if len(new) < len(step.binds):
                raise SystemExit(f"`{line}` printed {len(new)} new ids, the tour names {len(step.binds)}")
            ids.update(zip(step.binds, new))
            block.done.append(done)
    return ids


def render(block: Block, ids: dict) -> str:
    lines = [fill(s.line, ids) for s in block.steps]
    col = block.col or max([len(x) for x, s in zip(lines, block.steps) if s.comment] or [0]) + 2
    out = ["```console"]
    for i, (line, step) in enumerate(zip(lines, block.steps)):
        if block.gap and i:
            out.append("")
        out.append(f"$ {line.ljust(col - 2)}  # {step.comment}" if step.comment else f"$ {line}")
        if step.show and block.done and block.run != "all":
            out += [x.rstrip() for x in block.done[i].out.rstrip("\n").splitlines()]
    return "\n".join(out + ["```"])


def begin(name: str) -> str:
    return f"<!-- docs_tour.py: {name} -->"


END = "<!-- /docs_tour.py -->"


def shown(text: str, name: str) -> tuple[int, int]:
    """Where block NAME's text is in the README (between its markers)."""
    a = text.index(begin(name)) + len(begin(name))
    return a, text.index(END, a)


def canonical(texts: list[str]) -> list[str]:
    """Ids numbered by first appearance across all the blocks (their 4-character prefixes too, on command lines),
    times and a model's conversion state (which depends on the machine's cache) masked: what two runs of the tour
    have in common."""
    order: dict[str, str] = {}
    for i in re.findall(ID, "\n".join(texts)):
        order.setdefault(i, f"<id{len(order)}>")

    def line(x: str) -> str:
        x = re.sub(ID, lambda m: order[m.group(0)], x)
        if x.startswith("$ "):
            for full, name in order.items():
                x = re.sub(rf"(?<![A-Za-z0-9]){full[:4]}(?![A-Za-z0-9])", name[:-1] + ":4>", x)
        x = re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?", "<time>", x)
        return re.sub(r"  \((converted|converts on first use)\)$", "  (<conversion>)", x)

    return ["\n".join(line(x) for x in t.strip().splitlines()) for t in texts]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", action="store_true", help="rewrite the README's blocks from this run")
    ap.add_argument("--check", action="store_true", help="exit 1 where the README differs from this run")
    ap.add_argument("--slow", action="store_true", help="also the blocks that take minutes")
    ap.add_argument("--all", action="store_true", help="every block, also those whose output is not shown")
    ap.add_argument("--subprocess", action="store_true", help="each command a process of its own")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.docs and args.all:
        ap.error("--docs with --all would show what the unshown blocks left behind (the tuned adapter in `models`)")
    home = Path(tempfile.mkdtemp(prefix="loomwork-tour-"))
    env = {"LOOMWORK_HOME": str(home), "LOOMWORK_DB": None, "LOOMWORK_MODEL": None, "LOOMWORK_USER": None,
           "LOOMWORK_PROGRESS": "0"}  # None: unset (the reader's defaults)
    sys.path.insert(0, str(ROOT / "src"))
    shell = Shell(home, env, subprocess=args.subprocess)
    log = None if args.quiet or args.docs or args.check else print
    try:
        with kept_models() if not args.subprocess else contextlib.nullcontext():
            ids = run_tour(shell, slow=args.slow, every=args.all, log=log)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    text = README.read_text(encoding="utf-8")
    blocks = [b for b in BLOCKS if b.run != "slow" or args.slow or args.all]
    theirs = [text[slice(*shown(text, b.name))] for b in blocks]
    mine = [render(b, ids) for b in blocks]
    bad = []
    for block, a, b in zip(blocks, canonical(theirs), canonical(mine)):
        if a != b:
            bad.append(block.name)
            if args.check:
                sys.stdout.writelines(difflib.unified_diff(a.splitlines(True), b.splitlines(True),
                                                           f"README ({block.name})", "this run"))
                print()
    new = text
    for block, m in zip(blocks, mine):
        a, b = shown(new, block.name)
        new = new[:a] + "\n" + m + "\n" + new[b:]
    if args.docs and bad:  # all blocks from this run (ids are shared between them); none when nothing changed
        README.write_text(new, encoding="utf-8")
    if args.check and bad:
        print(f"README.md differs from the tour's run in: {', '.join(bad)} (scripts/docs_tour.py --docs)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
