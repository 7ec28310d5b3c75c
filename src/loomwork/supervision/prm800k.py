"""PRM800K JSONL (OpenAI's process-supervision release), both ways.

A line: ``{"labeler", "timestamp", "question": {"problem", ...}, "label": {"steps": [{"completions": [{"text",
"rating", "flagged"}], "human_completion", "chosen_completion"}], "finish_reason", "total_time"}, ...}``.
Import: each line becomes a tree: the problem is the root, each step's completions are siblings, and the
chosen (or human) completion carries the next step. Ratings are stored with the labeler as rater. Steps are
stored as ``"\\n" + text`` so that a path reads as the solution, one step per line.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput, NotFound
from ..formats.forest import Item, Parsed, Report, loads, write
from ..store import Store
from ..store import supervision as sql
from ..tree import new_id
from .exports import STEP_QUESTION, _nonempty, _Tree, rater_ids


def _fail(line: int, msg: str):
    raise InvalidInput(f"prm800k: line {line}: {msg}")


def parse(text: str) -> tuple[Parsed, list[dict]]:
    items: list[Item] = []
    ratings: list[dict] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = loads(raw)
        except ValueError as exc:
            _fail(number, f"not JSON ({exc})")
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), dict) or not isinstance(rec.get("label"), dict):
            _fail(number, "expected an object with 'question' and 'label' objects")
        problem = rec["question"].get("problem")
        if not isinstance(problem, str):
            _fail(number, "'question.problem' must be a string")
        steps = rec["label"].get("steps")
        if not isinstance(steps, list):
            _fail(number, "'label.steps' must be a list")
        labeler = str(rec.get("labeler") or "prm800k")
        root = f"{number}"
        items.append(Item(key=root, parent=None, text=problem, origin="prompt", where=f"line {number}",
                          meta={"prm800k": {"labeler": labeler, "timestamp": rec.get("timestamp"),
                                            "finish_reason": rec["label"].get("finish_reason")}}))
        parent = root
        for s, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("completions") or [], list):
                _fail(number, f"step {s}: expected an object with a 'completions' list")
            chosen = step.get("chosen_completion")
            comps = step.get("completions") or []
            if chosen is not None and (not isinstance(chosen, int) or not 0 <= chosen < len(comps)):
                _fail(number, f"step {s}: chosen_completion {chosen!r} is not an index of its completions")
            next_parent = None
            for c, comp in enumerate(comps):
                if not isinstance(comp, dict) or not isinstance(comp.get("text"), str):
                    _fail(number, f"step {s} completion {c}: expected an object with a 'text' string")
                rating = comp.get("rating")
                if rating not in (-1, 0, 1, None) or isinstance(rating, bool):
                    _fail(number, f"step {s} completion {c}: rating must be -1, 0, 1 or null, not {rating!r}")
                key = f"{number}/{s}/{c}"
                items.append(Item(key=key, parent=parent, text="\n" + comp["text"], origin="model",
                                  where=f"line {number} step {s} completion {c}"))
                if rating is not None:
                    ratings.append({"key": key, "rater": labeler, "label": rating, "flagged": bool(comp.get("flagged"))})
                if c == chosen:
                    next_parent = key
            human = step.get("human_completion")
            if next_parent is None and isinstance(human, dict) and isinstance(human.get("text"), str):
                key = f"{number}/{s}/human"
                items.append(Item(key=key, parent=parent, text="\n" + human["text"], origin="human",
                                  where=f"line {number} step {s} human_completion"))
                next_parent = key
            if next_parent is None:
                break  # no completion was taken: the solution ends here
            parent = next_parent
    if not items:
        raise InvalidInput("prm800k: the file holds no records")
    return Parsed("prm800k", items), ratings


def import_file(store: Store, path: str | Path) -> Report:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no file {path}") from None
    parsed, ratings = parse(text)

    def add_ratings(tx, ids, trees):
        for r in ratings:
            sql.add_rating(tx, id=new_id(), tree_id=trees[r["key"]], node_id=ids[r["key"]], rater=r["rater"],
                           question=STEP_QUESTION, label=r["label"], note=None, flagged=r["flagged"],
                           critique_id=None, queue_id=None)

    return write(store, parsed, then=add_ratings)


def _step_text(text: str) -> str:
    return text[1:] if text.startswith("\n") else text


def export(store: Store, tree_id: str, question: str = STEP_QUESTION, names: bool = False) -> list[dict]:
    """One line per (path, rater); the labeler is the rater's pseudonym unless ``names``."""
    t = _Tree(store, tree_id, question)
    who = rater_ids(store, names)
    rows = []
    with store.read() as tx:
        outcome_nodes = {o["node_id"] for o in sql.outcomes_for(tx, tree_id)}
    ends = [n for n in t.nodes if n.id in t.step_labels and t.visible(n)
            and not any(k.id in t.step_labels for k in t.kids.get(n.id, []))]
    for end in ends:
        path = t.path(end.id)
        raters = sorted({r for s in path[1:] for r in t.step_labels.get(s.id, {})})
        for rater in raters:
            steps = []
            for s in path[1:]:
                sibs = t.kids[s.parent_id]
                steps.append({"completions": [{"text": _step_text(c.text), "rating": t.step_labels.get(c.id, {}).get(rater),
                                               "flagged": any(r["flagged"] for (n, rr, q), r in t.ratings.items()
                                                              if n == c.id and rr == rater and q == question)}
                                              for c in sibs],
                              "human_completion": None, "chosen_completion": sibs.index(s)})
            last = t.step_labels.get(end.id, {}).get(rater)
            finish = ("solution" if end.id in outcome_nodes else "found_error" if last == -1
                      else "solution" if not t.kids.get(end.id) else "give_up")
            stamps = [r["created_at"] for (n, rr, q), r in t.ratings.items() if rr == rater and q == question]
            rows.append({"labeler": who(rater), "timestamp": max(stamps).isoformat() if stamps else None, "generation": None,
                         "is_quality_control_question": False, "is_initial_screening_question": False,
                         "question": {"problem": path[0].text, "ground_truth_answer": None},
                         "label": {"steps": steps, "total_time": 0, "finish_reason": finish}})
    return _nonempty(rows, "prm800k", f"no path has steps rated on {question!r}")
