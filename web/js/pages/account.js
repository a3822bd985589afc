// A member's own page: what their subscriptions give them access to, every
// change to it, and where Billing is.
import { api } from "../api.js";
import { h, hidden, problem } from "../dom.js";
import { entitlementCard, showHistory } from "../access.js";

// Billing shows only when the portal can open for this member: the site
// offers it and Stripe knows them as a customer on the connected account.
// When it cannot, the API does not say why: the site's portal may be off, or
// the site may have moved to another Stripe account where they have no
// subscription. What they had is listed above either way, so the words hold
// for both.
function billingWords(available, entitlements) {
  if (available) {
    return "Choose Billing in the Profile menu to change your card, see your invoices or cancel a subscription.";
  }
  if (entitlements.some((item) => item.access)) {
    return "Billing isn't available to you on this site right now, so your card, invoices and cancellation "
      + "can't be managed here: the site may have turned it off, or moved its billing to another Stripe account, "
      + "where you have no subscription yet. Your access above lasts at least until the date it shows. Ask the "
      + "site's team if you need to change something.";
  }
  if (entitlements.length) {
    return "None of your subscriptions here gives access now, and there is no billing for you to manage on this "
      + "site: if the site moved its billing to another Stripe account, you have no subscription there. If you "
      + "subscribe again, Billing appears in your Profile menu to change your card, see your invoices or cancel.";
  }
  return "You have no billing to manage here yet. Once you subscribe on this site, Billing appears in your "
    + "Profile menu to change your card, see your invoices or cancel.";
}

export function accountPage(main, { user }) {
  const list = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const billing = h("p", { class: "muted" }, "Checking billing…");
  const changes = h("div");

  // The member's entitlements, shown; null when they could not be read.
  async function load() {
    try {
      const { entitlements, product_names: names } = await api("GET", "/access");
      list.replaceChildren(entitlements.length
        ? h("ul", { class: "entitlements" },
          entitlements.map((item) => entitlementCard(item, names, [], { ids: false })))
        : h("p", { class: "empty" }, "You have no subscriptions on this site yet."));
      return entitlements;
    } catch (error) {
      list.replaceChildren(problem(error.message));
      return null;
    }
  }

  function loadHistory() {
    return showHistory(changes, "/access/history", { empty: "No changes to your access yet." });
  }

  main.append(
    h("h1", {}, "Your account"),
    h("p", {}, "Signed in as ", h("strong", {}, user.email || user.id), ` (${user.id}) on ${user.site}.`),
    h("section", { "aria-labelledby": "my-access" },
      h("div", { class: "section-head" }, h("h2", { id: "my-access", tabindex: "-1" }, "My access"),
        h("button", { type: "button", onclick: () => { load(); loadHistory(); } }, "Refresh", hidden(" my access"))),
      list),
    h("section", { "aria-labelledby": "billing-heading" }, h("h2", { id: "billing-heading" }, "Billing"), billing),
    h("section", { "aria-labelledby": "history-heading" },
      h("h2", { id: "history-heading" }, "History"),
      h("p", { class: "lead small" }, "Every change to your access, newest first, and what made it."), changes));
  const entitlements = load();
  loadHistory();
  Promise.all([api("GET", "/billing/portal"), entitlements]).then(([{ available }, subscribed]) => {
    billing.className = "";
    billing.textContent = billingWords(available, subscribed || []);
  }, (error) => billing.replaceWith(problem(error.code === "stripe_error"
    ? "Billing could not be checked just now. Try again in a moment." : error.message)));
  return null;
}
