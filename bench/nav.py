"""Navigating the demo loom with the optimization ledger on, then expanding at depth 21: does accounting ever
get in the way? In real Chromium, against `loomwork serve` with the default model (Gemma 3 270M base).

    .venv/bin/python bench/nav.py [--moves 10] [--tokens 16]

Set-up: janus's 764-node demo loom, and ten sentences written (origin human) in a chain below its deepest node
(depth 21, a path of ~5,500 tokens), so that every path below depth 21 has text whose intervention bits the
reference model must score. Then:
1. the first expansion at depth 21 (it loads the model and computes the path: the cold time), then the baseline:
   the model and the prefix cache warm, the server idle, expand the depth-21 node again (n=4); time to first token;
2. open the bottom of the written chain (scoring of its ten written nodes starts in the background) and go up
   --moves times quickly, one key press each, timing each navigation (key press to the path on screen);
3. at depth 21 right after, expand exactly as in 1: time to first token, and its ratio to 1.
Also: whether the server still burns CPU five seconds after the page has moved on (it must not). Goals: every
navigation < 200 ms; first token within 1.5x of the idle one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loomwork import ops  # noqa: E402
from loomwork.formats import io  # noqa: E402
from loomwork.store import Store  # noqa: E402
from tests.servers import loomwork_server  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pyloom" / "loom_demo.json"
WRITTEN = ["She opened the door to the archive.", "Dust rose in the lamplight.", "Nobody had been here in years.",
           "On the table lay a map of the coast.", "Someone had circled the lighthouse in red.",
           "She folded it into her coat.", "Outside, the wind had turned.", "The boats were coming in early.",
           "She counted them: seven, not eight.", "The eighth was the one she had been waiting for."]


def build(db: str) -> tuple[str, list[str]]:
    """The demo tree, with the chain written below its deepest node. Returns (depth-21 node, chain ids)."""
    with Store.open(db) as store:
        tree_id = io.import_file(store, DEMO).trees[0]
        with store.read() as tx:
            nodes = [n for n in tx.tree_nodes(tree_id) if not n.archived]
            depth = {n.id: len(tx.path_ids(n.id)) - 1 for n in nodes}
        deepest = max(depth, key=depth.get)
        chain, parent = [], deepest
        for sentence in WRITTEN:
            parent = ops.add_child(store, parent, " " + sentence).id
            chain.append(parent)
    return deepest, chain


def server_cpu_seconds() -> float:
    """CPU time of the `loomwork serve` process (user + system), from /proc."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"loomwork.cli" in cmd and b"serve" in cmd:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return float("nan")


def depth21_tokens(db: str, node: str) -> int:
    """How many tokens the model reads for the path to ``node`` (Gemma's tokenizer, as the hf backend does)."""
    from loomwork.backends import get_backend

    with Store.open(db) as store, store.read() as tx:
        text = "".join(n.text for n in tx.path(node))
    return len(get_backend("hf:gemma-3-270m").encode(text))


def press_generate(page, node: str, tokens: int) -> float:
    """Go to ``node`` and press g there (n=4, ``tokens`` each, seed 1); the time the key was pressed."""
    page.evaluate(f"location.hash = '#node={node}'")
    page.wait_for_function(f"document.querySelector('#read .seg.current').dataset.node === '{node}'")
    page.fill("input[name=n]", "4")
    page.fill("input[name=max_tokens]", str(tokens))
    page.fill("input[name=seed]", "1")
    page.fill("input[name=stop]", "")  # the demo file's own stop setting ("\n") can end every sample at once
    page.locator("#reader").click(position={"x": 3, "y": 3})
    started = time.perf_counter()
    page.keyboard.press("g")
    return started


def time_to_finish(page, node: str, tokens: int) -> float:
    """Expand ``node`` from the page and wait until the generation is over: seconds."""
    started = press_generate(page, node, tokens)
    page.wait_for_function("!document.getElementById('cancel-btn').hidden", timeout=30_000, polling=10)
    page.wait_for_function("document.getElementById('cancel-btn').hidden", timeout=600_000)
    return time.perf_counter() - started


def time_to_first_token(page, node: str, tokens: int) -> float:
    """Expand ``node`` from the page: seconds until a sample shows its first token (then waits for the end)."""
    started = press_generate(page, node, tokens)
    page.wait_for_function("[...document.querySelectorAll('#children .card.live')].some("
                           "c => c.textContent.length > c.querySelector('.meta').textContent.length)",  # a token shown
                           timeout=300_000, polling=10)
    first = time.perf_counter() - started
    page.wait_for_function("document.getElementById('cancel-btn').hidden", timeout=300_000)
    return first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "nav.sqlite")
        depth21, chain = build(db)
        with loomwork_server(db, model="hf:gemma-3-270m", timeout=300) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True).new_page()
            page.goto(f"{base}/#node={depth21}")
            page.locator("#read .seg.current").wait_for(timeout=60_000)
            cold = time_to_finish(page, depth21, 1)  # loads the model (the baseline must not include that)
            print(f"first expansion at depth 21, 1 token (loads the model, computes the {depth21_tokens(db, depth21):,}"
                  f"-token path): done after {cold:.2f} s")
            time.sleep(2)
            idle = time_to_first_token(page, depth21, args.tokens)
            print(f"baseline: first token at depth 21 on an idle server: {idle:.2f} s (the path's state is cached)")

            bottom = chain[-1]
            page.evaluate(f"location.hash = '#node={bottom}'")
            page.wait_for_function(f"document.querySelector('#read .seg.current').dataset.node === '{bottom}'")
            page.wait_for_function("document.getElementById('bits').classList.contains('scoring')", timeout=10_000)
            moves = []
            for _ in range(min(args.moves, len(chain))):
                was = page.locator("#read .seg.current").get_attribute("data-node")
                started = time.perf_counter()
                page.keyboard.press("k")
                page.wait_for_function(f"document.querySelector('#read .seg.current').dataset.node !== '{was}'",
                                       polling=5)
                moves.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)
            print(f"{len(moves)} quick moves up with bits on: median {statistics.median(moves):.0f} ms, "
                  f"max {max(moves):.0f} ms (goal < 200 ms each)")
            after = time_to_first_token(page, depth21, args.tokens)
            print(f"right after: first token at depth 21: {after:.2f} s, ratio {after / idle:.2f} to idle (goal <= 1.5)")
            page.goto("about:blank")  # the page moves on
            time.sleep(2)
            before = server_cpu_seconds()
            time.sleep(5)
            busy = server_cpu_seconds() - before
            print(f"server CPU in the 5 s after the page left: {busy:.2f} s (the background scoring was cancelled)")
            browser.close()


if __name__ == "__main__":
    main()
