// The Tune page: start a LoRA tune on curated trees, follow it live (steps, loss, KL with its error bar against
// the budget, held-out loss), stop it, and see every adapter. The page's state is kept apart from the views that
// draw it; the run itself lives on the server (its own process), so leaving the page stops nothing.
import { api, stream } from "./api.js";
import { clear, el, svg, toast } from "./dom.js";

const $ = (id) => document.getElementById(id);
const f = (x, d = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(d));

// -- state ------------------------------------------------------------------------------------------------------
const state = { adapters: [], run: null }; // run: {name, budget, events, curve, step, total, loss, status, ended}
let following = null; // the AbortController of the stream being followed

function newRun(name, budget) {
  return { name, budget, events: [], curve: [], step: 0, total: 0, loss: null, status: "starting", ended: false };
}

function apply(run, name, e) {
  run.events.push(e);
  if (name === "step") Object.assign(run, { step: e.step, total: e.total, loss: e.loss, status: "training" });
  else if (name === "end") run.status = e.status;
  else if (name === "eval") {
    run.curve.push(e);
    run.status = `evaluated at step ${e.step} (${e.seconds.toFixed(1)} s)` + (e.kl_bits > run.budget ? ": over the budget" : "");
  }
  else if (name === "load") run.status = `loading ${e.base}…`;
  else if (name === "eval-start") run.status = `evaluating at step ${e.step}: KL on ${e.prompts} held-out prompts × ${e.samples} samples × ${e.tokens} tokens…`;
  else if (name === "resumed") run.step = e.step;
  else if (name === "error") Object.assign(run, { status: `failed: ${e.message}`, ended: true });
  else if (name === "done") Object.assign(run, { status: e.status + (e.error ? `: ${e.error}` : ""), ended: true, record: e });
}

// -- views ------------------------------------------------------------------------------------------------------
// KL per evaluation with ±1 standard error, the budget as a dashed line; held-out loss beside it.
function curveChart(points, budget, total) {
  const w = 340, h = 170, pad = 34;
  const kept = [...points].reverse().find((p) => p.kl_bits <= budget); // the checkpoint a stop keeps
  const chart = (title, ys, lo, hi, extra, colour) => {
    const steps = points.map((p) => p.step), x1 = Math.max(1, total || 0, ...steps);
    const y0 = Math.min(...lo, ...(extra === null ? [] : [extra])), y1 = Math.max(...hi, ...(extra === null ? [] : [extra]));
    const X = (x) => pad + (x / x1) * (w - 2 * pad), Y = (y) => h - pad - ((y - y0) / (y1 - y0 || 1)) * (h - 2 * pad);
    const kids = [svg("text", { x: pad, y: 14, "font-size": 11 }, title),
      svg("line", { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, stroke: "#999" }),
      svg("text", { x: w - pad, y: h - 8, "font-size": 10, "text-anchor": "end" }, `step (of ${x1}); ring: the checkpoint kept`),
      svg("text", { x: 2, y: Y(y1) + 4, "font-size": 9 }, f(y1, 2)), svg("text", { x: 2, y: Y(y0) + 4, "font-size": 9 }, f(y0, 2))];
    if (extra !== null) kids.push(svg("line", { x1: pad, y1: Y(extra), x2: w - pad, y2: Y(extra), stroke: "crimson", "stroke-dasharray": "4 3" }),
      svg("text", { x: w - pad, y: Y(extra) - 3, "font-size": 9, fill: "crimson", "text-anchor": "end" }, "budget"));
    else if (colour === "#3b6fd8") kids.push(svg("text", { x: w - pad, y: 26, "font-size": 9, fill: "crimson", "text-anchor": "end" },
      `budget ${budget}: far above`));
    kids.push(svg("polyline", { points: points.map((p, i) => `${X(p.step)},${Y(ys[i])}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
    points.forEach((p, i) => {
      kids.push(svg("line", { x1: X(p.step), y1: Y(lo[i]), x2: X(p.step), y2: Y(hi[i]), stroke: colour }));
      const dot = svg("circle", { cx: X(p.step), cy: Y(ys[i]), r: 3, fill: colour });
      dot.append(svg("title", {}, `step ${p.step}: ${f(ys[i], 4)}` + (p === kept ? " (the checkpoint kept)" : "")));
      kids.push(dot);
      if (p === kept) kids.push(svg("circle", { cx: X(p.step), cy: Y(ys[i]), r: 6, fill: "none", stroke: "#222" }));
    });
    return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": title }, ...kids);
  };
  const kl = points.map((p) => p.kl_bits), se = points.map((p) => p.kl_se || 0), loss = points.map((p) => p.heldout_loss);
  const top = Math.max(...kl.map((k, i) => k + se[i]));
  // a budget far above what was spent would flatten the curve to nothing: then it is named, not drawn
  const shown = budget <= 4 * top || top === 0 ? budget : null;
  const title = "KL(tuned ‖ base), bits/token ± s.e.";
  return [chart(title, kl, kl.map((k, i) => k - se[i]), kl.map((k, i) => k + se[i]), shown, "#3b6fd8"),
    chart("held-out loss, nats/token (held-out prompts)", loss, loss, loss, null, "#d8833b")];
}

function renderRun() {
  const run = state.run;
  $("run").hidden = !run;
  if (!run) return;
  $("run-title").textContent = `${run.name}`;
  const last = run.curve[run.curve.length - 1];
  $("run-status").textContent = `${run.status}` + (run.total ? ` · step ${run.step}/${run.total}` : "") +
    (run.loss !== null ? ` · loss ${f(run.loss, 4)}` : "") +
    (last ? ` · KL ${f(last.kl_bits, 4)} ± ${f(last.kl_se, 4)} bits/token of ${run.budget} · held-out loss ${f(last.heldout_loss)}` : "");
  $("run-progress").max = run.total || 1;
  $("run-progress").value = run.step;
  clear($("run-curve")).append(...(run.curve.length ? curveChart(run.curve, run.budget, run.total) : [el("p", { class: "muted" }, "the curve appears after the first evaluation (step 0: the base itself)")]));
  $("run-stop").disabled = run.ended;
  clear($("run-log")).append(...run.events.slice(-50).map((e) => el("li", {}, JSON.stringify(e))));
}

function renderAdapters() {
  const table = clear($("adapters"));
  table.append(el("tr", {}, ...["adapter (model)", "method", "status", "step", "KL bits/token (budget)", "held-out loss", "rows train / held out", ""].map((t) => el("th", {}, t))));
  if (!state.adapters.length) table.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no adapters yet")));
  for (const a of state.adapters) {
    const live = a.status === "training" || a.status === "starting";
    table.append(el("tr", {},
      el("td", {}, el("code", {}, a.model)), el("td", {}, a.config.method), el("td", { title: a.error || "" }, a.status + (a.error ? `: ${a.error}` : "")),
      el("td", { class: "num" }, String(a.step ?? "—")),
      el("td", { class: "num" }, `${f(a.kl_bits, 4)} ± ${f(a.kl_se, 4)} (${a.config.kl_budget})`),
      el("td", { class: "num" }, `${f(a.heldout_loss_before)} → ${f(a.heldout_loss)}`),
      el("td", { class: "num" }, a.rows ? `${a.rows.train} / ${a.rows.heldout}` : "—"),
      el("td", {}, el("button", { type: "button", onclick: () => follow(a.name, a.config.kl_budget) }, live ? "Follow" : "Curve"))));
  }
}

function renderCost() {
  const form = $("tune-form").elements;
  const tokens = Number(form.kl_prompts.value) * Number(form.kl_samples.value) * Number(form.kl_tokens.value);
  $("tune-cost").textContent = `Each evaluation (at step 0 and every ${form.eval_every.value} steps) samples ${tokens} tokens from the tuned model ` +
    "and reads them twice, tuned and base, over the whole vocabulary; the run shows what each one took. For scale: 4 × 4 × 24 " +
    "took about 40 s with Gemma 3 270M on a 2-core CPU (docs/tuning.md), and a few seconds of it is there whatever the size.";
}

// -- actions ----------------------------------------------------------------------------------------------------
async function loadAdapters() {
  state.adapters = await api("GET", "/adapters");
  renderAdapters();
}

async function loadTrees() {
  const trees = await api("GET", "/trees");
  const box = $("tree-choices");
  box.replaceChildren(el("legend", {}, "trees"), ...trees.map((t) => el("label", {},
    el("input", { type: "checkbox", name: "trees", value: t.id }), ` ${t.title || t.id} (${t.nodes})`)));
  if (!trees.length) box.append(el("span", { class: "muted" }, "no trees yet"));
}

async function follow(name, budget) {
  if (following) following.abort();
  following = new AbortController();
  state.run = newRun(name, budget);
  renderRun();
  try {
    await stream(`/adapters/${encodeURIComponent(name)}/events`, undefined, (event, data) => {
      apply(state.run, event, data);
      renderRun();
      if (event === "eval" || event === "done") loadAdapters().catch(() => {});
    }, following.signal, "GET");
  } catch (err) {
    if (err.name !== "AbortError") toast(err.message);
  }
}

async function start(e) {
  e.preventDefault();
  const form = e.target.elements;
  const trees = [...document.querySelectorAll("#tree-choices input:checked")].map((i) => i.value);
  const num = (k) => Number(form[k].value);
  const body = { name: form.name.value, method: form.method.value, trees, kl_budget: num("kl_budget"), epochs: num("epochs"),
    lr: num("lr"), batch_size: num("batch_size"), lora_r: num("lora_r"), beta: num("beta"), eval_every: num("eval_every"),
    heldout: num("heldout"), kl_prompts: num("kl_prompts"), kl_samples: num("kl_samples"), kl_tokens: num("kl_tokens"),
    seed: num("seed") };
  if (form.base.value.trim()) body.base = form.base.value.trim();
  try {
    const record = await api("POST", "/adapters", body);
    await loadAdapters();
    follow(record.name, record.config.kl_budget);
    window.scrollTo({ top: 0, behavior: "smooth" });
  } catch (err) {
    toast(err.message);
  }
}

async function stop() {
  if (!state.run) return;
  try {
    await api("POST", `/adapters/${encodeURIComponent(state.run.name)}/stop`);
    state.run.status = "stopping after this step…";
    renderRun();
  } catch (err) {
    toast(err.message);
  }
}

$("tune-form").addEventListener("submit", start);
$("tune-form").addEventListener("input", renderCost);
$("run-stop").addEventListener("click", stop);
renderCost();
Promise.all([loadAdapters(), loadTrees()]).then(() => {
  const live = state.adapters.find((a) => a.status === "training" || a.status === "starting");
  if (live) follow(live.name, live.config.kl_budget);
}).catch((err) => toast(err.message));
