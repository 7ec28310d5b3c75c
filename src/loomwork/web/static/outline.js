// The collapsible tree outline, loaded lazily one level at a time (so huge trees open quickly).
import { api } from "./api.js";
import { clear, el, snippet } from "./dom.js";

export class Outline {
  constructor(box, onSelect) {
    this.box = box;
    this.onSelect = onSelect;
    this.kids = new Map(); // node id -> children (loaded)
    this.open = new Set();
    this.showArchived = false;
  }

  reset() {
    this.kids.clear();
  }

  async children(id) {
    if (!this.kids.has(id)) {
      this.kids.set(id, await api("GET", `/nodes/${id}/children?archived=${this.showArchived}`));
    }
    return this.kids.get(id);
  }

  async render(root, path, currentId) {
    for (const n of path.slice(0, -1)) this.open.add(n.id); // the current path is always unfolded
    if (path.some((n) => !this.kids.has(n.id))) {
      const levels = await api("GET", `/nodes/${currentId}/outline?archived=${this.showArchived}`);
      for (const [id, kids] of Object.entries(levels)) this.kids.set(id, kids);
    }
    const onPath = new Set(path.map((n) => n.id));
    const list = el("ul", { class: "outline" });
    await this.item(list, root, onPath, currentId);
    clear(this.box).append(list);
    const cur = this.box.querySelector(".current");
    if (cur) cur.scrollIntoView({ block: "nearest" });
  }

  async item(list, node, onPath, currentId) {
    const isOpen = this.open.has(node.id) && node.child_count > 0;
    const marks = [node.bookmarked ? "★" : "", node.archived ? "[archived]" : "", ...node.tags.map((t) => `#${t}`)]
      .filter(Boolean).join(" ");
    const row = el("div", {
      class: `row ${node.origin}${onPath.has(node.id) ? " on-path" : ""}${node.id === currentId ? " current" : ""}`,
      dataset: { node: node.id },
    },
      el("button", {
        class: "twisty", disabled: !node.child_count, "aria-label": isOpen ? "collapse" : "expand",
        onclick: (e) => { e.stopPropagation(); this.toggle(node.id); },
      }, node.child_count ? (isOpen ? "▾" : "▸") : "·"),
      el("span", { class: "label", onclick: () => this.onSelect(node.id) }, snippet(node.text || "∅", 60)),
      marks ? el("span", { class: "marks" }, marks) : null,
      node.child_count ? el("span", { class: "count" }, String(node.child_count)) : null,
    );
    const li = el("li", {}, row);
    list.append(li);
    if (isOpen) {
      const sub = el("ul", {});
      li.append(sub);
      for (const child of await this.children(node.id)) await this.item(sub, child, onPath, currentId);
    }
  }

  toggle(id) {
    if (this.open.has(id)) this.open.delete(id);
    else this.open.add(id);
    this.box.dispatchEvent(new CustomEvent("outline-changed"));
  }
}
