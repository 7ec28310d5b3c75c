// The side panels and dialogs, each rendered from `state`: children, generation settings, this node's tags and
// chapter, the optimization ledger, the lens.
import { api } from "./api.js";
import { clear, el, pct, plural, snippet, steerLabel } from "./dom.js";
import { isUnread } from "./unread.js";
import { canEdit, current, me, state } from "./state.js";

const $ = (id) => document.getElementById(id);
const FIELDS = ["n", "max_tokens", "temperature", "top_p", "top_k", "seed"];

// The children of the current node; `live`: the samples streaming in at it instead. A person inside an archived
// branch sees its (archived) children; elsewhere archived children show only with the archived toggle.
export function renderChildren(onGo, live) {
  const box = clear($("children"));
  $("children-count").textContent = live ? "" : `(${state.children.length})`;
  if (live) {
    live.forEach((text, i) => box.append(el("div", { class: "card live" }, el("div", { class: "meta" }, `sample ${i + 1}`), text)));
    return;
  }
  if (!state.children.length) box.append(el("p", { class: "muted" }, canEdit() ? "No children yet: press g to generate, w to write one." : "No children yet."));
  state.children.forEach((c, i) => {
    const meta = [i < 9 ? `${i + 1}` : null, isUnread(c) ? "• new" : null, c.origin, c.mean_logprob === null ? null : `mean p ${pct(c.mean_logprob)}`,
      c.child_count ? `${c.child_count} ${c.child_count === 1 ? "child" : "children"}` : null, c.bookmarked ? "★" : null,
      c.meta && c.meta.chapter ? `§ ${c.meta.chapter}` : null, steerLabel(c) || null, ...c.tags.map((t) => `#${t}`),
      by(c) && by(c) !== me.name ? `by ${by(c)}` : null];
    const others = state.here.filter((p) => p.node_id === c.id && p.actor !== me.name).map((p) => p.actor);
    if (others.length) meta.push(`● ${others.join(", ")} here`);
    const dim = state.byAuthor && by(c) !== state.byAuthor;
    const mark = modelMark(c);
    if (mark) meta.splice(2, 0, c.model);
    box.append(el("div", { class: `card ${c.origin}${dim ? " dim" : ""}${mark}`, dataset: { node: c.id }, onclick: () => onGo(c.id) },
      el("div", { class: "meta" }, meta.filter(Boolean).join(" · ")), c.text || "∅"));
  });
}

// Siblings written by several models: each model a colour (in the order they first appear), and its name shown.
export function modelMark(node) {
  const models = [...new Set(state.children.map((c) => c.model).filter(Boolean))];
  return models.length > 1 && node.model ? ` by-model m${models.indexOf(node.model) % 6}` : "";
}

// Who made a node: the account (or person) whose operation made it, or the author an imported file named.
export const by = (n) => (n.meta && n.meta.by) || n.author || null;

// Who else has the tree open, in the header: a name per person, at the node they are on (click: go there). And
// the author filter's choices: everyone, or a person seen here (on the path, among the children, present).
export function renderPresence(onGo) {
  const box = clear($("presence"));
  const others = state.here.filter((p) => p.actor !== me.name);
  for (const p of others) {
    box.append(el("button", { class: "person", title: `${p.actor} has this tree open: go to where they are`, onclick: () => p.node_id && onGo(p.node_id) }, p.actor));
  }
  const pick = $("author-filter");
  const names = new Set([...state.path, ...state.children].map(by).filter(Boolean));
  for (const p of state.here) names.add(p.actor);
  if (state.byAuthor) names.add(state.byAuthor);
  const have = [...pick.options].map((o) => o.value).slice(1);
  const want = [...names].sort();
  if (have.join("\n") !== want.join("\n")) {
    pick.replaceChildren(el("option", { value: "" }, "everyone"), ...want.map((n) => el("option", { value: n, selected: n === state.byAuthor }, n === me.name ? `${n} (you)` : n)));
  }
}

// -- generation settings: the form, saved per tree, and named presets -----------------------------------------

export function genParams() {
  const form = new FormData($("gen-form"));
  const params = {};
  for (const key of FIELDS) {
    const v = form.get(key);
    if (v !== null && v !== "") params[key] = Number(v);
  }
  // several stop sequences are written apart by " | " (\n for a newline), as the field shows them
  const stop = form.get("stop");
  if (stop) params.stop = stop.split(" | ").filter(Boolean).map((x) => x.replace(/\\n/g, "\n"));
  // the latents panel's picks (state.steer): vectors with their coefficients
  // (only vectors made for the model chosen: switching models keeps the others picked for when it comes back)
  const model = form.get("model") || null;
  const fits = (name) => !state.steer.vectors.length || state.steer.vectors.some((v) => v.name === name && v.model === model);
  const steer = Object.entries(state.steer.picks).filter(([name]) => fits(name)).map(([name, coef]) => ({ name, coef }));
  if (steer.length) params.steer = steer;
  if (steer.length && state.steer.prompt) params.steer_prompt = true;
  // more models at once: n samples from each of the ones ticked besides the chosen one
  const more = [...document.querySelectorAll("#gen-models input:checked")].map((b) => b.value).filter((m) => m !== model);
  return { model, params, models: more.length ? [model, ...more] : null };
}

// Fill the form from saved settings; a tree without any gets the form's defaults (not the last tree's values).
export function fillGenForm(gen) {
  gen = gen || {};
  const form = $("gen-form");
  if (gen.model && [...$("gen-model").options].some((o) => o.value === gen.model)) $("gen-model").value = gen.model;
  const params = gen.params || {};
  for (const key of FIELDS) form.elements[key].value = params[key] === undefined ? form.elements[key].defaultValue : params[key];
  form.elements.stop.value = (params.stop || []).map((x) => x.replace(/\n/g, "\\n")).join(" | ");
  state.steer.picks = Object.fromEntries((params.steer || []).map((s) => (typeof s === "string" ? s.split("=") : [s.name, s.coef]))
    .map(([name, coef]) => [name, Number(coef)]));
  state.steer.prompt = Boolean(params.steer_prompt);
  document.dispatchEvent(new Event("steer-changed"));
}

export function renderPresets() {
  const select = $("gen-preset"), chosen = select.value;
  clear(select).append(el("option", { value: "" }, "—"));
  for (const name of Object.keys((state.settings && state.settings.presets) || {})) {
    select.append(el("option", { value: name, selected: name === chosen }, name));
  }
}

// Only the settings changed here are sent (PATCH): another tab's change to the others is kept.
export async function saveSettings(changes) {
  lastSave = performance.now();
  state.settings = await api("PATCH", `/trees/${state.tree.id}/settings`, changes);
  state.reference = state.settings.reference;
  renderPresets();
}

let genTimer = null, saving = 0, saves = 0, lastSave = 0;

// Whether this page saved the tree's settings a moment ago (its own change coming back as an event).
export const ownSave = () => performance.now() - lastSave < 5000;
let synced = null; // the generation settings (JSON) this page last loaded or saved

// The generation form is saved with the tree as it changes (a moment after the last change), so a reload or
// another browser opens with the same settings.
export function saveGeneration() {
  if (!canEdit()) return; // a viewer's settings stay in the page: the tree's are its editors'
  clearTimeout(genTimer);
  const treeId = state.tree && state.tree.id;
  genTimer = setTimeout(async () => {
    genTimer = null;
    if (!state.tree || state.tree.id !== treeId) return;
    saving += 1;
    saves += 1;
    try {
      const { model, params } = genParams(); // (the extra models of one press are not a tree setting)
      await saveSettings({ generation: { model, params } });
      synced = JSON.stringify(state.settings.generation || null);
    } catch (e) { /* an invalid value: generating will say why */ } finally { saving -= 1; }
  }, 400);
}

// A tree's settings as loaded: the form shows them.
export function loadGenForm(gen) {
  synced = JSON.stringify(gen || null);
  fillGenForm(gen);
}

// How many saves this page has started: settings read before the latest one are older than the form.
export const savesSoFar = () => saves;

// Settings re-read with the tree (``since``: savesSoFar() when they were asked for): the form changes only for a
// change made elsewhere (another tab or person), never while this page is saving its own, from an answer older
// than its latest save, or while someone is typing in it (each would undo what was just typed).
export function syncGenForm(gen, since) {
  const now = JSON.stringify(gen || null);
  if (now === synced || genTimer || saving || since !== saves || $("gen-form").contains(document.activeElement)) return;
  synced = now;
  fillGenForm(gen);
}

// -- this node: tags (no window.prompt) and its chapter ---------------------------------------------------------

export function renderNodePane(onTags, onChapter) {
  const node = current();
  const tags = clear($("tags"));
  if (!node.tags.length) tags.append(el("span", { class: "muted" }, "no tags "));
  for (const t of node.tags) {
    tags.append(el("span", { class: "chip" }, `#${t} `, el("button", { class: "x", title: `remove #${t}`, "aria-label": `remove tag ${t}`, onclick: () => onTags({ remove: [t] }) }, "×")));
  }
  const chapter = node.meta && node.meta.chapter;
  clear($("chapter-line")).append(
    chapter ? el("span", {}, `Chapter: § ${chapter} `) : el("span", { class: "muted" }, "Not a chapter start "),
    el("button", { class: "write", onclick: onChapter, title: "Shift+C" }, chapter ? "Rename / remove" : "Name a chapter here"),
  );
}

// -- the lens ---------------------------------------------------------------------------------------------------

export async function showNext() {
  const box = clear($("lens-out"));
  box.append(el("p", { class: "muted" }, "computing…"));
  box.scrollIntoView({ block: "nearest" });
  const model = encodeURIComponent($("gen-model").value);
  const r = await api("GET", `/nodes/${current().id}/next?model=${model}&k=10`);
  const h = r.entropy_bits === null ? `≥ ${r.entropy_bits_lower_bound.toFixed(2)}` : r.entropy_bits.toFixed(2);
  clear(box).append(el("p", { class: "muted" }, `next token after this node (${r.model || $("gen-model").value}): entropy ${h} bits`),
    el("ol", { class: "alts" }, r.top.map((t) => el("li", {}, el("code", {}, JSON.stringify(t.token)), ` ${(100 * t.prob).toFixed(1)}%`))));
  $("lens-pane").scrollIntoView({ block: "nearest" });
}

export async function showMassTree() {
  const box = clear($("lens-out"));
  box.append(el("p", { class: "muted" }, "computing…"));
  box.scrollIntoView({ block: "nearest" });
  const model = encodeURIComponent($("gen-model").value);
  const tree = await api("GET", `/nodes/${current().id}/mass-tree?model=${model}&depth=3&cutoff=0.02`);
  const render = (node) => el("ul", { class: "mass" }, node.children.map((c) => el("li", {},
    el("code", {}, JSON.stringify(c.token)), ` ${(100 * c.prob).toFixed(1)}% (path ${(100 * c.path_prob).toFixed(1)}%)`,
    c.children.length ? render(c) : null)));
  clear(box).append(render(tree), el("p", { class: "muted" }, "branches below 2% of the mass are not shown"));
  $("lens-pane").scrollIntoView({ block: "nearest" });
}

// -- trees and this tree's settings ------------------------------------------------------------------------

export async function renderTreesDialog(onOpenTree, onGo) {
  const list = clear($("tree-list"));
  for (const t of await api("GET", "/trees")) {
    list.append(el("li", {}, el("button", { class: "link", onclick: () => { $("trees-dialog").close(); onOpenTree(t.id); } },
      snippet(t.title, 70)), el("span", { class: "muted" }, ` ${plural(t.nodes, "node")}`)));
  }
  $("tree-settings").hidden = !state.tree;
  if (state.tree && state.settings) {
    $("memory-input").value = state.settings.memory;
    $("reference-model").value = state.settings.reference_model || "";
    const chapters = clear($("chapter-list"));
    if (!state.chapters.length) chapters.append(el("li", { class: "muted" }, "no chapters (Shift+C names one)"));
    for (const c of state.chapters) {
      chapters.append(el("li", {}, el("button", { class: "link", onclick: () => { $("trees-dialog").close(); onGo(c.node_id); } }, c.title)));
    }
  }
}
