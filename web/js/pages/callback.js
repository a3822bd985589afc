// Where Stripe sends the admin back (through the API's GET callback): the
// page completes the connection with the admin's own token and says how it
// went, in words, above the card: which account is connected now, which one
// it replaced, and what became of the billing portal.
import { api } from "../api.js";
import { h } from "../dom.js";
import { connectionOf, note, recall } from "../connecting.js";

const FIELDS = ["state", "code", "error", "error_description"];
// After a reload the first request may still be under way at the API.
const SETTLE_TRIES = 5;
const SETTLE_MS = 1000;

function outcomeOf(error) {
  switch (error.code) {
    case "access_denied":
      // The admin's own choice: news, not a failure.
      return { tone: "notice", title: "You cancelled at Stripe", text: "Nothing was connected or changed. Choose "
        + "Connect when you're ready to try again." };
    case "invalid_state":
      return { tone: "problem", title: "This link has expired or was already used", text: "A link back from Stripe "
        + "works once, for 10 minutes, for the admin who started connecting. Nothing was changed: choose Connect to "
        + "start again." };
    case "stripe_error":
      return { tone: "problem", title: "Stripe failed", text: "Stripe could not complete the connection, so nothing "
        + "was changed. Try connecting again in a moment." };
    default:
      return { tone: "problem", title: "The connection was not completed", text: error.message };
  }
}

// What a completed connection did: `shown` is what the card showed when
// Connect was pressed (undefined when this tab did not start it), `before`
// what was connected just before it completed, `card` the answer.
function connected(shown, before, card) {
  const now = connectionOf(card);
  const outcome = { tone: "success", title: "Stripe is connected", notes: [], followsImport: true };
  if (!before) {
    outcome.text = `Connected to ${now.name}.`;
  } else if (before.id === now.id) {
    outcome.text = `Connected to ${now.name} again: it is the account that was connected.`;
  } else {
    outcome.text = `Now connected to ${now.name} (replacing ${before.name}).`;
    outcome.lines = [`Members' access now follows ${now.name}'s subscriptions. What they paid for through `
      + `${before.name} lasts until its paid period ends.`];
    if (before.portal && now.portal) {
      outcome.lines.push(`The billing portal's settings carried over: members open Billing on ${now.name}.`);
    } else if (before.portal) {
      outcome.notes.push({ tone: "warning", title: "The billing portal is off", text: `Stripe refused to set `
        + `the billing portal up on ${now.name}, so members don't see Billing. Your portal settings are kept: turn `
        + "it on again under Advanced options, where Stripe's answer says why if it refuses again." });
    }
  }
  if (shown !== undefined && (shown ? shown.id : null) !== (before ? before.id : null)) {
    outcome.notes.push({ tone: "warning", title: "The connection had changed meanwhile",
      text: changedMeanwhile(shown, before, now) });
  }
  return outcome;
}

function changedMeanwhile(shown, before, now) {
  const elsewhere = "in another tab or by another admin";
  if (!shown) {
    return `When you pressed Connect no account was connected, but ${before.name} was connected since, ${elsewhere}: `
      + `${now.name} replaced ${before.name}.`;
  }
  if (!before) {
    return `When you pressed Connect, ${shown.name} was connected; it was disconnected since, ${elsewhere}.`;
  }
  return `When you pressed Connect, ${shown.name} was connected, but ${before.name} was connected since, `
    + `${elsewhere}: ${now.name} replaced ${before.name}, not ${shown.name}.`;
}

// A link back this tab has used already: how it went, calmly, not as an error.
function usedBefore(earlier) {
  if (earlier.tone === "success") {
    return { tone: "notice", title: "Stripe is already connected",
      text: `This link back from Stripe was used in this tab already. ${earlier.text}` };
  }
  return { tone: "notice", title: "This link back from Stripe was already used",
    text: `It was used in this tab already (${earlier.title}). Nothing changed now: choose Connect to start again.` };
}

async function readConnection() {
  try {
    return { card: await api("GET", "/connectors/stripe") };
  } catch {
    return { card: null };
  }
}

// After a reload: the request this tab sent before went through when the
// connection is now another than the one before it.
async function connectionSince(before) {
  for (let attempt = 0; attempt < SETTLE_TRIES; attempt += 1) {
    const { card } = await readConnection();
    const now = connectionOf(card);
    if (now && (!before || before.id !== now.id || before.since !== now.since)) return card;
    await new Promise((resolve) => { setTimeout(resolve, SETTLE_MS); });
  }
  return null;
}

async function complete(body) {
  const memory = recall(body.state);
  if (memory.outcome) return usedBefore(memory.outcome);
  let { before } = memory;
  const resent = Boolean(memory.sent);
  if (!resent) {
    before = connectionOf((await readConnection()).card);
    note(body.state, { sent: true, before });
  }
  let outcome;
  try {
    outcome = connected(memory.shown, before, await api("POST", "/connectors/stripe/oauth/callback", body));
  } catch (error) {
    // This tab sent it before the page was reloaded: the connection says how that went.
    const card = error.code === "invalid_state" && resent ? await connectionSince(before) : null;
    if (card) {
      outcome = connected(memory.shown, before, card);
    } else if (error.code === "invalid_state" && resent) {
      outcome = { tone: "notice", title: "The connection was not completed", text: "The page was reloaded while "
        + "it was being completed, and nothing was connected. Choose Connect to start again." };
    } else {
      outcome = outcomeOf(error);
    }
  }
  note(body.state, { outcome });
  return outcome;
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
  complete(body).then((outcome) => {
    // The address held Stripe's code: it leaves the history with the page.
    if (!gone) navigate("/settings/connectors", { replace: true, state: { outcome } });
  });
  return () => { gone = true; };
}
