// Link a subscriber to a member: the admin finds the member by the email of
// a Stripe customer already theirs, or gives their user id.
import { api, latestOnly } from "../../api.js";
import { productName } from "../../access.js";
import { h, hidden, openDialog, problem } from "../../dom.js";

// Resolves with the member linked and the products the subscription gives
// them, or null when the admin cancels.
export function linkDialog(row, who) {
  return openDialog({
    title: "Link a subscriber",
    describe: `Which member pays for ${who}'s subscription ${row.subscription_id}? They get its access now, `
      + "and the customer's later subscriptions are theirs too.",
    build: (close) => {
      const email = h("input", { id: "link-email", name: "email", type: "email", spellcheck: "false",
        autocomplete: "off", "aria-describedby": "link-email-hint" });
      const found = h("div", { class: "found", "aria-live": "polite" });
      const userId = h("input", { id: "link-user-id", name: "user_id", required: true, spellcheck: "false",
        autocomplete: "off", "aria-describedby": "link-user-id-hint" });
      const error = h("div");
      // The user id field holds the choice: picking a member fills it, typing one unpicks them.
      userId.addEventListener("input", () => {
        for (const radio of found.querySelectorAll("input[type=radio]")) radio.checked = radio.value === userId.value;
      });
      const latest = latestOnly();
      const find = () => findMembers(email, found, userId, latest);
      email.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          find();
        }
      });
      const form = h("form", { novalidate: true },
        h("div", { class: "field" }, h("label", { for: "link-email" }, "Find the member by email"),
          h("div", { class: "inline-field" }, email, h("button", { type: "button", onclick: find }, "Find",
            hidden(" the member by email"))),
          h("p", { class: "hint", id: "link-email-hint" }, "The email of a Stripe customer that is already theirs "
            + "on the connected account.")),
        found,
        h("div", { class: "field" }, h("label", { for: "link-user-id" }, "Member's user id"), userId,
          h("p", { class: "hint", id: "link-user-id-hint" }, "Filled in when you pick a member above, or type their "
            + "CustomerHub user id, such as user_member.")),
        error,
        h("div", { class: "actions" }, h("button", { type: "button", onclick: () => close(null) }, "Cancel"),
          h("button", { class: "primary" }, "Link")));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const user = userId.value.trim();
        if (!user) {
          error.replaceChildren(problem("Pick the member found by email, or give their user id."));
          userId.focus();
          return;
        }
        try {
          const access = await api("POST",
            `/connectors/stripe/unmatched/${encodeURIComponent(row.subscription_id)}/link`, { user_id: user });
          close({ user, products: access.entitlements.filter((item) => item.subscription_id === row.subscription_id)
            .map((item) => productName(access.product_names, item.product_id)) });
        } catch (failure) {
          const words = failure.code === "not_found"
            ? "This subscription is no longer unmatched. Refresh the list to see where it stands." : failure.message;
          error.replaceChildren(problem(words));
        }
      });
      return form;
    },
  });
}

// The members with a Stripe customer of this email, as choices that fill in the user id.
async function findMembers(email, found, userId, latest) {
  const address = email.value.trim();
  email.removeAttribute("aria-invalid");
  if (!address || !email.checkValidity()) {
    email.setAttribute("aria-invalid", "true");
    found.replaceChildren(problem("Give an email address, such as ana@example.com."));
    email.focus();
    return;
  }
  found.replaceChildren(h("p", { class: "muted" }, "Looking for members…"));
  let customers;
  try {
    ({ members: customers } = await latest(api("GET", `/members?email=${encodeURIComponent(address)}`)));
  } catch (failure) {
    found.replaceChildren(problem(failure.message));
    return;
  }
  const members = [...new Map(customers.filter((customer) => customer.user_id)
    .map((customer) => [customer.user_id, customer])).values()];
  if (!members.length) {
    found.replaceChildren(h("p", { class: "empty" }, "No member of this site has a Stripe customer with the "
      + `email ${address}. Try another of their emails, or give their user id below.`));
    return;
  }
  const choices = members.map((member) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "link-member", value: member.user_id,
      onchange: () => { userId.value = member.user_id; } }),
    h("span", {}, h("strong", { class: "block" }, member.user_id),
      h("span", { class: "muted block small" }, `${member.email}, customer ${member.customer_id}`))));
  found.replaceChildren(h("fieldset", {}, h("legend", {}, members.length === 1
    ? "The member with this email:" : "Members with this email: choose one"), choices));
  const first = choices[0].querySelector("input");
  if (members.length === 1) {
    first.checked = true;
    userId.value = first.value;
  }
  first.focus();
}

// The notice after a link: who has what now, and where to see it.
export function linkedNotice(who, { user, products }) {
  return h("p", { class: "notice", role: "status" },
    `Linked ${who} to ${user}: `, products.length ? `they have access to ${andList(products)}. `
      : "the subscription gives them access. ",
    h("a", { href: `/settings/members?user=${encodeURIComponent(user)}` }, `See ${user}'s access`), ".");
}

// "Yoga", "Yoga and Pilates", "Yoga, Pilates and Rowing".
function andList(words) {
  return words.length > 1 ? `${words.slice(0, -1).join(", ")} and ${words.at(-1)}` : words[0];
}
