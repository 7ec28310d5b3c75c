// The tree outline, loaded lazily one level at a time (so huge trees open quickly) and readable at any depth:
// indentation stops growing after MAX_INDENT levels and a depth badge says how deep a row is, so a label at
// depth 21 is as wide as one at depth 8. The outline can be hoisted (a node shown as if it were the root).
import { api } from "./api.js";
import { clear, el, snippet, steerLabel } from "./dom.js";
import { state } from "./state.js";
import { isUnread } from "./unread.js";

const MAX_INDENT = 4; // levels of indentation before it stops growing
const STEP = 14; // px per level

export class Outline {
  constructor(box, onSelect) {
    this.box = box;
    this.onSelect = onSelect;
    this.kids = new Map(); // node id -> children (loaded)
    this.open = new Set();
    this.archived = false; // whether the loaded levels include archived nodes
  }

  reset() {
    this.kids.clear();
  }

  async children(id) {
    if (!this.kids.has(id)) this.kids.set(id, await api("GET", `/nodes/${id}/children?archived=${this.archived}`));
    return this.kids.get(id);
  }

  // Fold everything but the path to the current node (keepCurrent: and the current node's own children).
  collapse(keepCurrent) {
    const keep = new Set(state.path.slice(0, keepCurrent ? undefined : -1).map((n) => n.id));
    for (const id of [...this.open]) if (!keep.has(id)) this.open.delete(id);
  }

  async render(top, path, currentId) {
    // archived branches are shown when asked for, or when the current node is inside one
    const archived = state.showArchived || path.some((n) => n.archived);
    if (archived !== this.archived) {
      this.archived = archived;
      this.kids.clear();
    }
    for (const n of path.slice(0, -1)) this.open.add(n.id); // the current path is always unfolded
    if (path.some((n) => !this.kids.has(n.id))) {
      const levels = await api("GET", `/nodes/${currentId}/outline?archived=${archived}`);
      for (const [id, kids] of Object.entries(levels)) this.kids.set(id, kids);
    }
    const onPath = new Set(path.map((n) => n.id));
    const list = el("ul", { class: "outline" });
    await this.item(list, top, onPath, currentId, 0);
    const scroll = this.box.scrollTop;
    clear(this.box).append(list);
    this.box.scrollTop = scroll;
    this.box.scrollLeft = 0;
    this.follow();
  }

  // Bring the current row into view vertically; never shift the panel sideways.
  follow() {
    const cur = this.box.querySelector(".row.current");
    if (!cur) return;
    const box = this.box.getBoundingClientRect(), r = cur.getBoundingClientRect();
    if (r.top < box.top || r.bottom > box.bottom) this.box.scrollTop += r.top - box.top - box.height / 3;
    this.box.scrollLeft = 0;
  }

  async item(list, node, onPath, currentId, depth) {
    const isOpen = this.open.has(node.id) && node.child_count > 0;
    // the row's width goes to its words: tags and steering are in its tooltip (and the node pane), ★ stays
    const marks = [node.bookmarked ? "★" : "", node.archived ? "[archived]" : ""].filter(Boolean).join(" ");
    const more = [steerLabel(node), ...node.tags.map((t) => `#${t}`)].filter(Boolean).join(" ");
    const chapter = node.meta && node.meta.chapter;
    const row = el("div", {
      class: `row ${node.origin}${onPath.has(node.id) ? " on-path" : ""}${node.id === currentId ? " current" : ""}${node.archived ? " archived" : ""}${isUnread(node) ? " unread" : ""}`,
      dataset: { node: node.id, depth }, style: `padding-left:${Math.min(depth, MAX_INDENT) * STEP}px`,
      title: `${snippet(node.text || "∅", 400)}\n${node.origin} · depth ${depth}${more ? ` · ${more}` : ""} · ${node.id}`,
    },
      depth > MAX_INDENT ? el("span", { class: "depth", title: `${depth} levels deep` }, String(depth)) : null,
      el("button", {
        class: "twisty", disabled: !node.child_count, "aria-label": isOpen ? "collapse" : "expand",
        onclick: (e) => { e.stopPropagation(); this.toggle(node.id); },
      }, node.child_count ? (isOpen ? "▾" : "▸") : "·"),
      el("span", { class: "label", onclick: () => this.onSelect(node.id) },
        chapter ? el("strong", { class: "chapter" }, `§ ${chapter} `) : null, node.origin === "edit" ? "✎ " : null,
        snippet(node.text || "∅", 160)),
      marks ? el("span", { class: "marks" }, marks) : null,
      isUnread(node) ? el("span", { class: "unread-dot", title: "not opened yet" }, "•") : null,
      node.child_count ? el("span", { class: "count", title: `${node.child_count} children` }, String(node.child_count)) : null,
    );
    const li = el("li", {}, row);
    list.append(li);
    if (isOpen) {
      const sub = el("ul", {});
      li.append(sub);
      for (const child of await this.children(node.id)) await this.item(sub, child, onPath, currentId, depth + 1);
    }
  }

  toggle(id) {
    if (this.open.has(id)) this.open.delete(id);
    else this.open.add(id);
    this.box.dispatchEvent(new CustomEvent("outline-changed"));
  }
}
