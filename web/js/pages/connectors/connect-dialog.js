// Connect, and Connect a different account: what the admin tells Stripe
// before going there and, when an account is connected, what switching does.
import { api } from "../../api.js";
import { h, openDialog, problem } from "../../dom.js";
import { rememberConnecting } from "../../connecting.js";
import { checkbox } from "./checkbox.js";

// `currentCard()` gives the card as the page has it: read as the dialog
// opens and again as the admin leaves for Stripe, a poll meanwhile included.
export function connectDialog(currentCard, { differentAccount = false } = {}) {
  const card = currentCard();
  const current = card && card.status === "connected" ? card : null;
  const replacing = differentAccount && current;
  return openDialog({
    title: replacing ? "Connect Stripe to a different account" : "Connect Stripe",
    describe: replacing
      ? `The account you choose at Stripe replaces ${current.account.display_name} on this site.`
      : "You'll go to Stripe to sign in and allow CustomerHub to run your billing portal and read your "
        + "subscriptions. Stripe brings you back here.",
    build: () => {
      const email = h("input", { id: "connect-email", name: "email", type: "email", autocomplete: "email",
        "aria-describedby": "connect-email-hint" });
      const register = checkbox("connect-register", "I don't have a Stripe account",
        "Stripe opens on its sign-up page.");
      const prompt = checkbox("connect-prompt", "Choose a different account",
        "Stripe asks which account to connect, even when you're signed in to one.", differentAccount);
      const error = h("div");
      const submit = h("button", { class: "primary" }, "Connect");
      const form = h("form", { novalidate: true },
        replacing ? switchWords(current) : null,
        h("div", { class: "field" }, h("label", { for: "connect-email" }, "Email (optional)"), email,
          h("p", { class: "hint", id: "connect-email-hint" }, "Stripe fills it in for you.")),
        register.field, prompt.field, error,
        h("div", { class: "actions" },
          h("button", { type: "button", onclick: () => form.closest("dialog").close() }, "Cancel"), submit));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        error.replaceChildren();
        email.removeAttribute("aria-invalid");
        const body = {};
        if (email.value.trim()) body.email = email.value.trim();
        if (register.input.checked) body.landing = "register";
        if (prompt.input.checked) body.always_prompt = true;
        submit.disabled = true;
        try {
          const { authorize_url: url } = await api("POST", "/connectors/stripe/connect", body);
          // For the page Stripe sends the admin back to: what they saw connected here.
          rememberConnecting(url, currentCard());
          location.assign(url);
        } catch (failure) {
          submit.disabled = false;
          error.replaceChildren(problem(failure.message));
          if (/email/.test(failure.message)) {
            email.setAttribute("aria-invalid", "true");
            email.focus();
          }
        }
      });
      return form;
    },
  });
}

// What switching accounts does, said before the admin goes to Stripe.
function switchWords(current) {
  const name = current.account.display_name;
  return h("ul", { class: "switch" },
    h("li", {}, "Members' access follows the new account's subscriptions once they are imported. What they paid "
      + `for through ${name} lasts to the end of that period: renewals there no longer count.`),
    h("li", {}, current.settings.portal_enabled ? "The billing portal's settings carry over to the new account."
      : "The billing portal stays off; its settings are kept."));
}
