// Judge-guided growth from the current node (the autoloom): pick a grader and a budget, start, watch the frontier
// and its scores fill in, stop at any time (what was grown stays). Every pick is the grader's recorded choice.
import { api, stream } from "./api.js";
import { clear, el, plural, snippet, svg, toast } from "./dom.js";
import { go, guarded, reload } from "./page.js";
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
  $("grow-out").textContent = graders.length ? "" : "No graders yet: make one with loomwork grader create (in a terminal).";
}

const texts = new Map(); // node id -> its text, from every expansion of the run (the frontier spans them all)
const goTo = (id) => el("button", { class: "linkish", title: id, onclick: () => guarded(() => go(id)) }, snippet(texts.get(id) || id, 60));

function render(event) {
  for (const c of event.children) texts.set(c.id, c.text);
  const box = clear($("grow-out"));
  box.append(el("p", { class: "muted" }, `${plural(event.nodes, "node")}, ${plural(event.tokens, "token")}, round ${event.round}`));
  box.append(el("ol", { class: "frontier" }, event.frontier.slice(0, 8).map((f) =>
    el("li", {}, el("code", {}, f.score.toFixed(2)), " ", goTo(f.id)))));
}

// What the run did, kept in the panel (a toast goes away): its cost on the grader's line and where it ended.
function summary(data) {
  const box = $("grow-out");
  const line = el("p", { class: "grow-summary" }, `Grew ${plural(data.nodes, "node")} (${plural(data.tokens, "token")}); ` +
    `${plural(data.choices.length, "choice")} by ${data.grader}: ${data.grader_bits.toFixed(2)} bits on the grader's line ` +
    `(KL of its ${data.strategy} selections).`);
  if (data.best) line.append(" ", data.strategy === "weave" ? "Best leaf under the beam: " : "Best frontier node: ", goTo(data.best),
    " (not a recorded choice: going there is yours)");
  box.prepend(line);
}

async function start(e) {
  e.preventDefault();
  if (running) return;
  const form = new FormData(e.target);
  const { model, params } = panels.genParams();
  delete params.n;
  delete params.steer;
  const body = { grader: form.get("grader"), model, nodes: Number(form.get("nodes")), beam: Number(form.get("beam")),
    branching: Number(form.get("branching")), strategy: form.get("strategy"),
    temperature: Number(form.get("temperature")), lookahead: Number(form.get("lookahead")), params };
  const origin = current().id;
  let done = null;
  texts.clear();
  running = new AbortController();
  $("grow-start").disabled = true;
  $("grow-stop").disabled = false;
  try {
    await stream(`/nodes/${origin}/grow`, body, (name, data) => {
      if (name === "expanded") render(data);
      else if (name === "done") done = data;
      else if (name === "error") throw new Error(data.message);
    }, running.signal);
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  } finally {
    running = null;
    $("grow-start").disabled = false;
    $("grow-stop").disabled = true;
    await reload(origin);
    if (done) summary(done);
  }
}

// The Goodhart curve at the current node: one pool, best-of-n's expected proxy and gold against √KL.
function chart(points) {
  const w = 300, h = 170, left = 40, right = 10, top = 18, bottom = 30;
  const xs = points.map((p) => p.sqrt_kl), ys = points.flatMap((p) => [p.proxy, p.gold]);
  const x0 = 0, x1 = Math.max(...xs) || 1;
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }  // a flat curve (a proxy that scores all alike) still gets an axis
  const X = (x) => left + ((x - x0) / (x1 - x0 || 1)) * (w - left - right);
  const Y = (y) => h - bottom - ((y - y0) / (y1 - y0 || 1)) * (h - top - bottom);
  const line = (key, colour) => svg("polyline", { points: points.map((p) => `${X(p.sqrt_kl)},${Y(p[key])}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2 });
  const label = (x, y, text, anchor = "middle") => svg("text", { x, y, "font-size": 9, "text-anchor": anchor, fill: "#555" }, text);
  const ticks = (a, b) => [a, (a + b) / 2, b];
  const num = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": "proxy and gold against square-root KL" },
    svg("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, stroke: "#999" }),
    svg("line", { x1: left, y1: top, x2: left, y2: h - bottom, stroke: "#999" }),
    ...ticks(x0, x1).map((v) => label(X(v), h - bottom + 11, num(v))),  // √KL in √nats, each point an n
    ...ticks(y0, y1).map((v) => label(left - 3, Y(v) + 3, num(v), "end")),  // the graders' scores
    ...points.filter((p, i) => i === 0 || X(p.sqrt_kl) - X(points[i - 1].sqrt_kl) > 18)  // labels that do not overlap
      .map((p) => label(X(p.sqrt_kl), Y(Math.max(p.proxy, p.gold)) - 4, `n=${p.n}`)),
    line("proxy", "#3b6fd8"), line("gold", "#d8833b"),
    svg("text", { x: left, y: 11, "font-size": 10, fill: "#3b6fd8" }, "proxy"), svg("text", { x: left + 40, y: 11, "font-size": 10, fill: "#d8833b" }, "gold"),
    svg("text", { x: w - right, y: h - 4, "font-size": 9, "text-anchor": "end" }, "√KL(best-of-n ‖ base), √nats"));
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
