// Judge-guided growth from the current node (the autoloom): pick a grader and a budget, start, watch the frontier
// and its scores fill in, stop at any time (what was grown stays). Every pick is the grader's recorded choice.
import { api, stream } from "./api.js";
import { clear, el, snippet, toast } from "./dom.js";
import { guarded, reload } from "./main.js";
import * as panels from "./panels.js";
import { current } from "./state.js";

const $ = (id) => document.getElementById(id);
let running = null; // the AbortController of the growth in progress

export async function loadGraders() {
  const graders = await api("GET", "/graders");
  const select = clear($("grow-form").elements.grader);
  for (const g of graders) select.append(el("option", { value: g.name }, `${g.name} (${g.kind})`));
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
      else if (name === "done") toast(`grew ${data.nodes} nodes; ${data.choices.length} choices by ${data.grader} (${data.grader_bits.toFixed(1)} bits)`, "info");
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

export function wireGrow() {
  $("grow-form").addEventListener("submit", (e) => guarded(() => start(e)));
  $("grow-stop").addEventListener("click", () => { if (running) running.abort(); });
  loadGraders().catch((err) => toast(`graders: ${err.message}`));
}
