// The loom page: state, actions and keyboard. Views live in reader.js and outline.js.
import { api, setUser, stream } from "./api.js";
import { clear, el, pct, snippet, toast } from "./dom.js";
import { Outline } from "./outline.js";
import { caretOffset, renderInspector, renderRead } from "./reader.js";

const $ = (id) => document.getElementById(id);
const state = {
  tree: null, root: null, path: [], children: [], version: null,
  selected: null, // {node, index} of the token shown in the inspector
  lastChild: new Map(), // parent id -> child last visited, for "down"
  busy: null, // AbortController of a running generation
  editing: null, // {mode: "edit"|"child", node}
  chosen: new Set(), // nodes whose choice this page has recorded
  inflight: 0, // user actions under way: the poller keeps out of their way
  ticket: 0, // the latest navigation; older ones stop before they render (the latest request wins)
};
const outline = new Outline($("outline"), (id) => go(id));
const current = () => state.path[state.path.length - 1];

function status(text) { $("status").textContent = text || ""; }

async function guarded(fn) {
  state.inflight += 1;
  try { return await fn(); } catch (e) { toast(e.message); status(""); } finally { state.inflight -= 1; }
}

// -- loading ---------------------------------------------------------------------------------------------

async function go(nodeId, { keepSelection = false } = {}) {
  const ticket = ++state.ticket;
  const path = await api("GET", `/nodes/${nodeId}/path`);
  const node = path[path.length - 1];
  if (!state.tree || state.tree.id !== node.tree_id) {
    const info = await api("GET", `/trees/${node.tree_id}`);
    if (ticket !== state.ticket) return;
    state.tree = info.tree; state.version = info.version; state.root = info.root;
    outline.reset(); outline.open.clear();
    $("tree-title").textContent = info.tree.title;
  }
  if (ticket !== state.ticket) return;
  state.path = path;
  if (path.length > 1) state.lastChild.set(path[path.length - 2].id, nodeId);
  if (!keepSelection) state.selected = null;
  history.replaceState(null, "", `#node=${nodeId}`);
  await render(ticket);
}

// Re-read the tree after a change, then show `targetId` (or, if it is gone, the deepest surviving node of the
// current path: the current node may have been undone, or deleted in another tab).
async function reload(targetId) {
  const started = state.ticket;
  outline.reset();
  const info = await api("GET", `/trees/${state.tree.id}`);
  if (state.ticket !== started) return; // the person navigated meanwhile: their newer navigation wins
  state.version = info.version; state.root = info.root; state.tree = info.tree;
  const candidates = targetId ? [targetId] : [...state.path].reverse().map((n) => n.id);
  for (const id of candidates) {
    try { await go(id, { keepSelection: !targetId }); return; } catch (e) { if (e.status !== 404) throw e; }
  }
  await go(info.root.id);
}

async function render(ticket = state.ticket) {
  const children = await api("GET", `/nodes/${current().id}/children`);
  if (ticket !== state.ticket) return;
  state.children = children;
  renderRead($("read"), state.path, current().id, state.selected);
  renderChildren();
  const sel = state.selected && state.path.find((n) => n.id === state.selected.node);
  renderInspector($("inspector"), sel, sel ? state.selected.index : 0, branch);
  await outline.render(state.root, state.path, current().id);
  showBits(ticket);
  showUndo().catch(() => {});
}

// The live counter: bits of selection and intervention along the current path (scored in the background).
async function showBits(ticket) {
  const box = $("bits");
  const model = $("gen-model").value;
  box.textContent = box.textContent ? box.textContent.replace(/^bits\b/, "bits…") : "bits…";
  try {
    const r = await api("GET", `/nodes/${current().id}/bits?model=${encodeURIComponent(model)}`);
    if (ticket !== state.ticket) return;
    const f = (x) => (x === null || x === undefined ? "?" : x.toFixed(1));
    const p = r.path;
    box.textContent = `bits ${f(p.total_bits)} = ${f(p.selection_bits)} selection + ${f(p.intervention_bits)} intervention · ${p.model_tokens} tokens`;
  } catch (e) {
    if (ticket === state.ticket) box.textContent = "bits: ?";
  }
}

// The lens on the current node: its next-token distribution, or its probability-mass tree (exact, no sampling).
async function showNext() {
  const box = clear($("lens-out"));
  box.append(el("p", { class: "muted" }, "computing…"));
  const model = encodeURIComponent($("gen-model").value);
  const r = await api("GET", `/nodes/${current().id}/next?model=${model}&k=10`);
  const h = r.entropy_bits === null ? `≥ ${r.entropy_bits_lower_bound.toFixed(2)}` : r.entropy_bits.toFixed(2);
  clear(box).append(el("p", { class: "muted" }, `entropy ${h} bits`),
    el("ol", { class: "alts" }, r.top.map((t) => el("li", {}, el("code", {}, JSON.stringify(t.token)), ` ${(100 * t.prob).toFixed(1)}%`))));
}

async function showMassTree() {
  const box = clear($("lens-out"));
  box.append(el("p", { class: "muted" }, "computing…"));
  const model = encodeURIComponent($("gen-model").value);
  const tree = await api("GET", `/nodes/${current().id}/mass-tree?model=${model}&depth=3&cutoff=0.02`);
  const render = (node) => el("ul", { class: "mass" }, node.children.map((c) => el("li", {},
    el("code", {}, JSON.stringify(c.token)), ` ${(100 * c.prob).toFixed(1)}% (path ${(100 * c.path_prob).toFixed(1)}%)`,
    c.children.length ? render(c) : null)));
  clear(box).append(render(tree), el("p", { class: "muted" }, `branches below 2% of the mass are not shown`));
}

// Continuing from a node that was one of several samples records that choice (selection bits), once.
async function recordChoice(node) {
  if (!node.generation_id || state.chosen.has(node.id) || state.path.length < 2) return;
  state.chosen.add(node.id);
  await api("POST", `/nodes/${node.id}/choose`, {});
}

function renderChildren(live) {
  const box = clear($("children"));
  if (live) {
    live.forEach((text, i) => box.append(el("div", { class: "card live" }, el("div", { class: "meta" }, `sample ${i + 1}`), text)));
    return;
  }
  if (!state.children.length) box.append(el("p", { class: "muted" }, "No children yet: press g to generate, w to write one."));
  state.children.forEach((c, i) => {
    const meta = [`${i + 1}`, c.origin, c.mean_logprob === null ? null : `mean p ${pct(c.mean_logprob)}`,
      c.child_count ? `${c.child_count} below` : null, c.bookmarked ? "★" : null, ...c.tags.map((t) => `#${t}`)];
    box.append(el("div", { class: `card ${c.origin}`, dataset: { node: c.id }, onclick: () => guarded(() => go(c.id)) },
      el("div", { class: "meta" }, meta.filter(Boolean).join(" · ")), c.text || "∅"));
  });
}

// -- actions ---------------------------------------------------------------------------------------------

function genParams() {
  const form = new FormData($("gen-form"));
  const params = {};
  for (const key of ["n", "max_tokens", "temperature", "top_p", "top_k", "seed"]) {
    const v = form.get(key);
    if (v !== null && v !== "") params[key] = Number(v);
  }
  const stop = form.get("stop");
  if (stop) params.stop = [stop.replace(/\\n/g, "\n")];
  return { model: form.get("model") || null, params };
}

async function generate(nodeId = current().id) {
  if (state.busy) return;
  if (nodeId === current().id) await recordChoice(current());
  const { model, params } = genParams();
  const live = Array.from({ length: params.n || 4 }, () => "");
  const ctl = new AbortController();
  state.busy = ctl;
  $("cancel-btn").hidden = false;
  let tokens = 0;
  try {
    await stream(`/nodes/${nodeId}/expand`, { model, params }, (name, data) => {
      if (name === "status") status(data.message);
      else if (name === "token") {
        live[data.index] += data.text;
        tokens += 1;
        status(`generating… ${tokens} tokens`);
        renderChildren(live);
      } else if (name === "error") throw new Error(data.message);
      else if (name === "done") { status(""); toast(`${data.children.length} new children`, "info"); }
    }, ctl.signal);
  } catch (e) {
    if (e.name === "AbortError") { status("cancelled: nothing was kept"); } else { toast(e.message); status(""); }
  } finally {
    state.busy = null;
    $("cancel-btn").hidden = true;
    await guarded(reload);
  }
}

function branch(node, index, text, thenGenerate) {
  return guarded(async () => {
    const created = await api("POST", `/nodes/${node.id}/branch`, { token_index: index, alternative: text });
    state.selected = null;
    await reload(created.id);
    if (thenGenerate) await generate(created.id);
  });
}

// Undo or redo the entry the server says is next, naming it: if it is someone else's, ask first. `expect` makes
// the server refuse (409) when another tab or person undid it meanwhile, instead of taking back the next one.
async function step(verb) {
  const entry = (await api("GET", `/trees/${state.tree.id}/undo`))[verb];
  if (!entry) return toast(`Nothing to ${verb}.`, "info");
  const force = !entry.mine;
  if (force && !confirm(`${verb === "undo" ? "Undo" : "Redo"} ${entry.actor}'s operation “${entry.label}”? It is not yours.`)) return;
  const r = await mutate(() => api("POST", `/trees/${state.tree.id}/${verb}`, { expect: entry.seq, force }));
  if (r) toast(`${verb === "undo" ? "Undid" : "Redid"} ${r.label}${r.mine ? "" : ` (${r.actor}'s)`}`, "info");
}

// The undo and redo buttons say what they would do, and whose it is.
async function showUndo() {
  const next = await api("GET", `/trees/${state.tree.id}/undo`);
  for (const verb of ["undo", "redo"]) {
    const e = next[verb], btn = $(`${verb}-btn`);
    btn.disabled = !e;
    btn.title = e ? `${verb} #${e.seq} ${e.label} (${e.mine ? "yours" : `by ${e.actor}`}) — ${verb === "undo" ? "u" : "Shift+U"}` : `nothing to ${verb}`;
  }
}

// A change through the API, then one navigation: to target(result) when given, else back to where we were.
async function mutate(fn, target) {
  return guarded(async () => {
    const result = await fn();
    await reload(target ? target(result) : undefined);
    return result;
  });
}

// The editor opens in place: in the read view, where the current segment is (edit) or after it (a new child).
function openEditor(mode) {
  const node = current();
  state.editing = { mode, node };
  const seg = $("read").querySelector(`.seg[data-node="${node.id}"]`);
  if (mode === "edit") { seg.hidden = true; seg.after($("editor")); } else { $("read").append($("editor")); }
  $("editor").hidden = false;
  $("editor-label").textContent = mode === "edit"
    ? `Editing ${node.id} (saved as a new sibling; the original stays)` : `Writing a child of ${node.id}`;
  $("editor-text").value = mode === "edit" ? node.text : "";
  $("editor-text").focus();
}

function closeEditor() {
  state.editing = null;
  $("editor").hidden = true;
  $("reader").append($("editor")); // out of the read view, which re-renders freely
  for (const seg of $("read").querySelectorAll(".seg[hidden]")) seg.hidden = false;
}

async function saveEditor() {
  const { mode, node } = state.editing;
  const text = $("editor-text").value;
  closeEditor();
  if (mode === "child") await recordChoice(node);
  const path = mode === "edit" ? `/nodes/${node.id}/edit` : `/nodes/${node.id}/children`;
  await mutate(() => api("POST", path, { text }), (n) => n.id);
}

function splitAtCaret() {
  const at = caretOffset();
  if (!at) { toast("Click inside the text where it should be split, then press s.", "info"); return; }
  return mutate(() => api("POST", `/nodes/${at.node}/split`, { offset: at.offset }), (r) => r.head.id);
}

const actions = {
  parent: () => state.path.length > 1 && go(state.path[state.path.length - 2].id),
  child: () => {
    const remembered = state.lastChild.get(current().id);
    const target = state.children.find((c) => c.id === remembered) || state.children[0];
    return target && go(target.id);
  },
  sibling: async (step) => {
    if (state.path.length < 2) return;
    const sibs = await api("GET", `/nodes/${state.path[state.path.length - 2].id}/children`);
    const i = sibs.findIndex((s) => s.id === current().id);
    const next = sibs[i + step];
    if (next) await go(next.id);
  },
  nth: (i) => state.children[i] && go(state.children[i].id),
  generate: () => generate(),
  edit: () => openEditor("edit"),
  write: () => openEditor("child"),
  split: splitAtCaret,
  merge: () => mutate(() => api("POST", `/nodes/${current().id}/merge`), (n) => n.id),
  bookmark: () => mutate(() => api("POST", `/nodes/${current().id}/bookmark`, { on: !current().bookmarked })),
  archive: () => {
    const node = current();
    if (state.path.length < 2) return toast("The root cannot be archived.", "info");
    return mutate(() => api("POST", `/nodes/${node.id}/archive`, { on: !node.archived }),
      () => state.path[state.path.length - 2].id);
  },
  tag: () => {
    const tag = prompt("Tag (prefix with - to remove):");
    if (!tag) return;
    const body = tag.startsWith("-") ? { remove: [tag.slice(1)] } : { add: [tag] };
    return mutate(() => api("POST", `/nodes/${current().id}/tags`, body));
  },
  undo: () => step("undo"),
  redo: () => step("redo"),
  search: () => $("search").focus(),
  shade: () => { $("shade").checked = !$("shade").checked; applyShade(); },
  archived: async () => { outline.showArchived = !outline.showArchived; outline.reset(); await render(); },
  help: () => $("help-dialog").showModal(),
  trees: () => openTrees(),
  cancel: () => { if (state.busy) state.busy.abort(); },
  choose: async () => {
    state.chosen.delete(current().id);
    await recordChoice(current());
    toast("Choice recorded", "info");
    showBits(state.ticket);
  },
};

export const KEYS = [
  ["↑ / k", "parent", () => actions.parent()], ["↓ / j", "child (the last one visited)", () => actions.child()],
  ["← / h", "previous sibling", () => actions.sibling(-1)], ["→ / l", "next sibling", () => actions.sibling(1)],
  ["1 … 9", "go to child N", null], ["g", "generate children (settings on the right)", actions.generate],
  ["Esc", "cancel generation / close", actions.cancel], ["w", "write a child", actions.write],
  ["e", "edit (copy-on-write)", actions.edit], ["s", "split at the caret", actions.split],
  ["m", "merge with the only child", actions.merge], ["b", "bookmark", actions.bookmark],
  ["a", "archive / restore", actions.archive], ["t", "tag", actions.tag], ["u", "undo", actions.undo],
  ["U", "redo", actions.redo], ["/", "search", actions.search], ["p", "shade tokens by probability", actions.shade],
  ["o", "show archived nodes in the outline", actions.archived], ["n", "trees / new tree", actions.trees],
  ["c", "choose this node among its siblings (selection bits)", actions.choose],
  ["x", "next-token distribution here", () => showNext()], ["y", "probability-mass tree here", () => showMassTree()], ["?", "this help", actions.help],
];
const KEYMAP = {
  ArrowUp: "↑ / k", k: "↑ / k", ArrowDown: "↓ / j", j: "↓ / j", ArrowLeft: "← / h", h: "← / h",
  ArrowRight: "→ / l", l: "→ / l", g: "g", w: "w", e: "e", s: "s", m: "m", b: "b", a: "a", t: "t", u: "u",
  U: "U", "/": "/", p: "p", o: "o", n: "n", c: "c", x: "x", y: "y", "?": "?", Escape: "Esc",
};

function onKey(event) {
  const typing = event.target.closest("input, textarea, select, dialog");
  if (state.editing) {
    if (event.key === "Escape") closeEditor();
    else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) guarded(saveEditor);
    return;
  }
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    return guarded(event.shiftKey ? actions.redo : actions.undo);
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey || !state.tree) {
    if (event.key === "Escape") actions.cancel();
    return;
  }
  if (/^[1-9]$/.test(event.key)) return guarded(() => actions.nth(Number(event.key) - 1));
  const entry = KEYS.find(([label]) => label === KEYMAP[event.key]);
  if (entry && entry[2]) {
    event.preventDefault();
    guarded(entry[2]);
  }
}

// -- pieces of chrome ----------------------------------------------------------------------------------

function applyShade() { $("read").classList.toggle("shaded", $("shade").checked); }

async function openTrees() {
  const list = clear($("tree-list"));
  for (const t of await api("GET", "/trees")) {
    list.append(el("li", {}, el("button", { class: "link", onclick: () => { $("trees-dialog").close(); guarded(() => go(t.root_id)); } },
      snippet(t.title, 70)), el("span", { class: "muted" }, ` ${t.nodes} nodes`)));
  }
  $("trees-dialog").showModal();
}

let searchTimer = null;
function onSearch() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => guarded(async () => {
    const q = $("search").value.trim();
    const box = clear($("search-results"));
    box.hidden = !q;
    if (!q) return;
    const hits = await api("GET", `/search?q=${encodeURIComponent(q)}${state.tree ? `&tree=${state.tree.id}` : ""}`);
    if (!hits.length) box.append(el("p", { class: "muted" }, "no match"));
    for (const hit of hits) {
      box.append(el("button", { class: "hit", onclick: () => { box.hidden = true; guarded(() => go(hit.node.id)); } },
        el("span", { class: "muted" }, `${hit.path.length} deep · ${hit.path.join(" › ")}`), el("br"), snippet(hit.node.text, 100)));
    }
  }), 200);
}

async function poll() {
  const idle = () => state.tree && !state.busy && !state.editing && !state.inflight;
  if (!idle()) return;
  try {
    const { version } = await api("GET", `/trees/${state.tree.id}/version`);
    if (version !== state.version && idle()) await reload();
  } catch (e) { /* a transient failure: the next poll tries again */ }
}

async function start() {
  const keys = $("keys");
  for (const [label, what] of KEYS) keys.append(el("tr", {}, el("th", {}, label), el("td", {}, what)));
  document.addEventListener("keydown", onKey);
  $("outline").addEventListener("outline-changed", () => guarded(render));
  $("gen-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(() => generate()); });
  $("cancel-btn").addEventListener("click", actions.cancel);
  $("undo-btn").addEventListener("click", () => guarded(actions.undo));
  $("redo-btn").addEventListener("click", () => guarded(actions.redo));
  $("help-btn").addEventListener("click", actions.help);
  $("next-btn").addEventListener("click", () => guarded(showNext));
  $("mass-btn").addEventListener("click", () => guarded(showMassTree));
  $("trees-btn").addEventListener("click", () => guarded(openTrees));
  $("shade").addEventListener("change", applyShade);
  $("search").addEventListener("input", onSearch);
  $("editor-save").addEventListener("click", () => guarded(saveEditor));
  $("editor-cancel").addEventListener("click", closeEditor);
  for (const btn of document.querySelectorAll("dialog .close")) btn.addEventListener("click", () => btn.closest("dialog").close());
  $("new-tree-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const prompt = new FormData(e.target).get("prompt");
    guarded(async () => {
      const made = await api("POST", "/trees", { prompt });
      $("trees-dialog").close();
      e.target.reset();
      await go(made.root.id);
    });
  });
  $("read").addEventListener("click", (e) => {
    const tok = e.target.closest(".tok");
    const seg = e.target.closest(".seg");
    if (tok && seg) { state.selected = { node: seg.dataset.node, index: Number(tok.dataset.tok) }; guarded(render); }
  });
  const config = await api("GET", "/config");
  // on a local server the page acts as the server's own user; on a shared one each browser gets a name to change
  const name = localStorage.getItem("loomwork.user") || config.user || `guest-${Math.random().toString(36).slice(2, 7)}`;
  localStorage.setItem("loomwork.user", name);
  setUser(name);
  $("user-name").value = name;
  $("user-name").addEventListener("change", (e) => {
    const v = e.target.value.trim();
    if (!v) { e.target.value = name; return; }
    localStorage.setItem("loomwork.user", v); setUser(v); toast(`You are now “${v}”`, "info");
  });
  const select = $("gen-model");
  for (const m of await api("GET", "/models")) {
    if (m.ref.includes("URL")) continue;
    select.append(el("option", { value: m.ref, selected: m.ref === config.default_model, disabled: !m.installed }, m.ref));
  }
  setInterval(poll, 1000);
  const hash = new URLSearchParams(location.hash.slice(1)).get("node");
  if (hash) return guarded(() => go(hash));
  const trees = await api("GET", "/trees");
  if (trees.length) return guarded(() => go(trees[0].root_id));
  return openTrees();
}

guarded(start);
