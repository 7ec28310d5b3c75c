// The Compare page: run a probe suite on several models and show the report as tables and bar charts.
import { api, stream } from "./api.js";
import { clear, el, toast } from "./dom.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const f = (x, d = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(d));

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// One bar chart of a model's renormalised answer distribution.
function distributionChart(result) {
  const entries = Object.entries(result.distribution);
  const w = 760, h = 110, bw = w / entries.length;
  const max = Math.max(...entries.map(([, p]) => p), 1e-9);
  const chart = svg("svg", { width: w, height: h + 16, class: "dist" });
  entries.forEach(([answer, p], i) => {
    const bh = (h * p) / max;
    const bar = svg("rect", { x: i * bw, y: h - bh, width: Math.max(1, bw - 1), height: bh, fill: "#3457d5" });
    bar.append(svg("title", {}, `${answer.trim()}: ${(100 * p).toFixed(2)}%`));
    chart.append(bar);
    if (i % Math.ceil(entries.length / 20) === 0) chart.append(svg("text", { x: i * bw, y: h + 12, class: "bar-label" }, answer.trim()));
  });
  return chart;
}

// Grouped bars: one group per label, one bar per model (the page's version of entropy-top1.png / diversity.png).
const COLORS = ["#3457d5", "#e07b39", "#2e8b57", "#9b59b6", "#c0392b", "#7f8c8d"];
function groupedBars(title, labels, series) {
  const w = 760, h = 120, groupW = w / Math.max(1, labels.length), models = Object.keys(series);
  const bw = (groupW * 0.8) / Math.max(1, models.length);
  const max = Math.max(1e-9, ...Object.values(series).flat().map((v) => v || 0));
  const chart = svg("svg", { width: w, height: h + 30, class: "grouped" });
  chart.append(svg("text", { x: 0, y: 12, class: "bar-label" }, title));
  labels.forEach((label, i) => {
    models.forEach((m, k) => {
      const v = series[m][i] || 0, bh = ((h - 20) * v) / max;
      const bar = svg("rect", { x: i * groupW + k * bw, y: h - bh, width: bw - 1, height: bh, fill: COLORS[k % COLORS.length] });
      bar.append(svg("title", {}, `${m} · ${label}: ${f(v)}`));
      chart.append(bar);
    });
    chart.append(svg("text", { x: i * groupW, y: h + 12, class: "bar-label" }, label));
  });
  models.forEach((m, k) => chart.append(svg("text", { x: w - 260, y: 12 + 12 * k, class: "bar-label", fill: COLORS[k % COLORS.length] }, m)));
  return chart;
}

// What each column is (docs/lens.md has the definitions and how each is computed).
const PROBE_COLUMNS = [["model", "the model"], ["top-1", "the most likely answer"],
  ["p(top-1)", "its probability, renormalised over the answer set"],
  ["H bits", "entropy of the answer distribution, in bits"], ["H/Hmax", "entropy over the entropy of a uniform choice"],
  ["mass on set", "probability the model puts on the answer set at all, before renormalising"],
  ["KL to uniform", "KL(answers ‖ uniform), in bits: how far from an even choice"]];
const GENERATION_COLUMNS = [["model", "the model"], ["unique", "share of samples that no other sample repeats"],
  ["distinct-1", "distinct words over all words"], ["distinct-2", "distinct word pairs over all pairs"],
  ["EAD-1", "expectation-adjusted distinct words (length-fair)"], ["compression", "compressed size over raw size (lower: more repetitive)"],
  ["embedding", "mean cosine distance between the samples' embeddings"]];

function explain() {
  return el("details", { class: "columns" }, el("summary", {}, "What the columns mean"),
    el("ul", {}, ...[...PROBE_COLUMNS.slice(1), ...GENERATION_COLUMNS.slice(1)].map(([t, what]) => el("li", {}, el("strong", {}, t), `: ${what}`))),
    el("p", { class: "muted" }, "Definitions and how each is computed: docs/lens.md."));
}

function render(report) {
  const box = clear($("results"));
  box.append(explain());
  box.append(el("p", { class: "muted" }, `suite ${report.suite} · models ${report.models.join(", ")} · seed ${report.parameters.seed}`));
  for (const p of report.probes) {
    box.append(el("h3", {}, p.id), el("p", { class: "muted" }, JSON.stringify(p.prompt)));
    box.append(el("table", { class: "probe" },
      el("tr", {}, ...PROBE_COLUMNS.map(([t, what]) => el("th", { title: what }, t))),
      ...p.results.map((r) => el("tr", {}, el("td", {}, r.model), el("td", {}, r.top1.trim()), el("td", {}, f(r.top1_prob)),
        el("td", {}, f(r.entropy_bits, 2)), el("td", {}, f(r.entropy_relative)), el("td", {}, f(r.mass_on_set)),
        el("td", {}, f(r.kl_to_uniform_bits))))));
    for (const r of p.results) box.append(el("div", { class: "muted" }, r.model), distributionChart(r));
    for (const c of p.between_models) {
      box.append(el("p", {}, `KL(${c.models[0]} ‖ ${c.models[1]}) = ${f(c.kl_ab_bits)} bits, KL back = ${f(c.kl_ba_bits)}, JS = ${f(c.js_bits)} bits`));
    }
  }
  if (report.probes.length) {
    const ids = report.probes.map((p) => p.id);
    const per = (key) => Object.fromEntries(report.models.map((m) => [m, report.probes.map((p) => (p.results.find((r) => r.model === m) || {})[key])]));
    box.append(el("h3", {}, "Entropy and top-1 across probes"),
      groupedBars("entropy / entropy of uniform", ids, per("entropy_relative")),
      groupedBars("top-1 probability", ids, per("top1_prob")));
  }
  if (report.generations.length) {
    const metrics = ["unique_fraction", "distinct_1", "distinct_2", "ead_1", "embedding_diversity"];
    const mean = (xs) => { const v = xs.filter((x) => x !== null && x !== undefined); return v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0; };
    const series = Object.fromEntries(report.models.map((m) => [m, metrics.map((k) => mean(report.generations.map((g) => (g.results.find((r) => r.model === m) || {})[k])))]));
    box.append(el("h3", {}, "Free-generation diversity"), groupedBars("mean over prompts", metrics, series));
  }
  for (const g of report.generations) {
    box.append(el("h3", {}, g.id), el("p", { class: "muted" }, JSON.stringify(g.prompt)));
    box.append(el("table", { class: "generation" },
      el("tr", {}, ...GENERATION_COLUMNS.map(([t, what]) => el("th", { title: what }, t))),
      ...g.results.map((r) => el("tr", {}, el("td", {}, r.model), el("td", {}, f(r.unique_fraction)), el("td", {}, f(r.distinct_1)),
        el("td", {}, f(r.distinct_2)), el("td", {}, f(r.ead_1)), el("td", {}, f(r.compression_ratio)), el("td", {}, f(r.embedding_diversity))))));
  }
  for (const note of report.notes) box.append(el("p", { class: "muted" }, `note: ${note}`));
}

async function run(e) {
  e.preventDefault();
  const form = new FormData($("compare-form"));
  const models = form.getAll("model");
  if (!models.length) return toast("Pick at least one model.");
  const body = { models, suite: form.get("suite"), samples: Number(form.get("samples")), seed: Number(form.get("seed")),
    embeddings: form.get("embeddings") === "on" };
  clear($("results"));
  try {
    await stream("/compare", body, (name, data) => {
      if (name === "status") $("status").textContent = data.message;
      else if (name === "error") throw new Error(data.message);
      else if (name === "done") { $("status").textContent = "done"; render(data.report); }
    });
  } catch (err) { toast(err.message); $("status").textContent = ""; }
}

// The models: the server's default (a base model) and the packaged tuned one ticked, so a first run compares a base
// with a tuned model; a model that cannot run says why; the toy models (for tests) folded away.
async function start() {
  const config = await api("GET", "/config");
  const ticked = new Set([config.default_model, "hf:smollm2-135m-instruct"]);
  const toys = el("details", { class: "toys" }, el("summary", {}, "toy models (deterministic, for tests)"));
  for (const m of await api("GET", "/models")) {
    if (m.ref.includes("URL")) continue;
    const choice = el("label", { title: m.installed ? m.description : m.note },
      el("input", { type: "checkbox", name: "model", value: m.ref, disabled: !m.installed, checked: m.installed && ticked.has(m.ref) }),
      ` ${m.ref} `, m.installed ? null : el("small", { class: "muted" }, `(${m.note})`));
    (m.ref.startsWith("mock:") ? toys : $("model-choices")).append(choice);
  }
  $("model-choices").append(toys);
  for (const s of await api("GET", "/suites")) $("suite").append(el("option", { value: s.name }, `${s.name} (${s.probes} probes, ${s.generations} prompts)`));
  $("compare-form").addEventListener("submit", run);
}

start().catch((e) => toast(e.message));
