// A member's own page: what their subscriptions give them access to, and
// where Billing is.
import { api } from "../api.js";
import { formatDay, h, hidden, problem } from "../dom.js";

const BADGES = {
  active: ["Active", "ok"], canceling: ["Canceling", "warn"], past_due: ["Past due", "warn"], expired: ["Expired", ""],
};

function entitlement(item) {
  const [word, tone] = BADGES[item.state] || [item.state, ""];
  const until = formatDay(item.access_until);
  let text;
  if (!item.access) text = until ? `No access since ${until}.` : "No access.";
  else if (item.state === "canceling") text = `Access until ${until}; the subscription does not renew.`;
  else if (item.state === "past_due") text = `Access until ${until}, while the payment is retried.`;
  else text = until ? `Access until ${until}; renews then.` : "Access.";
  return h("li", { class: "card entitlement" },
    h("div", { class: "card-head" }, h("h3", {}, item.product_id), h("span", { class: `badge ${tone}` }, word)),
    h("p", {}, text),
    h("p", { class: "muted small" }, "Stripe product ", h("code", {}, item.stripe_product_id), ", subscription ",
      h("code", {}, item.subscription_id)));
}

export function accountPage(main, { user }) {
  const list = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const billing = h("p", { class: "muted" }, "Checking billing…");

  async function load() {
    try {
      const { entitlements } = await api("GET", "/access");
      list.replaceChildren(entitlements.length
        ? h("ul", { class: "entitlements" }, entitlements.map(entitlement))
        : h("p", { class: "empty" }, "You have no subscriptions on this site yet."));
    } catch (error) {
      list.replaceChildren(problem(error.message));
    }
  }

  main.append(
    h("h1", {}, "Your account"),
    h("p", {}, "Signed in as ", h("strong", {}, user.email || user.id), ` (${user.id}) on ${user.site}.`),
    h("section", { "aria-labelledby": "my-access" },
      h("div", { class: "section-head" }, h("h2", { id: "my-access", tabindex: "-1" }, "My access"),
        h("button", { type: "button", onclick: load }, "Refresh", hidden(" my access"))),
      list),
    h("section", { "aria-labelledby": "billing-heading" }, h("h2", { id: "billing-heading" }, "Billing"), billing));
  load();
  api("GET", "/billing/portal").then(({ available }) => {
    billing.className = "";
    billing.textContent = available
      ? "Choose Billing in the Profile menu to change your card, see your invoices or cancel a subscription."
      : "Billing is not available on this site yet.";
  }, (error) => billing.replaceWith(problem(error.message)));
  return null;
}
