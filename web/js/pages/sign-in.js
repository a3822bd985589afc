// The local stack's sign-in: a development token for the site's admin or a
// member. In CustomerHub, its own sign-in gives the UI the token.
import { fill, h, problem } from "../dom.js";
import { currentUser, signIn } from "../session.js";

const PEOPLE = {
  admin: { id: "user_admin", email: "admin@localfitness.test", home: "/settings/connectors" },
  member: { id: "user_member", email: "member@localfitness.test", home: "/account" },
};

// Only a path on this site, never another origin (//evil.example).
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/(?![/\\])/.test(next) ? next : null;
}

export function signInPage(main, { user, config, navigate }) {
  const hours = config.tokenHours;
  const error = h("div");
  const userId = h("input", { id: "user-id", name: "user_id", required: true, autocomplete: "username",
    value: PEOPLE.admin.id, spellcheck: "false" });
  const email = h("input", { id: "email", name: "email", type: "email", required: true, autocomplete: "email",
    value: PEOPLE.admin.email, "aria-describedby": "email-hint" });
  const choice = (role, label, hint) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "role", value: role, checked: role === "admin",
      onchange: () => {
        // Swap in the other person's defaults unless the fields were edited.
        const other = PEOPLE[role === "admin" ? "member" : "admin"];
        if (userId.value === other.id) userId.value = PEOPLE[role].id;
        if (email.value === other.email) email.value = PEOPLE[role].email;
      } }),
    h("span", {}, h("strong", {}, label), h("span", { class: "muted block" }, hint)));

  const form = h("form", { class: "card narrow", novalidate: true },
    h("fieldset", {}, h("legend", {}, "Sign in as"),
      choice("admin", "Site admin", "Connects Stripe in Settings, Connectors"),
      choice("member", "Member", "Sees their access and opens Billing")),
    h("div", { class: "field" }, h("label", { for: "user-id" }, "User id"), userId),
    h("div", { class: "field" }, h("label", { for: "email" }, "Email"), email,
      h("p", { class: "hint", id: "email-hint" },
        "Signed in as verified: a member's unmatched Stripe subscriptions with this email become theirs.")),
    error,
    h("div", { class: "actions" }, h("button", { class: "primary" }, "Sign in")));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    const role = form.elements.role.value;
    const response = await fetch("/local/sign-in", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ role, user_id: userId.value.trim(), email: email.value.trim() }),
    }).catch(() => null);
    const data = response && await response.json().catch(() => null);
    if (!response || !response.ok || !data || !data.token) {
      error.replaceChildren(problem((data && data.error && data.error.message)
        || "The local stack did not answer. Is make run still running?"));
      (/email/i.test(data?.error?.message || "") ? email : userId).focus();
      return;
    }
    signIn(data.token);
    navigate(nextPath() || PEOPLE[role === "member" ? "member" : "admin"].home);
  });

  fill(main,
    h("h1", {}, "Sign in"),
    h("p", {}, `This local stack signs you in itself, with a development token signed by its own secret that lasts
      ${hours} hours. In CustomerHub, its own sign-in does this.`),
    user ? h("p", { class: "notice" }, "You are signed in as ", h("strong", {}, user.email || user.id),
      ` (${user.role}). `, h("a", { href: user.isAdmin ? PEOPLE.admin.home : PEOPLE.member.home },
        user.isAdmin ? "Go to Connectors" : "Go to your account"), ", or sign in as someone else below.") : null,
    nextPath() ? h("p", { class: "notice" }, "Sign in to go on where you were.") : null,
    form,
    config.stripeSandboxUrl ? h("p", { class: "muted" }, "Stripe here is the local sandbox: ",
      h("a", { href: config.stripeSandboxUrl }, "its dashboard"),
      " has the test accounts, their customers and subscriptions.") : null);
}
