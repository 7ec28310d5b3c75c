// The logit lens in the token inspector: what each layer of the model that wrote the node predicted at this token
// (GET /api/nodes/ID/logit-lens), a compact layer × top-k table; a steered node's beside the unsteered model's.
import { api } from "./api.js";
import { clear, el, pct } from "./dom.js";

const TOP = 3;

export function lensButton(node, index) {
  if (node.origin !== "model" || !node.generation_id) return null;
  const out = el("div", { class: "lens" });
  const button = el("button", { title: "what each layer of the model predicted here (the logit lens)" }, "Layers");
  button.addEventListener("click", async () => {
    button.disabled = true;
    clear(out).append(el("p", { class: "muted" }, "reading the layers…"));
    try {
      render(out, await api("GET", `/nodes/${node.id}/logit-lens?token=${index}&k=${TOP}`));
    } catch (e) {
      clear(out).append(el("p", { class: "error" }, e.message));
    } finally {
      button.disabled = false;
    }
  });
  return el("div", {}, button, out);
}

function render(box, data) {
  clear(box);
  const both = Boolean(data.steered);
  const head = el("tr", {}, el("th", {}, "layer"), el("th", {}, both ? "unsteered p" : "p(token)"), el("th", {}, "rank"),
    el("th", {}, "top predictions"), ...(both ? [el("th", {}, "steered p"), el("th", {}, "steered top")] : []));
  const table = el("table", { class: "lens-table" }, head);
  data.lens.layers.forEach((row, i) => {
    const s = both ? data.steered.layers[i] : null;
    const mark = (r, lens) => (lens.settled_at !== null && r.layer >= lens.settled_at ? "settled" : "");
    table.append(el("tr", { class: mark(row, data.lens) },
      el("td", {}, String(row.layer)), el("td", {}, pct(row.logprob)), el("td", {}, String(row.rank)),
      el("td", {}, tops(row.top)),
      ...(both ? [el("td", { class: mark(s, data.steered) }, pct(s.logprob)), el("td", {}, tops(s.top))] : [])));
  });
  const said = (lens, who) => (lens.settled_at === null ? `${who}: not the top prediction even at the last layer (sampled, not the argmax)`
    : `${who}: the top prediction from layer ${lens.settled_at} on`);
  box.append(table, el("p", { class: "muted" }, said(data.lens, both ? "unsteered" : "this token") +
    (both ? ` · ${said(data.steered, `steered (${data.steer.map((x) => `${x.name}×${x.coef} at layer ${x.layer}`).join(", ")})`)}` : "")));
}

const tops = (top) => top.map(([text, lp]) => `${JSON.stringify(text)} ${pct(lp)}`).join("  ");
