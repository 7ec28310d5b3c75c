// The graph view: the shape of a loom at a glance. Plain SVG, no library: a tidy layered layout (leaves side by
// side in tree order, a parent above the middle of its children, one row per depth), zoom with the wheel or
// +/-, pan by dragging, click a node to go there. A tree of 100,000 nodes is drawn a subtree at a time (the server
// sends at most LIMIT nodes, breadth first, and says so).
import { api } from "./api.js";
import { clear, el, svg } from "./dom.js";
import { isUnread } from "./unread.js";

const LIMIT = 2000;
const DX = 16, DY = 46; // px between leaves, between depths
const ORIGIN = { prompt: "#6b55c9", human: "#2f8a4b", model: "#3457d5", edit: "#a77b00", unknown: "#7a7a80" };
const PALETTE = ["#3457d5", "#c0392b", "#2f8a4b", "#a77b00", "#6b55c9", "#00838f", "#ad1457", "#5d4037", "#455a64", "#ef6c00"];

export class Graph {
  constructor(box, onSelect) {
    this.box = box;
    this.onSelect = onSelect;
    this.data = null;
    this.pos = new Map();
    this.sx = 1;  // horizontal squeeze of the layout: Fit narrows a wide tree to the pane's shape (dots stay round)
    this.viewBox = null;
    box.addEventListener("wheel", (e) => { e.preventDefault(); this.zoom(e.deltaY < 0 ? 0.8 : 1.25, e); }, { passive: false });
    let drag = null;
    box.addEventListener("pointerdown", (e) => { if (e.target === box || e.target.tagName === "path") drag = { x: e.clientX, y: e.clientY, moved: false }; });
    box.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const scale = this.viewBox.w / box.clientWidth;
      this.viewBox.x -= (e.clientX - drag.x) * scale;
      this.viewBox.y -= (e.clientY - drag.y) * scale;
      drag = { x: e.clientX, y: e.clientY, moved: true };
      this.apply();
    });
    const stop = () => { drag = null; };
    box.addEventListener("pointerup", stop);
    box.addEventListener("pointerleave", stop);
  }

  async load(rootId, archived) {
    this.data = await api("GET", `/nodes/${rootId}/subtree?limit=${LIMIT}&archived=${archived}`);
    this.layout();
    this.viewBox = null;
    this.sx = 1;
    return this.data;
  }

  layout() {
    const kids = new Map();
    for (const n of this.data.nodes) {
      if (n.parent_id) (kids.get(n.parent_id) || kids.set(n.parent_id, []).get(n.parent_id)).push(n.id);
    }
    this.pos.clear();
    let leaf = 0;
    const place = (id, depth) => { // iterative would be kinder to very deep trees; depth here is bounded by LIMIT
      const children = kids.get(id) || [];
      if (!children.length) {
        this.pos.set(id, { x: leaf++ * DX, y: depth * DY });
        return;
      }
      for (const c of children) place(c, depth + 1);
      const first = this.pos.get(children[0]).x, last = this.pos.get(children[children.length - 1]).x;
      this.pos.set(id, { x: (first + last) / 2, y: depth * DY });
    };
    place(this.data.root, 0);
    this.kids = kids;
    this.width = Math.max(leaf * DX, DX);
    this.height = Math.max(...[...this.pos.values()].map((p) => p.y)) + DY;
  }

  // Origins have fixed colours; models and authors take the palette in the order they first appear (top down),
  // so the first ten never share a colour, as a hash could make them.
  colour(n, by) {
    if (by === "origin") return ORIGIN[n.origin] || "#7a7a80";
    if (!this.keys || this.keys.by !== by || this.keys.data !== this.data) {
      this.keys = { by, data: this.data, order: new Map() };
      for (const m of this.data.nodes) {
        const key = m[by] || "—";
        if (!this.keys.order.has(key)) this.keys.order.set(key, this.keys.order.size);
      }
    }
    return PALETTE[this.keys.order.get(n[by] || "—") % PALETTE.length];
  }

  // Where a node is drawn: its layout position, squeezed horizontally by Fit.
  at(id) {
    const p = this.pos.get(id);
    return p && { x: p.x * this.sx, y: p.y };
  }

  render(pathIds, currentId, by) {
    this.last = [pathIds, currentId, by];
    const onPath = new Set(pathIds);
    clear(this.box);
    const edges = svg("g", { class: "edges" }), dots = svg("g", { class: "dots" });
    const size = Math.min(1, Math.max(0.3, (DX * this.sx) / 10));  // squeezed leaves get smaller dots, not overlapping
    for (const n of this.data.nodes) {
      const p = this.at(n.id);
      if (n.parent_id && this.pos.has(n.parent_id)) {
        const q = this.at(n.parent_id), mid = (p.y + q.y) / 2;
        edges.append(svg("path", {
          d: `M${q.x},${q.y} C${q.x},${mid} ${p.x},${mid} ${p.x},${p.y}`,
          class: onPath.has(n.id) && onPath.has(n.parent_id) ? "on-path" : "",
        }));
      }
      const dot = svg("circle", {
        cx: p.x, cy: p.y, r: size * (n.id === currentId ? 7 : onPath.has(n.id) ? 5.5 : 4.5), fill: this.colour(n, by),
        class: `${n.id === currentId ? "current" : ""}${onPath.has(n.id) ? " on-path" : ""}${n.bookmarked ? " bookmarked" : ""}${isUnread(n) ? " unread" : ""}`,
        "data-node": n.id, tabindex: "0",
      }, svg("title", {}, `${n.chapter ? `§ ${n.chapter}: ` : ""}${n.text || "∅"}\n${n.origin}${n.model ? ` · ${n.model}` : ""}${n.by ? ` · by ${n.by}` : ""}`));
      dot.addEventListener("click", () => this.onSelect(n.id));
      dot.addEventListener("keydown", (e) => { if (e.key === "Enter") this.onSelect(n.id); });
      dots.append(dot);
    }
    // words beside the nodes a person reads from here: the path, and the options at its end and at each step
    // (the path's first; a sibling's only where it does not run into a label already placed on its row)
    const labels = svg("g", { class: "labels" });
    const near = this.data.nodes.filter((n) => onPath.has(n.id) || onPath.has(n.parent_id))
      .sort((a, b) => Number(onPath.has(b.id)) - Number(onPath.has(a.id)));
    const taken = new Map();  // row (y) -> [from, to] spans of the labels on it, and of the dots (a label covers none)
    for (const n of this.data.nodes) {
      if (!this.pos.has(n.id)) continue;
      const q = this.at(n.id);
      taken.set(q.y, [...(taken.get(q.y) || []), [q.x - 6, q.x + 6, n.id]]);
    }
    for (const n of near) {
      const p = this.at(n.id), flat = (n.chapter ? `§ ${n.chapter}` : n.text || "∅").replace(/\s+/g, " ").trim();
      const text = flat.length > 18 ? `${flat.slice(0, 17)}…` : flat || "∅";
      const span = [p.x + 6, p.x + 8 + 5.6 * text.length], row = taken.get(p.y) || [];
      if (!onPath.has(n.id) && row.some(([a, b, id]) => id !== n.id && span[0] < b && a < span[1])) continue;
      taken.set(p.y, [...row, span]);
      const gap = n.id === currentId ? 7 * size + 4 : 8; // clear of the current node's larger dot and ring
      labels.append(svg("text", { x: p.x + gap, y: p.y + 3, class: `label${onPath.has(n.id) ? " on-path" : ""}` }, text));
    }
    this.box.append(edges, dots, labels);
    if (!this.viewBox) this.centre(currentId);
    else this.apply();
    return this.legend(by);
  }

  legend(by) {
    const seen = new Map();
    for (const n of this.data.nodes) {
      const key = by === "origin" ? n.origin : n[by] || "—";
      if (!seen.has(key)) seen.set(key, this.colour(n, by));
    }
    const keys = [...seen].slice(0, 12).map(([key, colour]) => el("span", { class: "key" },
      el("span", { class: "swatch", style: `background:${colour}` }), ` ${key}`));
    if (this.data.nodes.some((n) => isUnread(n))) keys.push(el("span", { class: "key" }, el("span", { class: "swatch ring" }), " not opened yet"));
    return keys;
  }

  // Fit the whole drawing when it is small; otherwise show the current node's neighbourhood.
  centre(currentId, whole = false) {
    const w = this.box.clientWidth || 800, h = this.box.clientHeight || 600;
    const width = this.width * this.sx;
    const fits = whole || (width <= w * 3 && this.height <= h * 3);
    const p = this.at(currentId) || { x: width / 2, y: 0 };
    this.viewBox = fits ? { x: -DX, y: -DY / 2, w: Math.max(width + 2 * DX, (this.height + DY) * w / h), h: 0 }
      : { x: p.x - w / 2, y: p.y - h / 3, w, h: 0 };
    this.viewBox.h = this.viewBox.w * h / w;
    // a drawing wider than the pane's shape is centred in its height, not left at the top
    if (fits) this.viewBox.y = -DY / 2 - Math.max(0, (this.viewBox.h - this.height - DY) / 2);
    this.apply();
  }

  // Keep the current node in view: pan (never zoom) when a navigation took it off screen.
  follow(currentId) {
    const p = this.at(currentId), vb = this.viewBox;
    if (!p || !vb) return;
    if (p.x >= vb.x && p.x <= vb.x + vb.w && p.y >= vb.y && p.y <= vb.y + vb.h) return;
    this.viewBox = { ...vb, x: p.x - vb.w / 2, y: p.y - vb.h / 3 };
    this.apply();
  }

  // The whole tree in the pane: a tree wider than the pane's shape is squeezed horizontally (dots and words keep
  // their size), so it fills the height rather than a thin band across the top.
  fit() {
    const w = this.box.clientWidth || 800, h = this.box.clientHeight || 600;
    const room = (this.height + DY) * w / h - 2 * DX;
    this.sx = this.width > room && room > 0 ? Math.max(room / this.width, 0.02) : 1;
    if (this.last) this.render(...this.last);
    this.centre(null, true);
  }

  zoom(factor, event) {
    const rect = this.box.getBoundingClientRect();
    const fx = event ? (event.clientX - rect.left) / rect.width : 0.5, fy = event ? (event.clientY - rect.top) / rect.height : 0.5;
    const vb = this.viewBox, w = vb.w * factor, h = vb.h * factor;
    this.viewBox = { x: vb.x + (vb.w - w) * fx, y: vb.y + (vb.h - h) * fy, w, h };
    this.apply();
  }

  apply() {
    const vb = this.viewBox;
    this.box.setAttribute("viewBox", `${vb.x} ${vb.y} ${vb.w} ${vb.h}`);
  }
}
