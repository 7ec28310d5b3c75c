// The optimization ledger: the counter in the header, and the panel it opens (a stacked bar per node along the
// path, the table of every lever, the tree's totals). Rendered from the reports of /bits; see docs/metrics.md.
import { api } from "./api.js";
import { clear, el, snippet } from "./dom.js";
import { state } from "./state.js";

const $ = (id) => document.getElementById(id);
// The levers come with every report, from the library's one registry (levers/__init__.py): never a copy here.
let LEVERS = [];
let DEFINED = [];
function useLevers(report) {
  if (report && report.levers) {
    LEVERS = report.levers.map((l) => l.name);
    DEFINED = report.levers;
  }
}
const f = (x) => (x === null || x === undefined ? "?" : x.toFixed(1));

export function renderBits(report, scoring) {
  useLevers(report);
  const box = $("bits");
  box.hidden = !report;
  if (!report) return;
  const p = report.path;
  const known = p.total_bits === null ? "…" : f(p.total_bits);
  const parts = LEVERS.filter((k) => p.ledger[k] !== 0).map((k) => `${p.ledger[k] === null ? (k === "writing" && scoring ? "…" : "?") : f(p.ledger[k])} ${k}`);
  box.textContent = `bits ${p.incomplete.length && p.total_bits !== null ? "≥ " : ""}${known}` + (parts.length ? ` = ${parts.join(" + ")}` : "");
  box.title = `Optimization applied on this path, in bits, by lever; writing scored with ${report.model || "no model"}` +
    (p.pending ? ` (${p.pending} node${p.pending > 1 ? "s" : ""} being scored)` : "") +
    (p.incomplete.length ? `; unknown: ${p.incomplete.join(", ")}` : "") + ". Click for the ledger.";
  box.classList.toggle("scoring", Boolean(scoring && p.pending));
  if ($("ledger-dialog").open) renderLedger(report, scoring);
}

// One bar: a segment per lever, as wide as its bits on a scale shared by the whole panel.
function bar(levers, scale) {
  return el("div", { class: "ledger-bar", role: "img", "aria-label": LEVERS.map((k) => `${k} ${f(levers[k])}`).join(", ") },
    ...LEVERS.filter((k) => levers[k]).map((k) => el("span", {
      class: `lever ${k}`, style: `width:${Math.max(1, (100 * levers[k]) / scale).toFixed(2)}%`, title: `${k}: ${f(levers[k])} bits`,
    })));
}

// What a choice cell's tooltip says: a person's 1 of n with its best-of-n bound; a grader's rule and its bound.
function choiceNote(lever, choice) {
  if (!choice) return "";
  if (lever === "selection" && choice.by === "person") return `1 of ${choice.n}` +
    (choice.m > 1 ? ` (${choice.m} acceptable)` : "") + `; as best-of-n: KL ≤ ${f(choice.kl_bits)} bits`;
  if (lever === "grader" && choice.by !== "person") return `${choice.by} chose 1 of ${choice.n} (${choice.kl || "?"}` +
    `, over ${choice.scored ?? "?"} scores); at most log2 n = ${f(choice.bound_bits)} bits`;
  return "";
}

export function renderLedger(report, scoring) {
  useLevers(report);
  const box = clear($("ledger"));
  box.append(el("p", { class: "muted" }, `Reference model: ${report.model || "none"} (a tree setting). ` +
    DEFINED.map((l) => `${l.name[0].toUpperCase()}${l.name.slice(1)} (${l.what}): ${l.per_node}.`).join(" ") + " ? = unknown (hover for why)."),
  el("p", { class: "legend" }, ...LEVERS.map((k) => el("span", {}, el("span", { class: `lever ${k}` }), ` ${k} `))));
  const totals = (r) => LEVERS.reduce((a, k) => a + (r.ledger[k] || 0), 0);
  const scale = Math.max(1e-9, ...report.nodes.map(totals));
  const table = el("table", { class: "ledger" }, el("tr", {}, ...["node", "origin", "where the pressure came from", ...LEVERS, "tokens", ""].map((h) => el("th", {}, h))));
  for (const r of report.nodes) {
    const node = state.path.find((n) => n.id === r.id);
    const notes = r.notes || {};
    table.append(el("tr", { title: r.excluded || "" },
      el("td", {}, snippet((node && node.text) || "∅", 24)), el("td", {}, r.origin), el("td", { class: "bar" }, bar(r.ledger, scale)),
      ...LEVERS.map((k) => el("td", { class: "num", title: notes[k] || choiceNote(k, r.choice) },
      r.ledger[k] === null ? (k === "writing" && r.pending && scoring ? "…" : "?") : f(r.ledger[k]))),
      el("td", { class: "num" }, String(r.model_tokens)), el("td", { class: "muted" }, r.excluded || "")));
  }
  const p = report.path;
  table.append(el("tr", { class: "total" }, el("td", {}, "path"), el("td", {}), el("td", {}),
    ...LEVERS.map((k) => el("td", { class: "num" }, f(p.ledger[k]))), el("td", { class: "num" }, String(p.model_tokens))));
  const missingKl = report.nodes.some((r) => r.notes && r.notes.model && r.notes.model.includes("not computed"));
  box.append(table, missingKl ? el("p", {}, el("button", { id: "ledger-model-kl", onclick: modelKl },
    "Compute the model lever"), el("span", { class: "muted" }, " (nodes another model wrote: loads it, two passes per node)")) : null,
  el("p", {}, `Path total: ${p.incomplete.length ? "≥ " : ""}${f(p.total_bits)} bits` +
    (p.incomplete.length ? ` (unknown: ${p.incomplete.join(", ")})` : "") +
    `; your choices as best-of-n policies: KL ≤ ${f(p.selection_kl_bits)} bits.`), el("div", { id: "ledger-tree", class: "muted" }, "tree totals: loading…"));
  treeTotals();
}

async function modelKl(e) {
  e.target.disabled = true;
  e.target.textContent = "computing…";
  try {
    const nodeId = state.path[state.path.length - 1].id;
    const report = await api("GET", `/nodes/${nodeId}/bits?model_kl=true`);
    if (state.path.length && state.path[state.path.length - 1].id === nodeId) { state.bits = report; renderBits(report, false); renderLedger(report, false); }
  } catch (err) {
    e.target.textContent = `failed: ${err.message}`;
  }
}

let asked = 0;
async function treeTotals() {
  const ticket = ++asked;
  try {
    const t = (await api("GET", `/trees/${state.tree.id}/bits?score=false`)).tree_totals;
    if (ticket !== asked || !$("ledger-tree")) return;
    clear($("ledger-tree")).append(el("strong", {}, "The whole tree: "),
      LEVERS.map((k) => `${f(t.ledger[k])} ${k}`).join(" + ") + ` = ${t.incomplete.length ? "≥ " : ""}${f(t.total_bits)} bits` +
      (t.pending ? ` (${t.pending} written nodes not scored yet)` : ""), bar(t.ledger, Math.max(1e-9, ...LEVERS.map((k) => t.ledger[k] || 0).concat([LEVERS.reduce((a, k) => a + (t.ledger[k] || 0), 0)]))));
  } catch (e) {
    if (ticket === asked && $("ledger-tree")) $("ledger-tree").textContent = `tree totals: ${e.message}`;
  }
}
