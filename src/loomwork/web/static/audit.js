// The audit page: one step at a time, seen only with its context (the server sends nothing after it).
import { showDisagreements } from "./adjudicate.js";
import { api } from "./api.js";
import { clear, el, toast } from "./dom.js";

const $ = (id) => document.getElementById(id);
const state = { queue: null, view: null, active: 0, rater: localStorage.getItem("loomwork-rater") || "", critique: null };

async function guarded(fn) {
  try { return await fn(); } catch (e) { toast(e.message); }
}

function setRater(name) {
  state.rater = name.trim();
  localStorage.setItem("loomwork-rater", state.rater);
}

const TAIL = 240; // characters of context shown before it is opened: the step stays on an 800 px screen

async function load() {
  if (!state.queue) return;
  if (!state.rater) {
    $("step").textContent = "Type your name (top right): it is recorded with every rating.";
    $("rater").focus();
    return;
  }
  const view = await api("GET", `/queues/${state.queue}/next?rater=${encodeURIComponent(state.rater)}`);
  state.view = view;
  state.active = 0;
  $("flag").checked = false;
  $("note").value = "";
  if (view.done) {
    clear($("context")); clear($("questions")); $("critique-pane").hidden = true;
    $("step").textContent = "This queue is done for you. Thank you!";
    $("progress").textContent = `${view.progress.done} / ${view.progress.total}`;
    return;
  }
  $("progress").textContent = `${view.progress.done + 1} / ${view.progress.total}`;
  const context = view.context.map((c) => c.text).join("");
  $("context-box").open = false;
  $("context-tail").textContent = context.length > TAIL ? `Context (${context.length.toLocaleString()} characters; open for all): …${context.slice(-TAIL)}` : context;
  $("context").textContent = context.length > TAIL ? context : "";
  $("step").textContent = view.step.text;
  renderQuestions();
  $("step").scrollIntoView({ block: "nearest" });
  state.critique = showCritique(); // ratings wait for it, so each records the critique the rater saw
  await state.critique;
}

// The critique shown beside the step: its record, or null when the step has none or the critic failed (the
// rating then records that no critique was shown).
async function showCritique() {
  const pane = $("critique-pane");
  let c = state.view.critique;
  pane.hidden = !c;
  if (!c) return null;
  if (c.pending) {
    $("critique").textContent = "The critic is writing… (ratings wait for it)";
    try {
      c = (await api("POST", `/queues/${state.queue}/items/${state.view.step.id}/critique`)).critique;
    } catch (e) {
      $("critique").textContent = `No critique: ${e.message}. Your rating records that none was shown.`;
      state.view.critique = null;
      return null;
    }
    state.view.critique = c;
  }
  $("critique").textContent = `${c.text}\n\n— ${c.model}`;
  return c;
}

function renderQuestions() {
  const box = clear($("questions"));
  state.view.queue.questions.forEach((q, i) => {
    const mine = state.view.my_ratings[q];
    const row = el("div", { class: `question${i === state.active ? " active" : ""}`, dataset: { index: i } },
      el("span", { class: "text" }, q),
      ...[-1, 0, 1].map((label) => el("button", {
        class: mine === label ? "on" : "", onclick: () => guarded(() => rate(i, label)),
      }, label > 0 ? "+1" : String(label))));
    box.append(row);
  });
}

async function rate(index, label) {
  const v = state.view;
  const question = v.queue.questions[index];
  const critique = await state.critique; // a critique still being written is waited for, not left out
  await api("POST", `/queues/${state.queue}/ratings`, {
    node_id: v.step.id, rater: state.rater, question, label, flagged: $("flag").checked,
    note: $("note").value || null, critique_id: critique ? critique.id : null,
  });
  v.my_ratings[question] = label;
  const open = v.queue.questions.findIndex((q) => !(q in v.my_ratings));
  state.active = open < 0 ? index : open;
  renderQuestions();
}

async function next() {
  const v = state.view;
  if (v && !v.done && v.queue.questions.some((q) => !(q in v.my_ratings))) {
    toast("Answer every question first (or they stay in your queue).", "info");
    return;
  }
  await load();
}

function bars(dist) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "240"); svg.setAttribute("height", "70");
  const total = Object.values(dist).reduce((a, b) => a + b, 0) || 1;
  // fixed order: object keys like "0" and "1" would otherwise come before "-1"
  ["-1", "0", "1"].map((label) => [label, dist[label] || 0]).forEach(([label, n], i) => {
    const h = Math.round((50 * n) / total);
    const rect = document.createElementNS(ns, "rect");
    for (const [k, val] of Object.entries({ x: 20 + i * 70, y: 55 - h, width: 50, height: h, fill: ["#c0392b", "#999", "#2e8b57"][i] })) rect.setAttribute(k, val);
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", 20 + i * 70); text.setAttribute("y", 68); text.setAttribute("class", "bar-label");
    text.textContent = `${label}: ${n}`;
    svg.append(rect, text);
  });
  return svg;
}

async function showSummary() {
  const box = clear($("summary"));
  $("summary-view").hidden = false;
  $("audit-view").hidden = true; // the summary in the rating form's place, at the top
  const s = await api("GET", `/queues/${state.queue}/summary`);
  const f = (x) => (x === null || x === undefined ? "—" : x.toFixed(3));
  box.append(el("h2", {}, `Summary of ${s.queue.name}`));
  for (const q of s.questions) {
    box.append(el("h3", {}, q.question), bars(q.distribution));
    const table = el("table", {},
      el("tr", {}, el("th", {}, "ratings"), el("td", {}, String(q.ratings)), el("th", {}, "steps"), el("td", {}, String(q.items)),
        el("th", {}, "raters"), el("td", {}, q.raters.join(", "))),
      el("tr", {}, el("th", {}, "pairwise agreement"), el("td", { class: "agreement" }, f(q.pairwise_agreement)),
        el("th", {}, "Krippendorff's α (ordinal)"), el("td", { class: "alpha" }, f(q.krippendorff_alpha_ordinal))),
      ...q.pairs.map((p) => el("tr", {}, el("th", {}, p.raters.join(" × ")), el("td", {}, `${p.items} shared`),
        el("th", {}, "agreement / κ"), el("td", { class: "kappa" }, `${f(p.agreement)} / ${f(p.kappa)}`))));
    box.append(table);
    if (q.with_critique) {
      box.append(el("p", { class: "muted" }, `with critique: ${q.with_critique.items} steps, agreement ${f(q.with_critique.pairwise_agreement)}; ` +
        `without: ${q.without_critique.items} steps, agreement ${f(q.without_critique.pairwise_agreement)}`));
    }
  }
  $("summary-view").scrollIntoView({ block: "start" });
}

function onKey(e) {
  if (e.target.closest("input, textarea, select") && e.key !== "ArrowRight") return;
  if (!state.view || state.view.done) return;
  const map = { 1: -1, 2: 0, 3: 1 };
  if (e.key in map) guarded(() => rate(state.active, map[e.key]));
  else if (e.key === "f") $("flag").checked = !$("flag").checked;
  else if (e.key === "n") { e.preventDefault(); $("note").focus(); }
  else if (e.key === "ArrowRight") { e.target.blur && e.target.blur(); guarded(next); }
  else if (e.key === "ArrowDown") { state.active = Math.min(state.active + 1, state.view.queue.questions.length - 1); renderQuestions(); }
  else if (e.key === "ArrowUp") { state.active = Math.max(state.active - 1, 0); renderQuestions(); }
}

async function start() {
  const config = await api("GET", "/config");
  if (config.accounts) { // an account rates as itself
    setRater(config.user);
    $("rater").disabled = true;
    $("rater").title = "signed in: your ratings are recorded under your account";
  }
  $("rater").value = state.rater;
  $("rater").addEventListener("change", (e) => { setRater(e.target.value); guarded(load); });
  const list = await api("GET", "/queues");
  const reviews = (id) => { const q = list.find((x) => x.id === id); $("disagreements-btn").hidden = !(q && q.reviewer); $("summary-btn").hidden = !(q && q.reviewer); };
  for (const q of list) $("queue").append(el("option", { value: q.id }, `${q.name} (${q.items} steps)`));
  const wanted = new URLSearchParams(location.search).get("queue");
  const pick = list.find((q) => q.id === wanted || q.name === wanted) || list[0];
  if (!pick) {
    clear($("step")).append("No audit queues yet. Make one from a tree at the terminal: ", el("code", {}, "loomwork queue create --help"),
      ". ", el("a", { href: "/" }, "Back to the loom"));
    $("queue").disabled = true;
    return;
  }
  $("queue").value = pick.id;
  state.queue = pick.id;
  reviews(pick.id);
  $("queue").addEventListener("change", () => { state.queue = $("queue").value; reviews(state.queue); guarded(load); });
  $("disagreements-btn").addEventListener("click", () => guarded(() => showDisagreements(state.queue)));
  $("summary-close").addEventListener("click", () => { $("summary-view").hidden = true; $("audit-view").hidden = false; });
  $("next-btn").addEventListener("click", () => guarded(next));
  $("summary-btn").addEventListener("click", () => guarded(showSummary));
  document.addEventListener("keydown", onKey);
  await load();
}

guarded(start);
