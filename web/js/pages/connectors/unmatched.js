// Unmatched subscribers: the connected account's subscriptions whose
// customer names no member of this site, 50 at a time, each with Link.
import { api } from "../../api.js";
import { productName } from "../../access.js";
import { fill, formatDay, h, hidden, problem } from "../../dom.js";
import { linkDialog, linkedNotice } from "./link-dialog.js";

const STATES = { active: "Active", canceling: "Cancels at period end", past_due: "Past due" };

// Fills `section`. `currentCard()` gives the card as the page has it (null
// before it is read); `say` puts the notice after a link above the card.
export function unmatchedPanel(section, { currentCard, say }) {
  async function load(cursor = null) {
    const card = currentCard();
    // The API lists none while disconnected: that is nothing to match yet, not every subscription matched.
    if (card && card.status !== "connected") {
      fill(section, heading(), h("p", { class: "empty" }, "Nothing to match until a Stripe account is "
        + "connected. Then its subscriptions whose customer names no member of this site show here, for you to "
        + "link to a member."));
      return;
    }
    let page;
    try {
      const after = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      page = await api("GET", `/connectors/stripe/unmatched?limit=50${after}`);
    } catch (error) {
      section.replaceChildren(heading(), problem(error.message));
      return;
    }
    const rows = page.unmatched.map((row) => tableRow(row, page.product_names));
    let body = section.querySelector("tbody");
    if (!cursor || !body) {
      body = h("tbody");
      fill(section, heading(),
        h("p", { class: "muted" }, "Stripe subscriptions whose customer names no member of this site. They give "
          + "no access until the member signs in with the customer's email, or you link them to a member."),
        rows.length ? h("table", { class: "stack" },
          h("thead", {}, h("tr", {}, ["Customer", "Products", "State", "Access until"].map(
            (name) => h("th", { scope: "col" }, name)), h("th", { scope: "col" }, hidden("Actions")))), body)
          : h("p", { class: "empty" }, "None: every subscription names a member."));
    }
    body.append(...rows);
    section.querySelector(".more")?.remove();
    if (page.next_cursor) {
      section.append(h("button", { type: "button", class: "more", onclick: () => load(page.next_cursor) },
        "Show more"));
    }
  }

  function heading() {
    return h("div", { class: "section-head" }, h("h2", { id: "unmatched-heading" }, "Unmatched subscribers"),
      h("button", { type: "button", onclick: () => load() }, "Refresh", hidden(" unmatched subscribers")));
  }

  function tableRow(row, names) {
    const who = row.email || row.name || row.customer_id;
    // A cell's content in one box: on a narrow screen the cell is its label and that box.
    const cell = (label, ...content) => h("td", { "data-label": label }, h("div", {}, ...content));
    return h("tr", {},
      cell("Customer", row.name ? h("strong", { class: "block" }, row.name) : null,
        row.email ? h("span", { class: "block" }, row.email) : null, h("code", {}, row.customer_id)),
      cell("Products", row.products.map((p) => productName(names, p.product_id)).join(", ")),
      cell("State", STATES[row.state] || row.state),
      cell("Access until", formatDay(row.access_until)),
      cell("", h("button", { type: "button", onclick: () => link(row, who) },
        "Link", hidden(` ${who} (${row.subscription_id})`))));
  }

  async function link(row, who) {
    const linked = await linkDialog(row, who);
    if (linked) {
      say(linkedNotice(who, linked));
      load();
    }
  }

  return { load };
}
