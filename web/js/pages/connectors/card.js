// The Stripe card: connected or not (and why not), to which account, whether
// Stripe's events reach the connector, how the last import went, and the
// More actions menu. What its buttons do is the page's.
import { fill, formatDate, h, menuButton, menuItem, timeAgo } from "../../dom.js";

// How often "3 minutes ago" is said again.
const AGO_MS = 30_000;
const REASONS = {
  disconnected_by_admin: "An admin disconnected it.",
  revoked_in_stripe: "Access was revoked in Stripe: the account's owner removed CustomerHub in their Stripe dashboard.",
};
// Needs someone's attention: the admin did not choose it.
const WARNING_REASONS = new Set(["revoked_in_stripe"]);
const KEBAB = '<svg aria-hidden="true" viewBox="0 0 24 24"><circle cx="12" cy="5" r="2"/>'
  + '<circle cx="12" cy="12" r="2"/><circle cx="12" cy="19" r="2"/></svg>';

// `actions`: connect, syncNow, switchAccount and disconnect. stop() when the page is left.
export function connectorCard(box, actions) {
  let syncBox = null;
  let eventsBox = null;
  // "last received 3 minutes ago" stays true while the page is open.
  const agoTimer = setInterval(() => {
    for (const time of box.querySelectorAll("time.ago")) time.textContent = timeAgo(time.dateTime);
  }, AGO_MS);

  function draw(card) {
    const connected = card.status === "connected";
    box.classList.toggle("is-connected", connected);
    const head = h("div", { class: "card-head" },
      h("span", { class: "logo", "aria-hidden": "true" }, "S"),
      h("div", { class: "card-title" }, h("h2", { id: "stripe-heading" }, "Stripe"),
        h("p", { class: "muted" }, "Billing portal and members' access from their subscriptions")),
      h("span", { class: connected ? "badge ok" : "badge" }, connected ? "Connected" : "Not connected"),
      connected ? moreActions(actions) : null);
    if (!connected) {
      const connect = h("button", { type: "button", class: "primary", id: "stripe-connect",
        onclick: () => actions.connect() }, "Connect");
      fill(box, head,
        h("p", {}, "Connect your Stripe account to offer members Stripe's billing portal and to keep their access "
          + "in step with what they pay for."),
        card.disconnected_reason ? disconnectedWords(card.disconnected_reason) : null,
        h("div", { class: "actions" }, connect));
      syncBox = null;
      eventsBox = null;
      return;
    }
    const account = card.account;
    syncBox = h("div", { class: "sync" }, ...syncWords(card.sync));
    eventsBox = h("div", { class: "events" });
    fillEvents(card.events);
    box.replaceChildren(head,
      h("dl", { class: "facts" },
        h("div", {}, h("dt", {}, "Account"), h("dd", {}, h("strong", { class: "account-name" }, account.display_name),
          " ", h("code", {}, account.id), account.livemode ? "" : h("span", { class: "tag" }, "Test mode"))),
        h("div", {}, h("dt", {}, "Connected since"), h("dd", {}, formatDate(card.connected_at))),
        h("div", {}, h("dt", {}, "Customer portal"), h("dd", {}, card.settings.portal_enabled ? "On" : "Off"))),
      eventsBox, syncBox);
  }

  // The same connection: its import and its events in place, the rest of the
  // card (an open menu) untouched. False when the card has none to update.
  function update(card) {
    if (!syncBox) return false;
    syncBox.replaceChildren(...syncWords(card.sync));
    if (JSON.stringify(card.events) !== eventsBox.dataset.shown) fillEvents(card.events);
    return true;
  }

  // Redrawn only when what it says changes: a poll must not say a warning again.
  function fillEvents(events) {
    eventsBox.dataset.shown = JSON.stringify(events);
    eventsBox.replaceChildren(...eventWords(events));
  }

  return { draw, update, stop: () => clearInterval(agoTimer) };
}

function moreActions({ syncNow, switchAccount, disconnect }) {
  const button = h("button", { type: "button", class: "icon-button", id: "stripe-actions-button",
    "aria-label": "More actions", "aria-haspopup": "menu", "aria-expanded": "false",
    "aria-controls": "stripe-actions" });
  button.innerHTML = KEBAB;
  const menu = h("ul", { class: "menu", role: "menu", id: "stripe-actions",
    "aria-labelledby": "stripe-actions-button", hidden: true },
    menuItem("Sync now", syncNow),
    menuItem("Connect a different account", switchAccount),
    menuItem("Disconnect", disconnect));
  menuButton(button, menu);
  return h("div", { class: "menu-anchor" }, button, menu);
}

function disconnectedWords(reason) {
  const words = [h("strong", {}, "Disconnected. "), REASONS[reason] || reason];
  return WARNING_REASONS.has(reason) ? h("div", { class: "warning" }, h("p", {}, ...words))
    : h("p", { class: "reason" }, ...words);
}

function ago(iso) {
  return h("time", { class: "ago", datetime: iso, title: formatDate(iso) }, timeAgo(iso));
}

// Whether Stripe's events reach the connector, in words: facts plainly,
// what needs someone's attention as a warning.
function eventWords(events) {
  if (!events) return [];
  const missed = events.missed_last_day;
  return [
    h("p", {}, h("strong", {}, "Stripe events: "),
      events.last_received_at ? ["last received ", ago(events.last_received_at)] : "none received yet"),
    h("p", {}, h("strong", {}, "Last catch-up: "),
      events.last_caught_up_at ? ago(events.last_caught_up_at) : "not run yet (it runs every hour)"),
    events.endpoint === "disabled" ? h("div", { class: "warning", role: "alert" }, h("p", {},
      h("strong", {}, "Stripe has disabled the webhook endpoint: no events are being delivered. "),
      "Members' access still follows Stripe through the hourly catch-up, up to an hour late, until the endpoint "
      + "is enabled again in Stripe's dashboard (Developers, Webhooks).")) : null,
    missed > 0 ? h("div", { class: "warning", role: "status" }, h("p", {},
      h("strong", {}, `${missed} event${missed === 1 ? "" : "s"} in the last day reached us only through the `
        + "hourly catch-up. "),
      `Stripe could not deliver ${missed === 1 ? "it" : "them"} to the webhook, so the change to members' access `
      + "came up to an hour late.")) : null,
  ].filter(Boolean);
}

export function syncWords(sync) {
  if (!sync) return [h("p", { class: "muted" }, "No import of subscriptions yet.")];
  const counts = `${sync.matched} matched to members, ${sync.unmatched} unmatched`;
  const plural = (n) => `${n} subscription${n === 1 ? "" : "s"}`;
  if (sync.state === "importing") {
    return [h("p", {}, h("strong", {}, "Importing subscriptions from Stripe… "),
      `${plural(sync.subscriptions)} so far: ${counts}.`), h("progress", { "aria-label": "Import progress" })];
  }
  if (sync.state === "failed") {
    return [h("p", { class: "warn" }, `The last import stopped ${formatDate(sync.finished_at)} after `
      + `${plural(sync.subscriptions)}. Choose Sync now under More actions to try again.`)];
  }
  return [h("p", {}, `Imported ${plural(sync.subscriptions)} ${formatDate(sync.finished_at)}: ${counts}.`)];
}
