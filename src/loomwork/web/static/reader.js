// The read view (the current path as one text) and the token inspector.
import { clear, el, pct } from "./dom.js";

// Renders the path; each node is a span (class by origin), each model token a span inside it.
export function renderRead(box, path, currentId, selected) {
  clear(box);
  for (const node of path) {
    const seg = el("span", {
      class: `seg ${node.origin}${node.id === currentId ? " current" : ""}`,
      dataset: { node: node.id }, title: `${node.origin} · ${node.id}`,
    });
    if (node.tokens.length) {
      node.tokens.forEach((tok, i) => {
        const p = tok.logprob === null ? 1 : Math.exp(tok.logprob);
        const span = el("span", { class: "tok", dataset: { tok: i }, style: `--p:${p.toFixed(4)}` }, tok.text);
        if (selected && selected.node === node.id && selected.index === i) span.classList.add("selected");
        seg.append(span);
      });
    } else {
      seg.append(document.createTextNode(node.text));
    }
    box.append(seg);
  }
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
  return { node: seg.dataset.node, offset: pre.toString().length };
}

export function renderInspector(box, node, index, onBranch) {
  clear(box);
  const tok = node && node.tokens[index];
  if (!tok) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.append(
    el("h2", {}, "Token ", el("code", {}, JSON.stringify(tok.text)), " ", pct(tok.logprob)),
    el("p", { class: "muted" }, `token ${index + 1} of ${node.tokens.length} in ${node.id}. Pick an alternative to branch there.`),
  );
  const list = el("ol", { class: "alts" });
  for (const [text, logprob] of tok.top) {
    const same = text === tok.text;
    list.append(el("li", {},
      el("button", {
        class: "alt", disabled: same || text === "", title: same ? "the token the text has" : "branch with this token",
        onclick: () => onBranch(node, index, text, false),
      }, el("code", {}, JSON.stringify(text)), " ", pct(logprob)),
      same || text === "" ? null : el("button", {
        class: "alt-go", title: "branch and continue by generating", onclick: () => onBranch(node, index, text, true),
      }, "+ continue"),
    ));
  }
  box.append(list);
}
