// The options where one reads: right after the path in the read view, the current node's children in full (or
// the samples streaming in at it), each with its number key, probability, origin and what follows it, so that the
// loop a loom exists for (generate, read the options, choose one, write) happens in one place. Empty samples are
// folded into one line that says what ended them. A view: it renders from `state` and owns nothing.
import { clear, el, pct, steerLabel } from "./dom.js";
import { by, genParams, modelMark } from "./panels.js";
import { NEAR, duplicateOf, seriate } from "./similar.js";
import { canEdit, current, me, state } from "./state.js";
import { isUnread } from "./unread.js";

const $ = (id) => document.getElementById(id);

// What ended an empty sample, in words (nodes record it as meta.stopped_by: a stop sequence, or end of text).
function endedBy(c) {
  const by = c.meta && c.meta.stopped_by;
  if (!by) return (c.meta && c.meta.finish_reason) === "length" ? "the token limit" : "a stop sequence or the end of text";
  return by === "<end of text>" ? "the end of text" : `the stop sequence ${JSON.stringify(by)}`;
}

// Everything that will shape the next `g`, in one line where one presses it: no lever acts unseen (a stop
// sequence imported from another loom, a steering vector, the tree's memory, a preset).
export function nextGeneration() {
  const { model, params, models } = genParams();
  const from = models ? `each of ${models.join(", ")}` : model || "the default model";
  const parts = [`g: ${params.n || 4} × ${params.max_tokens || 32} tokens from ${from}`];
  if (params.temperature !== undefined && params.temperature !== 1) parts.push(`temperature ${params.temperature}`);
  if (params.top_p !== undefined && params.top_p !== 1) parts.push(`top-p ${params.top_p}`);
  if (params.top_k) parts.push(`top-k ${params.top_k}`);
  if (params.stop) parts.push(`stop at ${params.stop.map((x) => JSON.stringify(x)).join(", ")}`);
  if (params.steer) parts.push(`steered ${params.steer.map((x) => `${x.name}×${x.coef}`).join(" ")}${params.steer_prompt ? " (prompt too)" : ""}`);
  if (state.settings && state.settings.memory) parts.push("after the tree's memory");
  if ($("gen-preset").value) parts.push(`preset ${$("gen-preset").value}`);
  if (params.seed !== undefined) parts.push(`seed ${params.seed}`);
  return parts.join(" · ");
}

export function renderOptions(onGo) {
  const box = clear($("options"));
  const gen = state.generating && state.generating.nodeId === current().id ? state.generating : null;
  if (gen) {
    box.append(el("div", { class: "options-head", role: "status" }, gen.status || "generating…"));
    gen.live.forEach((text, i) => box.append(el("div", { class: "option live" },
      el("span", { class: "key" }, `${i + 1}`), el("span", { class: "meta" }, "sample, arriving"), el("div", { class: "text" }, text || "…"))));
    return;
  }
  const kids = state.children;
  if (canEdit()) box.append(el("div", { class: "next-gen", title: "what the next generation here will use (the Generate panel sets it)" }, nextGeneration()));
  if (!kids.length) {
    box.append(el("div", { class: "options-head muted" }, canEdit() ? "No options here yet: g generates, w writes one." : "No options here yet."));
    return;
  }
  const empty = kids.filter((c) => !c.text);
  const shown = kids.filter((c) => c.text);
  const texts = shown.map((c) => c.text);
  const dup = duplicateOf(texts, shown.map((c) => c.model || null));
  const folded = state.showDuplicates ? [] : shown.filter((_c, k) => dup[k] !== -1);
  const again = () => renderOptions(onGo);
  const order = shown.length > 2 ? el("button", { class: "linkish", title: "order the options so that similar ones sit together (or as they came)",
    onclick: () => { state.seriate = !state.seriate; again(); } }, state.seriate ? "order as they came" : "order by likeness") : null;
  box.append(el("div", { class: "options-head" },
    `${kids.length} ${kids.length === 1 ? "option" : "options"} here · ${kids.length > 1 ? `1–${Math.min(kids.length, 9)} or a click chooses` : "1 or a click chooses"}`,
    ...(order ? [" · ", order] : [])));
  for (const k of state.seriate ? seriate(texts) : texts.map((_t, k) => k)) {
    const c = shown[k];
    if (folded.includes(c)) continue;
    const i = kids.indexOf(c);
    const meta = [isUnread(c) ? "new" : null, c.origin, c.mean_logprob === null || c.mean_logprob === undefined ? null : `mean p ${pct(c.mean_logprob)}`,
      c.child_count ? `${c.child_count} below` : null, c.bookmarked ? "★" : null, steerLabel(c) || null,
      ...(c.tags || []).map((t) => `#${t}`), c.author && c.author !== me.name ? `by ${c.author}` : null,
      modelMark(c) ? c.model : null, dup[k] !== -1 ? `≈ ${kids.indexOf(shown[dup[k]]) + 1}` : null].filter(Boolean).join(" · ");
    const dim = state.byAuthor && by(c) !== state.byAuthor ? " dim" : ""; // the "by" filter: others' options fade
    const fresh = isUnread(c) ? " unread" : ""; // not opened yet by this person
    box.append(el("div", { class: `option ${c.origin}${modelMark(c)}${dim}${fresh}`, dataset: { node: c.id }, tabindex: "-1", onclick: () => onGo(c.id) },
      el("span", { class: "key" }, i < 9 ? `${i + 1}` : "·"), el("span", { class: "meta" }, meta), el("div", { class: "text" }, c.text)));
  }
  const twins = shown.filter((_c, k) => dup[k] !== -1);
  if (twins.length) {
    const keys = twins.map((c) => kids.indexOf(c)).filter((i) => i < 9).map((i) => i + 1);
    box.append(el("div", { class: "option empty folded", role: "button", tabindex: "-1",
      title: `options whose character trigrams overlap an earlier option's by at least ${NEAR} (Jaccard)`,
      onclick: () => { state.showDuplicates = !state.showDuplicates; again(); } },
    state.showDuplicates ? `${twins.length} near-${twins.length === 1 ? "duplicate" : "duplicates"} shown (≈ N: like option N) · fold them`
      : `${twins.length} near-${twins.length === 1 ? "duplicate" : "duplicates"} folded${keys.length ? ` (${keys.join(", ")})` : ""}, similarity ≥ ${NEAR} · show`));
  }
  if (empty.length) {
    const why = [...new Set(empty.map(endedBy))].join("; ");
    const keys = empty.map((c) => kids.indexOf(c)).filter((i) => i < 9).map((i) => i + 1);
    box.append(el("div", { class: "option empty", title: "samples with no text: the model ended them at once" },
      `${empty.length} empty ${empty.length === 1 ? "sample" : "samples"}${keys.length ? ` (${keys.join(", ")})` : ""}, ended by ${why}`));
  }
}
