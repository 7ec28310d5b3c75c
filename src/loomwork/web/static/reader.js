// The read view (the path as one text, the tree's memory apart above it), the editor placed where one writes, and
// the token inspector. Views only: they render from `state` and never own what a person is typing.
import { clear, el, pct, snippet, steerLabel } from "./dom.js";
import { lensButton } from "./lensview.js";
import { current, draftHere, state } from "./state.js";

const $ = (id) => document.getElementById(id);
const segOf = (id) => document.querySelector(`#reader .seg[data-node="${CSS.escape(id)}"]`);

// A node an edit carried: it was written after the text before the edit (its figures are that generation's).
function carried(node) {
  const m = node.meta || {};
  return m.carried_from ? `carried by an edit: written after the earlier text of ${m.written_after}` : "";
}

function segment(node) {
  const steer = steerLabel(node);
  const seg = el("span", {
    class: `seg ${node.origin}${node.id === current().id ? " current" : ""}${steer ? " steered" : ""}${carried(node) ? " carried" : ""}`,
    dataset: { node: node.id }, title: `${node.origin}${steer ? ` · steered ${steer}` : ""}${carried(node) ? ` · ${carried(node)}` : ""} · ${node.id} · click to go here`,
  });
  if (node.meta && node.meta.chapter) seg.append(el("span", { class: "chapter-mark", "aria-hidden": "true" }, `§ ${node.meta.chapter} `));
  if (node.tokens && node.tokens.length) {
    node.tokens.forEach((tok, i) => {
      // steered text can be shaded by the unsteered model's probabilities instead (the latents panel's switch)
      const lp = state.shadeUnsteered && tok.base_logprob !== undefined && tok.base_logprob !== null ? tok.base_logprob : tok.logprob;
      const p = lp === null ? 1 : Math.exp(lp);
      const span = el("span", { class: "tok", dataset: { tok: i }, style: `--p:${p.toFixed(4)}` }, tok.text);
      if (state.selected && state.selected.node === node.id && state.selected.index === i) span.classList.add("selected");
      seg.append(span);
    });
  } else {
    seg.append(document.createTextNode(node.text || (node.parent_id ? "∅" : "")));
  }
  return seg;
}

// The reading position: the first segment at least partly in view, and where it is on screen.
function readingAnchor() {
  const top = $("reader").getBoundingClientRect().top;
  for (const seg of $("reader").querySelectorAll(".seg")) {
    const r = seg.getBoundingClientRect();
    if (r.bottom > top) return { id: seg.dataset.node, offset: r.top - top };
  }
  return null;
}

export function ensureVisible(elm, margin = 32) {
  if (!elm) return;
  const reader = $("reader"), box = reader.getBoundingClientRect(), r = elm.getBoundingClientRect();
  if (r.top >= box.top && r.bottom <= box.bottom) return;
  if (r.height > box.height - 2 * margin || r.top < box.top) reader.scrollTop += r.top - box.top - margin;
  else reader.scrollTop += r.bottom - box.bottom + margin;
}

// The read view. The editor is a fixed element between #read and #read-rest and is never moved or rebuilt (a
// refresh would otherwise wipe its own undo history and scroll): an edit shows the path up to the edited node in
// #read and the rest after the editor; a child draft shows the whole path, then the editor. `follow`: bring the
// current node into view (on navigation; a background refresh keeps the reading position as it is).
export function renderRead({ follow = false } = {}) {
  const anchor = readingAnchor();
  const d = state.draft, editing = d && d.open && draftHere();
  const cut = editing && d.mode === "edit" ? state.path.findIndex((n) => n.id === d.nodeId) : -1;
  const before = cut < 0 ? state.path : state.path.slice(0, cut), after = cut < 0 ? [] : state.path.slice(cut + 1);
  clear($("read")).append(...before.map(segment));
  clear($("read-rest")).append(...after.map(segment));
  const memory = state.settings ? state.settings.memory : "";
  $("memory-box").hidden = !memory;
  $("memory-text").textContent = memory || "";
  placeEditor();
  const again = anchor && segOf(anchor.id);
  if (again) $("reader").scrollTop += again.getBoundingClientRect().top - $("reader").getBoundingClientRect().top - anchor.offset;
  if (follow) ensureVisible(editing ? $("editor") : segOf(current().id));
  $("reader").classList.toggle("shaded", state.shade);
}

function placeEditor() {
  const d = state.draft, editor = $("editor"), ta = $("editor-text");
  editor.hidden = !(d && d.open && draftHere());
  if (editor.hidden) return;
  const carried = (d.carry || []).length;
  const at = state.path.find((n) => n.id === d.nodeId);
  const named = at ? `“${snippet(at.text || "∅", 48)}”` : d.nodeId;  // a node is named by its words, not its id
  $("editor-label").textContent = d.mode !== "edit" ? `Writing a child of ${named}`
    : carried ? `Editing this node with what follows: saved as a new sibling, the ${carried} nodes after it carried below it (the original branch stays)`
      : "Editing this node: saved as a new sibling (the original and what follows it stay; Shift+E carries what follows)";
  if (ta.value !== d.text) ta.value = d.text;
}

// The character offset of the caret inside a node's own text, or null when the caret is elsewhere.
export function caretOffset() {
  const sel = window.getSelection();
  if (!sel || !sel.rangeCount) return null;
  const range = sel.getRangeAt(0);
  const seg = range.startContainer.parentElement && range.startContainer.parentElement.closest(".seg");
  if (!seg) return null;
  const pre = document.createRange();
  pre.selectNodeContents(seg);
  pre.setEnd(range.startContainer, range.startOffset);
  const mark = seg.querySelector(".chapter-mark");
  return { node: seg.dataset.node, offset: pre.toString().length - (mark ? mark.textContent.length : 0) };
}

// Every model token on the path, in reading order (for moving between tokens from the keyboard).
export function pathTokens() {
  return state.path.flatMap((n) => (n.tokens || []).map((_t, i) => ({ node: n.id, index: i })));
}

// The alternatives a person can branch with at a token: the model's top tokens there, less the token itself and
// the end of text. The inspector numbers exactly these, and the keys 1–9 pick them.
export function alternatives(tok) {
  return tok.top.filter(([text]) => text !== tok.text && text !== "");
}

export function renderInspector(onBranch) {
  const box = $("inspector");
  clear(box);
  const node = state.selected && state.path.find((n) => n.id === state.selected.node);
  const tok = node && node.tokens[state.selected.index];
  if (!tok) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.append(
    el("h2", {}, "Token ", el("code", {}, JSON.stringify(tok.text)), " ", pct(tok.logprob)),
    el("p", { class: "muted" }, `token ${state.selected.index + 1} of ${node.tokens.length} in ${node.id}. ` +
      (state.tokenMode ? "< > move · 1–9 branch with that alternative · Esc done" : "Pick an alternative to branch there (< > from the keyboard).")),
  );
  const list = el("ol", { class: "alts" });
  for (const [text, logprob] of alternatives(tok)) {
    list.append(el("li", {},
      el("button", { class: "alt", title: "branch with this token", onclick: () => onBranch(node, state.selected.index, text, false) },
        el("code", {}, JSON.stringify(text)), " ", pct(logprob)),
      el("button", { class: "alt-go", title: "branch and continue by generating", onclick: () => onBranch(node, state.selected.index, text, true) },
        "+ continue"),
    ));
  }
  if (!list.children.length) box.append(el("p", { class: "muted" }, "No other token was recorded here."));
  box.append(list);
  const lens = lensButton(node, state.selected.index);
  if (lens) box.append(lens);
  box.scrollIntoView({ block: "nearest" });
}
