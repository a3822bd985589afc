// A member's access in words, for the member's own page and the admin's view
// of a member: each entitlement, and the history of changes as a timeline.
import { api } from "./api.js";
import { formatDate, formatDay, h, problem } from "./dom.js";

export const HISTORY_PAGE = 20;

export const BADGES = {
  active: ["Active", "ok"], canceling: ["Canceling", "warn"], past_due: ["Past due", "warn"], expired: ["Expired", ""],
};

const REASONS = {
  subscription_active: "subscription active",
  subscription_canceled: "subscription canceled",
  subscription_unpaid: "subscription unpaid",
  subscription_paused: "subscription paused",
  subscription_incomplete: "first payment not made",
  period_ended: "period ended",
  product_removed: "product removed from the subscription",
  subscription_reassigned: "the subscription now names another member",
  subscription_unlinked: "subscription unlinked",
  subscription_past_due: "payment still failing after the days of grace",
};

// The product's name as Stripe has it, else its id.
export function productName(names, productId) {
  return (names && names[productId]) || productId;
}

// "6 Dec", with the year when it is not this year's.
export function shortDay(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const options = { day: "numeric", month: "short" };
  if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
  return date.toLocaleDateString(undefined, options);
}

function when(iso, text = shortDay(iso)) {
  return h("time", { datetime: iso, title: formatDate(iso) }, text);
}

// What an entitlement gives now, in a sentence.
export function accessWords(item) {
  const until = formatDay(item.access_until);
  if (!item.access) return until ? `No access since ${until}.` : "No access.";
  if (item.state === "canceling") return `Access until ${until}; the subscription does not renew.`;
  if (item.state === "past_due") return `Access until ${until}, while the payment is retried.`;
  return until ? `Access until ${until}; renews then.` : "Access.";
}

// One entitlement as a card: its product by name, its state and access;
// `more` adds lines (and buttons) below. Stripe's ids are for the admin:
// a member knows the product by its name, as Stripe's portal shows it.
export function entitlementCard(item, names, more = [], { ids = true } = {}) {
  const [word, tone] = BADGES[item.state] || [item.state, ""];
  return h("li", { class: "card entitlement" },
    h("div", { class: "card-head" }, h("h3", {}, productName(names, item.product_id)),
      h("span", { class: `badge ${tone}` }, word)),
    h("p", {}, accessWords(item)),
    ...more,
    ids ? h("p", { class: "muted small" }, "Stripe product ", h("code", {}, item.stripe_product_id),
      ", subscription ", h("code", {}, item.subscription_id)) : null);
}

// What a change did, from what the entitlement held before and after it.
function headline(entry) {
  const { from, to } = entry;
  const on = [" on ", when(entry.at)];
  const until = when(to.access_until);
  const had = Boolean(from && from.access);
  if (to.access && !had) return ["Access granted", ...on];
  if (!to.access && had) {
    // `at` is when the change was recorded, which can be days after the paid
    // period ended (a sweep's next run, a clock moved ahead): access ended at
    // the earlier of the two, the day the access card gives.
    const ended = to.access_until && new Date(to.access_until) < new Date(entry.at) ? to.access_until : entry.at;
    const by = entry.cause.kind === "sweep" ? ", recorded by the scheduled check" : "";
    const later = formatDay(ended) !== formatDay(entry.at);
    return ["Access ended on ", when(ended), ...(later ? [by || ", recorded", " on ", when(entry.at)] : [by])];
  }
  if (!to.access) return ["No access", ...on];
  if (to.state === "canceling" && from.state !== "canceling") return ["Cancellation scheduled: access until ", until];
  if (from.state === "canceling" && to.state !== "canceling") return ["Cancellation undone: access until ", until];
  if (to.state === "past_due" && from.state !== "past_due") {
    return ["Payment failed", ...on, ": access until ", until, " while it is retried"];
  }
  if (from.state === "past_due" && to.state !== "past_due") return ["Paid", ...on, ": access until ", until];
  if (to.access_until && (!from.access_until || new Date(to.access_until) > new Date(from.access_until))) {
    return ["Renewed to ", until];
  }
  return ["Access until ", until, " from ", when(entry.at)];
}

// Who or what made the change. `admin`: the admin's view, which names the
// Stripe event, the sweep run and the admin, for support to look up; a
// member reads where the change came from, without ids.
function causeWords(cause, admin) {
  if (!admin) {
    switch (cause.kind) {
      case "catch_up": return [". Found by the hourly catch-up"];
      case "link": return [". Linked to you by the site's team"];
      case "unlink": return [". Unlinked by the site's team"];
      case "claim": return [". Claimed by verified email"];
      // A Stripe event, the import, the sweep: the headline and the reason
      // say what happened; an id would say nothing more to a member.
      default: return [];
    }
  }
  const id = h("code", {}, cause.id);
  switch (cause.kind) {
    case "stripe_event": return [" (Stripe event ", id, ")"];
    case "import": return [" (import)"];
    case "sweep": return [" (sweep run ", id, ")"];
    case "catch_up": return [". Found by the hourly catch-up (Stripe event ", id, ")"];
    case "link": return [". Linked by admin ", id];
    case "unlink": return [". Unlinked by admin ", id];
    case "claim": return [". Claimed by verified email"];
    default: return [` (${cause.kind} `, id, ")"];
  }
}

function timelineEntry(entry, names, admin) {
  // While access goes on the reason is always "subscription active": the
  // headline says what changed.
  const goesOn = entry.to.access && entry.from && entry.from.access && entry.reason === "subscription_active";
  const reason = REASONS[entry.reason] || String(entry.reason || "a change").replace(/_/g, " ");
  return h("li", { tabindex: "-1" },
    h("span", { class: "timeline-product" }, productName(names, entry.product_id)),
    h("span", { class: "visually-hidden" }, ": "),
    h("span", {}, ...headline(entry), goesOn ? "" : `: ${reason}`, ...causeWords(entry.cause, admin)));
}

// A member's access history, newest first, in `box`: `path` is the history
// route (its own, or the admin's for a member); "Show older" reads on.
export async function showHistory(box, path, { admin = false, empty = "No changes yet.", label = "History" } = {}) {
  let list = null;
  async function load(cursor = null) {
    const more = box.querySelector(".more");
    if (more) more.disabled = true;
    let page;
    try {
      const after = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      page = await api("GET", `${path}?limit=${HISTORY_PAGE}${after}`);
    } catch (error) {
      if (more) more.disabled = false;
      if (!list) box.replaceChildren();
      box.querySelector(":scope > .problem")?.remove();
      box.append(problem(error.message));
      return;
    }
    const entries = page.history.map((entry) => timelineEntry(entry, page.product_names, admin));
    box.querySelector(":scope > .problem")?.remove();
    if (!list) {
      list = h("ol", { class: "timeline", "aria-label": label });
      box.replaceChildren(entries.length ? list : h("p", { class: "empty" }, empty));
    }
    list.append(...entries);
    more?.remove();
    if (page.next_cursor) {
      box.append(h("button", { type: "button", class: "more", onclick: () => load(page.next_cursor) },
        "Show older", h("span", { class: "visually-hidden" }, " changes")));
    }
    // From Show older, on to what it showed.
    if (cursor && entries.length) entries[0].focus();
  }
  box.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  await load();
}
