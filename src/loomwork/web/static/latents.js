// The latents panel: pick steering vectors and coefficients for generation (kept in state.steer and saved with
// the tree's generation settings), make a vector from two texts or two nodes, and sweep one vector's coefficient.
import { api, stream } from "./api.js";
import { clear, el, toast } from "./dom.js";
import { guarded, reload, render } from "./page.js";
import * as panels from "./panels.js";
import { current, state } from "./state.js";

const $ = (id) => document.getElementById(id);

export async function loadVectors() {
  state.steer.vectors = await api("GET", "/steering");
  renderLatents();
}

function changed() {
  panels.saveGeneration();
  renderLatents();
}

export function renderLatents() {
  const model = $("gen-model").value;
  const box = clear($("steer-list"));
  const usable = state.steer.vectors.filter((v) => v.model === model);
  if (!state.steer.vectors.length) box.append(el("p", { class: "muted" }, "No steering vectors yet: make one below."));
  for (const v of state.steer.vectors) {
    const on = v.name in state.steer.picks, fits = v.model === model;
    box.append(el("div", { class: `steer-row${fits ? "" : " muted"}`, title: fits ? `${v.method} of ${v.pairs.length} pair(s)` : `made for ${v.model}` },
      el("label", {}, el("input", { type: "checkbox", checked: on, disabled: !fits && !on, "aria-label": `steer with ${v.name}`,
        onchange: (e) => { if (e.target.checked) state.steer.picks[v.name] = 1; else delete state.steer.picks[v.name]; changed(); } }),
      ` ${v.name} `),
      el("input", { type: "number", step: "0.1", value: on ? state.steer.picks[v.name] : 1, disabled: !on, class: "coef", "aria-label": `coefficient of ${v.name}`,
        onchange: (e) => { const c = Number(e.target.value); if (Number.isFinite(c)) { state.steer.picks[v.name] = c; changed(); } } }),
      el("small", {}, ` layer ${v.layer} · norm ${v.norm.toFixed(0)}${fits ? "" : ` · ${v.model}`} `),
      el("button", { type: "button", class: "x", title: `delete ${v.name}`, "aria-label": `delete ${v.name}`,
        onclick: () => guarded(async () => { if (!confirm(`Delete steering vector ${v.name}?`)) return;
          await api("DELETE", `/steering/${encodeURIComponent(v.name)}`); delete state.steer.picks[v.name]; panels.saveGeneration(); await loadVectors(); }) }, "×")));
  }
  $("steer-prompt").checked = state.steer.prompt;
  const sweep = clear($("sweep-form").elements.name);
  for (const v of usable) sweep.append(el("option", { value: v.name }, v.name));
  $("sweep-form").querySelector("button").disabled = !usable.length;
}

async function makeVector(e) {
  e.preventDefault();
  const form = new FormData(e.target);
  const body = { name: form.get("name").trim(), layer: Number(form.get("layer")), model: $("gen-model").value || null,
    plus: [form.get("plus")], minus: [form.get("minus")] };
  status(`making ${body.name} with ${body.model}…`);
  let rec;
  try { rec = await api("POST", "/steering", body); } finally { status(""); }
  // made, not applied: a vector steers only once it is ticked (a lever never turns itself on)
  toast(`${rec.name}: ${rec.method} at layer ${rec.layer}, norm ${rec.norm.toFixed(1)}; tick it to steer with it`, "info");
  e.target.reset();
  await loadVectors();
}

function status(text) { $("sweep-out").textContent = text; }

// The same expansion at coefficients -c … +c, one column each, streamed; the samples are stored as children.
async function sweep(e) {
  e.preventDefault();
  const form = new FormData(e.target);
  const c = Math.abs(Number(form.get("c"))), steps = Math.max(2, Math.min(9, Number(form.get("steps")) || 5));
  const coefs = Array.from({ length: steps }, (_, i) => Number((-c + (2 * c * i) / (steps - 1)).toFixed(4)));
  const { model, params } = panels.genParams();
  delete params.steer;
  const nodeId = current().id;
  const box = clear($("sweep-out"));
  const cols = new Map(coefs.map((k) => [k, el("div", { class: "sweep-col" }, el("div", { class: "meta" }, `${form.get("name")} × ${k}`), el("div", { class: "text" }))]));
  box.append(...cols.values());
  const live = {};
  await stream(`/nodes/${nodeId}/sweep`, { model, name: form.get("name"), coefs, params }, (name, data) => {
    if (name === "token") {
      live[data.coef] = live[data.coef] || [];
      live[data.coef][data.index] = (live[data.coef][data.index] || "") + data.text;
      cols.get(data.coef).querySelector(".text").textContent = live[data.coef].filter(Boolean).join("\n—\n");
    } else if (name === "coef") {
      cols.get(data.coef).querySelector(".text").textContent = data.children.map((k) => k.text).join("\n—\n");
    } else if (name === "error") {
      throw new Error(data.message);
    }
  });
  await reload(nodeId);
}

export function wireLatents() {
  $("steer-form").addEventListener("submit", (e) => guarded(() => makeVector(e)));
  $("sweep-form").addEventListener("submit", (e) => guarded(() => sweep(e)));
  $("steer-prompt").addEventListener("change", (e) => { state.steer.prompt = e.target.checked; panels.saveGeneration(); });
  $("shade-unsteered").addEventListener("change", (e) => { state.shadeUnsteered = e.target.checked; render(); });
  $("steer-plus-node").addEventListener("click", () => { $("steer-form").elements.plus.value = current().text; });
  $("steer-minus-node").addEventListener("click", () => { $("steer-form").elements.minus.value = current().text; });
  $("gen-model").addEventListener("change", renderLatents);
  document.addEventListener("steer-changed", renderLatents);
  loadVectors().catch((e) => toast(`steering vectors: ${e.message}`));
}
