// Settings, Members: the admin's view of one member, found by their user id
// or by a Stripe customer's email: what their subscriptions give them, why
// each is theirs, every change to it, and undoing a link or a claim.
import { api, latestOnly } from "../api.js";
import { confirmDialog, fill, formatDay, h, hidden, problem } from "../dom.js";
import { entitlementCard, productName, showHistory } from "../access.js";

const MEMBER_FROM = {
  metadata: "Theirs because the customer's or the subscription's Stripe metadata names them.",
  record: "Theirs because this site recorded the customer as theirs, from an earlier subscription, link or claim.",
  link: "Theirs because an admin linked the subscription to them.",
  claim: "Theirs because they claimed it: the customer's email is their verified email.",
};
const FOUND_FROM = {
  metadata: "named by the customer's Stripe metadata",
  record: "recorded by this site from a subscription, link or claim",
};

export function membersPage(main) {
  const userInput = h("input", { id: "find-user-id", name: "user_id", required: true, spellcheck: "false",
    autocomplete: "off", "aria-describedby": "find-user-id-hint" });
  const emailInput = h("input", { id: "find-email", name: "email", type: "email", required: true, spellcheck: "false",
    autocomplete: "off", "aria-describedby": "find-email-hint" });
  const byUser = h("form", { class: "finder", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "find-user-id" }, "User id"),
      h("div", { class: "inline-field" }, userInput, h("button", { class: "primary" }, "Show member")),
      h("p", { class: "hint", id: "find-user-id-hint" }, "Their CustomerHub user id, such as user_member.")));
  const byEmail = h("form", { class: "finder", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "find-email" }, "Customer's email"),
      h("div", { class: "inline-field" }, emailInput, h("button", {}, "Find customers")),
      h("p", { class: "hint", id: "find-email-hint" }, "The email of a customer of the connected Stripe account.")));
  const results = h("div", { "aria-live": "polite" });
  const latestSearch = latestOnly();
  const member = h("section", { class: "card member", "aria-labelledby": "member-heading", hidden: true });

  main.append(h("h1", {}, "Members"),
    h("p", { class: "lead" }, "What a member's Stripe subscriptions give them, why each is theirs, and every change "
      + "to their access."),
    h("section", { class: "card", "aria-labelledby": "find-heading" }, h("h2", { id: "find-heading" }, "Find a member"),
      h("div", { class: "finders" }, byUser, byEmail), results),
    member);

  // The address names what is shown (?user=…, ?email=…), so that a reload,
  // Back and a shared link show it again.
  function remember(params) {
    const query = new URLSearchParams(params).toString();
    const path = `${location.pathname}${query ? `?${query}` : ""}`;
    if (path !== location.pathname + location.search) history.pushState(null, "", path);
  }

  byUser.addEventListener("submit", (event) => {
    event.preventDefault();
    const userId = userInput.value.trim();
    results.replaceChildren();
    if (!userId) {
      results.replaceChildren(problem("Give the member's user id."));
      userInput.focus();
      return;
    }
    remember({ user: userId });
    showMember(userId, { focus: true });
  });

  byEmail.addEventListener("submit", (event) => {
    event.preventDefault();
    const email = emailInput.value.trim();
    if (!email || !emailInput.checkValidity()) {
      results.replaceChildren(problem("Give an email address, such as ana@example.com."));
      emailInput.setAttribute("aria-invalid", "true");
      emailInput.focus();
      return;
    }
    emailInput.removeAttribute("aria-invalid");
    remember({ email });
    findByEmail(email, null);
  });

  async function findByEmail(email, chosen) {
    results.replaceChildren(h("p", { class: "muted" }, "Looking for customers…"));
    let found;
    try {
      ({ members: found } = await latestSearch(api("GET", `/members?email=${encodeURIComponent(email)}`)));
    } catch (error) {
      results.replaceChildren(problem(error.code === "not_connected"
        ? `${error.message.replace(/\.$/, "")}. Members can still be found by their user id.` : error.message));
      return;
    }
    if (!found.length) {
      results.replaceChildren(h("p", { class: "empty" }, `No customer of the connected Stripe account has the email `,
        h("strong", {}, email), "."));
      member.hidden = true;
      return;
    }
    const named = found.filter((customer) => customer.user_id);
    results.replaceChildren(
      h("p", {}, found.length === 1 ? "One customer has this email:" : `${found.length} customers have this email. `
        + "Choose the member to see:"),
      h("ul", { class: "results" }, found.map((customer) => h("li", {},
        h("span", {}, h("strong", { class: "block" }, customer.email), h("code", {}, customer.customer_id)),
        customer.user_id
          ? h("span", {}, "Member ", h("strong", {}, customer.user_id), `, ${FOUND_FROM[customer.member_from]
            || "named by Stripe"}.`)
          : h("span", { class: "muted" }, "Names no member of this site. Its subscriptions wait under Unmatched "
            + "subscribers on ", h("a", { href: "/settings/connectors" }, "Connectors"), ", to link to a member."),
        customer.user_id ? h("button", { type: "button", onclick: () => {
          remember({ email, user: customer.user_id });
          showMember(customer.user_id, { email, focus: true });
        } }, "Show member", hidden(` ${customer.user_id}`)) : null))));
    const only = new Set(named.map((customer) => customer.user_id));
    if (chosen) showMember(chosen, { email });
    else if (only.size === 1 && found.length === 1) showMember(named[0].user_id, { email });
    else member.hidden = true;
  }

  async function showMember(userId, { email = null, focus = false, notice = null } = {}) {
    member.hidden = false;
    member.setAttribute("aria-busy", "true");
    const heading = h("h2", { id: "member-heading", tabindex: "-1" }, "Member ", h("code", {}, userId));
    const access = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    const changes = h("div");
    fill(member,
      h("div", { class: "section-head" }, heading,
        h("button", { type: "button", onclick: () => showMember(userId, { email }) }, "Refresh",
          hidden(` member ${userId}`))),
      email ? h("p", { class: "muted small" }, `Found by the customer's email ${email}.`) : null,
      notice,
      h("h3", { class: "sub-heading", id: "member-access-heading", tabindex: "-1" }, "Access"), access,
      h("h3", { class: "sub-heading" }, "History"),
      h("p", { class: "muted small" }, "Every change to their access, newest first, and what made it."), changes);
    if (focus) heading.focus();
    const path = `/access/${encodeURIComponent(userId)}`;
    const timeline = showHistory(changes, `${path}/history`, { admin: true,
      empty: "No changes to their access: no subscription has named them yet." });
    try {
      const { entitlements, product_names: names } = await api("GET", path);
      access.replaceChildren(entitlements.length
        ? h("ul", { class: "entitlements" }, entitlements.map((item) => adminEntitlement(item, names, entitlements,
          userId, email)))
        : h("p", { class: "empty" }, "No subscription on this site names this member."));
    } catch (error) {
      access.replaceChildren(problem(error.message));
    }
    await timeline;
    member.removeAttribute("aria-busy");
  }

  function adminEntitlement(item, names, all, userId, email) {
    const undoable = (item.member_from === "link" || item.member_from === "claim") && item.access;
    const kind = item.member_from === "claim" ? "claim" : "link";
    const error = h("div");
    return entitlementCard(item, names, [
      h("p", { class: "small" }, MEMBER_FROM[item.member_from] || `Theirs by ${item.member_from}.`),
      undoable ? h("div", { class: "actions" }, h("button", { type: "button",
        onclick: () => undo(item, names, all, userId, email, kind, error) },
      `Undo ${kind}`, hidden(` of ${productName(names, item.product_id)} for ${userId}`))) : null,
      error]);
  }

  async function undo(item, names, all, userId, email, kind, error) {
    // Undone, the whole subscription goes: every product it gives them.
    const products = all.filter((other) => other.subscription_id === item.subscription_id)
      .map((other) => productName(names, other.product_id));
    const what = products.length > 1 ? `${products.slice(0, -1).join(", ")} and ${products.at(-1)}` : products[0];
    const confirmed = await confirmDialog({
      title: `Undo the ${kind}?`,
      text: `${userId} loses access to ${what} now (until ${formatDay(item.access_until)} otherwise). `
        + "The subscription goes back to the unmatched list"
        + (kind === "claim" ? ", where only another member with the customer's verified email can claim it." : ".")
        + " Their other subscriptions stay as they are.",
      confirm: "Confirm", danger: true,
    });
    if (!confirmed) return;
    error.replaceChildren();
    try {
      await api("DELETE", `/connectors/stripe/links/${encodeURIComponent(item.subscription_id)}`);
    } catch (failure) {
      error.replaceChildren(problem(`Not undone: ${failure.message}`));
      return;
    }
    await showMember(userId, { email, notice: h("p", { class: "notice", role: "status" },
      `The ${kind} is undone: ${userId} no longer has access to ${what}. The subscription is back under `,
      h("a", { href: "/settings/connectors" }, "Unmatched subscribers"), ".") });
    document.getElementById("member-access-heading")?.focus();
  }

  const query = new URLSearchParams(location.search);
  const email = query.get("email");
  const userId = query.get("user");
  if (email) {
    emailInput.value = email;
    findByEmail(email, userId);
  } else if (userId) {
    userInput.value = userId;
    showMember(userId);
  }
  return null;
}
