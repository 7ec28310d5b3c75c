// The trees dialog's "Sharing" section, for a tree's owners on a server with accounts: who has which role, give
// an account (or "*", every account) a role, change or take it away.
import { api } from "./api.js";
import { clear, el, toast } from "./dom.js";
import { state } from "./state.js";

const $ = (id) => document.getElementById(id);
const ROLES = ["viewer", "rater", "editor", "owner"];

export async function renderSharing(accounts) {
  const box = $("sharing");
  box.hidden = !(accounts && state.tree && state.role === "owner");
  if (box.hidden) return;
  const roles = await api("GET", `/trees/${state.tree.id}/roles`);
  $("sharing-title").textContent = `“${state.tree.title}”`;
  const list = clear($("share-list"));
  for (const r of roles) {
    const pick = el("select", { "aria-label": `role of ${r.account}` },
      ...ROLES.filter((role) => r.account !== "*" || role !== "owner") // every account cannot own a tree
        .map((role) => el("option", { value: role, selected: role === r.role }, role)),
      el("option", { value: "" }, "no access"));
    pick.addEventListener("change", () => change(r.account, pick.value || null));
    list.append(el("li", {}, el("span", { class: "who" }, r.account === "*" ? "everyone" : r.account), " ", pick));
  }
}

async function change(account, role) {
  try {
    await api("PUT", `/trees/${state.tree.id}/roles`, { account, role });
    toast(role ? `${account === "*" ? "Everyone" : account} is now ${role === "owner" ? "an" : "a"} ${role}` : `${account} has no access now`, "info");
  } catch (e) {
    toast(e.message);
  }
  await renderSharing(true);
}

export function wireSharing() {
  $("share-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const account = form.account.value.trim();
    if (account) change(account, form.role.value).then(() => form.reset());
  });
}
