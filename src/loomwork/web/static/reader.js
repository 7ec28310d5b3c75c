// The read view (the path as one text, the tree's memory apart above it), the editor placed where one writes, and
// the token inspector. Views only: they render from `state` and never own what a person is typing.
import { clear, el, pct } from "./dom.js";
import { current, draftHere, state } from "./state.js";

const $ = (id) => document.getElementById(id);
const segOf = (id) => $("read").querySelector(`.seg[data-node="${CSS.escape(id)}"]`);

function segment(node) {
  const seg = el("span", {
    class: `seg ${node.origin}${node.id === current().id ? " current" : ""}`,
    dataset: { node: node.id }, title: `${node.origin} · ${node.id} · click to go here`,
  });
  if (node.meta && node.meta.chapter) seg.append(el("span", { class: "chapter-mark", "aria-hidden": "true" }, `§ ${node.meta.chapter} `));
  if (node.tokens && node.tokens.length) {
    node.tokens.forEach((tok, i) => {
      const p = tok.logprob === null ? 1 : Math.exp(tok.logprob);
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
  for (const seg of $("read").querySelectorAll(".seg")) {
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

export function renderRead() {
  const box = $("read"), editor = $("editor"), ta = $("editor-text");
  const focused = document.activeElement === ta, sel = [ta.selectionStart, ta.selectionEnd];
  const anchor = readingAnchor();
  $("reader").append(editor); // out of #read, which is rebuilt below; the text box keeps its text
  clear(box);
  for (const node of state.path) box.append(segment(node));
  const memory = state.settings ? state.settings.memory : "";
  $("memory-box").hidden = !memory;
  $("memory-text").textContent = memory || "";
  placeEditor();
  if (focused && !editor.hidden) { ta.focus(); ta.setSelectionRange(sel[0], sel[1]); }
  // keep what was on screen where it was, then make sure the current node (or the open editor) is in view
  const again = anchor && segOf(anchor.id);
  if (again) $("reader").scrollTop += again.getBoundingClientRect().top - $("reader").getBoundingClientRect().top - anchor.offset;
  ensureVisible(!editor.hidden ? editor : segOf(current().id));
  $("read").classList.toggle("shaded", state.shade);
}

export function placeEditor() {
  const d = state.draft, editor = $("editor"), ta = $("editor-text");
  for (const seg of $("read").querySelectorAll(".seg[hidden]")) seg.hidden = false;
  if (!d || !d.open || !draftHere()) {
    editor.hidden = true;
    $("reader").append(editor);
    return;
  }
  if (d.mode === "edit") {
    const seg = segOf(d.nodeId);
    seg.hidden = true;
    seg.after(editor);
  } else {
    $("read").append(editor);
  }
  editor.hidden = false;
  $("editor-label").textContent = d.mode === "edit"
    ? `Editing ${d.nodeId} (saved as a new sibling; the original stays)` : `Writing a child of ${d.nodeId}`;
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
  tok.top.forEach(([text, logprob]) => {
    const same = text === tok.text;
    list.append(el("li", {},
      el("button", {
        class: "alt", disabled: same || text === "", title: same ? "the token the text has" : "branch with this token",
        onclick: () => onBranch(node, state.selected.index, text, false),
      }, el("code", {}, JSON.stringify(text)), " ", pct(logprob)),
      same || text === "" ? null : el("button", {
        class: "alt-go", title: "branch and continue by generating", onclick: () => onBranch(node, state.selected.index, text, true),
      }, "+ continue"),
    ));
  });
  box.append(list);
  box.scrollIntoView({ block: "nearest" });
}
