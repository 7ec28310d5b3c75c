// Judge-guided growth from the current node (the autoloom): pick a grader and a budget, start, watch the frontier
// and its scores fill in, stop at any time (what was grown stays). Every pick is the grader's recorded choice.
import { api, stream } from "./api.js";
import { clear, el, snippet, svg, toast } from "./dom.js";
import { guarded, reload } from "./main.js";
import * as panels from "./panels.js";
import { current } from "./state.js";

const $ = (id) => document.getElementById(id);
let running = null; // the AbortController of the growth in progress

export async function loadGraders() {
  const graders = await api("GET", "/graders");
  const usable = graders.filter((g) => g.kind !== "person"); // a pool's samples are not rated by anyone
  for (const select of [$("grow-form").elements.grader, $("goodhart-form").elements.proxy, $("goodhart-form").elements.gold]) {
    clear(select);
    for (const g of select.name === "grader" ? graders : usable) select.append(el("option", { value: g.name }, `${g.name} (${g.kind})`));
  }
  $("goodhart-form").querySelector("button").disabled = !usable.length;
  $("grow-start").disabled = !graders.length;
  $("grow-out").textContent = graders.length ? "" : "No graders yet: make one with `loomwork grader create`.";
}

function render(event) {
  const box = clear($("grow-out"));
  box.append(el("p", { class: "muted" }, `${event.nodes} nodes, ${event.tokens} tokens, round ${event.round}`));
  box.append(el("ol", { class: "frontier" }, event.frontier.slice(0, 8).map((f) => {
    const kid = event.children.find((c) => c.id === f.id);
    return el("li", {}, el("code", {}, f.score.toFixed(2)), " ", kid ? snippet(kid.text, 60) : f.id);
  })));
}

async function start(e) {
  e.preventDefault();
  if (running) return;
  const form = new FormData(e.target);
  const { model, params } = panels.genParams();
  delete params.n;
  delete params.steer;
  const body = { grader: form.get("grader"), model, nodes: Number(form.get("nodes")), beam: Number(form.get("beam")),
    branching: Number(form.get("branching")), strategy: form.get("strategy"), params };
  const origin = current().id;
  running = new AbortController();
  $("grow-start").disabled = true;
  $("grow-stop").disabled = false;
  try {
    await stream(`/nodes/${origin}/grow`, body, (name, data) => {
      if (name === "expanded") render(data);
      else if (name === "done") toast(`grew ${data.nodes} nodes; ${data.choices.length} choices by ${data.grader}: ${data.grader_bits.toFixed(2)} bits ` +
        `on the grader's line (KL of its ${data.strategy} selections)`, "info");
      else if (name === "error") throw new Error(data.message);
    }, running.signal);
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  } finally {
    running = null;
    $("grow-start").disabled = false;
    $("grow-stop").disabled = true;
    await reload(origin);
  }
}

// The Goodhart curve at the current node: one pool, best-of-n's expected proxy and gold against √KL.
function chart(points) {
  const w = 300, h = 150, pad = 24;
  const xs = points.map((p) => p.sqrt_kl), ys = points.flatMap((p) => [p.proxy, p.gold]);
  const x0 = 0, x1 = Math.max(...xs) || 1, y0 = Math.min(...ys), y1 = Math.max(...ys);
  const X = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad), Y = (y) => h - pad - ((y - y0) / (y1 - y0 || 1)) * (h - 2 * pad);
  const line = (key, colour) => svg("polyline", { points: points.map((p) => `${X(p.sqrt_kl)},${Y(p[key])}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2 });
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": "proxy and gold against square-root KL" },
    line("proxy", "#3b6fd8"), line("gold", "#d8833b"),
    svg("text", { x: pad, y: 12, "font-size": 10, fill: "#3b6fd8" }, "proxy"), svg("text", { x: pad + 40, y: 12, "font-size": 10, fill: "#d8833b" }, "gold"),
    svg("text", { x: w - pad, y: h - 6, "font-size": 9, "text-anchor": "end" }, "√KL(best-of-n ‖ base)"));
}

async function goodhart(e) {
  e.preventDefault();
  const form = new FormData(e.target);
  const ns = String(form.get("ns")).split(",").map((x) => Number(x.trim())).filter((x) => x);
  const { model, params } = panels.genParams();
  const box = clear($("goodhart-out"));
  box.textContent = "sampling and scoring…";
  await stream(`/nodes/${current().id}/goodhart`, { proxy: form.get("proxy"), gold: form.get("gold"), ns,
    pool: Number(form.get("pool")), model, params: { max_tokens: params.max_tokens, temperature: params.temperature, seed: params.seed } }, (name, data) => {
    if (name === "status") box.textContent = data.message;
    else if (name === "error") throw new Error(data.message);
    else if (name === "done") {
      const f = data.fit;
      const cell = (p, key) => el("td", { class: "num", title: p[`${key}_ci`] ? `95% bootstrap interval ${p[`${key}_ci`].map((v) => v.toFixed(3)).join(" to ")}` : "" },
        p[key].toFixed(3) + (p[`${key}_ci`] ? ` ±${((p[`${key}_ci`][1] - p[`${key}_ci`][0]) / 2).toFixed(2)}` : ""));
      clear(box).append(chart(data.points), el("table", { class: "ledger" },
        el("tr", {}, ...["n", "√KL", "proxy", "gold"].map((t) => el("th", {}, t))),
        data.points.map((p) => el("tr", {}, el("td", {}, String(p.n)), cell(p, "sqrt_kl"), cell(p, "proxy"), cell(p, "gold")))),
      el("p", { class: "muted" }, `pool ${data.pool} (${data.failed} failed); ± half the 95% bootstrap interval; gold ≈ d(α − βd) with α ${f.alpha === null || f.alpha === undefined ? "?" : f.alpha.toFixed(3)}, β ${f.beta === null || f.beta === undefined ? "?" : f.beta.toFixed(3)}` +
        (f.peak_sqrt_kl ? `: more selection stops helping at √KL ${f.peak_sqrt_kl.toFixed(2)}` : ": no peak") + (data.notes.length ? `. ${data.notes.join("; ")}` : "")));
    }
  });
}

export function wireGrow() {
  $("goodhart-form").addEventListener("submit", (e) => guarded(() => goodhart(e)));
  $("grow-form").addEventListener("submit", (e) => guarded(() => start(e)));
  $("grow-stop").addEventListener("click", () => { if (running) running.abort(); });
  loadGraders().catch((err) => toast(`graders: ${err.message}`));
}
