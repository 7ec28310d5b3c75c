// The audit page's reviewer view: the steps the queue's raters disagree on, each rater's label and note, and
// the reviewer's final label (−1 / 0 / +1, with a note), which the exports then use over the raters' labels.
import { api } from "./api.js";
import { clear, el, toast } from "./dom.js";

const $ = (id) => document.getElementById(id);
const NAMES = { "-1": "−1 bad", 0: "0 neutral", 1: "+1 good" };

export async function showDisagreements(queue) {
  const box = clear($("summary"));
  $("summary-view").hidden = false;
  $("audit-view").hidden = true; // the reviewer's view in the rating form's place, at the top
  const rows = await api("GET", `/queues/${queue}/disagreements`);
  const head = el("h2", {});
  const count = () => { head.textContent = `Disagreements: ${rows.length} ${rows.length === 1 ? "step" : "steps"}, ${rows.filter((r) => r.adjudication).length} ruled`; };
  count();
  box.append(head);
  if (!rows.length) box.append(el("p", { class: "muted" }, "The raters agree on every step they share (or have not shared any yet)."));
  for (const r of rows) box.append(card(queue, r, count));
  $("summary-view").scrollIntoView({ block: "start" });
}

function card(queue, r, count) {
  const note = el("input", { placeholder: "why (optional)", "aria-label": "note on the ruling", value: r.adjudication ? r.adjudication.note || "" : "" });
  const ruling = el("span", { class: "ruling" }, r.adjudication ? `ruled ${NAMES[r.adjudication.label]} by ${r.adjudication.reviewer}` : "not ruled yet");
  const rule = async (label) => {
    try {
      const done = await api("POST", `/queues/${queue}/adjudications`, { node_id: r.node_id, question: r.question, label, note: note.value || null });
      ruling.textContent = `ruled ${NAMES[done.label]} by ${done.reviewer}`;
      r.adjudication = { label: done.label, reviewer: done.reviewer };
      count();
    } catch (e) { toast(e.message); }
  };
  return el("div", { class: "disagreement", dataset: { node: r.node_id } },
    el("div", { class: "context muted" }, `…${r.context.slice(-160)}`),
    el("div", { class: "step" }, r.step),
    el("div", { class: "muted" }, r.question),
    el("ul", {}, ...r.labels.map((x) => el("li", {}, `${x.rater}: ${NAMES[x.label]}${x.flagged ? " (unsure)" : ""}${x.note ? ` — “${x.note}”` : ""}`))),
    el("div", { class: "row-controls" }, ...[-1, 0, 1].map((l) => el("button", { onclick: () => rule(l) }, NAMES[l])), note, ruling));
}
