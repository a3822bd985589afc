// Where Stripe sends the admin back (through the API's GET callback): the
// page completes the connection with the admin's own token and says how it
// went, in words, above the card.
import { api } from "../api.js";
import { h } from "../dom.js";

const FIELDS = ["state", "code", "error", "error_description"];

function outcomeOf(error) {
  switch (error.code) {
    case "access_denied":
      return { title: "You cancelled at Stripe", text: "Nothing was connected or changed. Choose Connect when you're "
        + "ready to try again." };
    case "invalid_state":
      return { title: "This link has expired or was already used", text: "A link back from Stripe works once, for "
        + "10 minutes, for the admin who started connecting. Nothing was changed: choose Connect to start again." };
    case "stripe_error":
      return { title: "Stripe failed", text: "Stripe could not complete the connection, so nothing was changed. "
        + "Try connecting again in a moment." };
    default:
      return { title: "The connection was not completed", text: error.message };
  }
}

export function callbackPage(main, { navigate }) {
  const query = new URLSearchParams(location.search);
  const body = {};
  for (const name of FIELDS) {
    if (query.has(name)) body[name] = query.get(name);
  }
  main.append(h("h1", {}, "Connecting Stripe"));
  if (!body.state && !body.code && !body.error) {
    main.append(h("p", {}, "There is nothing to complete here: Stripe sends you to this page after you approve or "
      + "decline a connection. ", h("a", { href: "/settings/connectors" }, "Go to Connectors"), "."));
    return null;
  }
  main.append(h("p", { role: "status" }, "Completing the connection with Stripe…"));
  let gone = false;
  api("POST", "/connectors/stripe/oauth/callback", body).then(
    (card) => ({ ok: true, title: "Stripe is connected", text: `Connected to ${card.account.display_name}. Its `
      + "subscriptions are being imported: the card shows how far." }),
    outcomeOf,
  ).then((outcome) => {
    // The address held Stripe's code: it leaves the history with the page.
    if (!gone) navigate("/settings/connectors", { replace: true, state: { outcome } });
  });
  return () => { gone = true; };
}
