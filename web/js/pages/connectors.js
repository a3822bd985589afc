// Settings, Connectors: the Stripe card, its advanced options and the
// subscribers the connector could not match to a member. The page keeps the
// card as the API last gave it, polls while an import runs, and tells each
// part (in connectors/) when the card changes.
import { api } from "../api.js";
import { announce, confirmDialog, h, problem } from "../dom.js";
import { connectorCard, syncWords } from "./connectors/card.js";
import { connectDialog } from "./connectors/connect-dialog.js";
import { importNoteWords, outcomeBanner } from "./connectors/outcome.js";
import { portalSettings } from "./connectors/portal-settings.js";
import { unmatchedPanel } from "./connectors/unmatched.js";

const POLL_MS = 1500;
// A read that fails while an import runs is tried again, each time later,
// before the page gives up and says so: one dropped request should not leave
// the card saying "Importing" until a reload.
const POLL_TRIES = 5;
const LONGEST_POLL_MS = 20_000;

export function connectorsPage(main, { state }) {
  const messages = h("div", { class: "messages" });
  const cardBox = h("section", { class: "card connector", "aria-labelledby": "stripe-heading", "aria-busy": "true" },
    h("h2", { id: "stripe-heading" }, "Stripe"), h("p", { class: "muted" }, "Loading…"));
  const options = h("div");
  const members = h("section", { class: "card", "aria-labelledby": "members-heading" },
    h("h2", { id: "members-heading" }, "Members' access"),
    h("p", {}, "What a member's subscriptions give them, why each is theirs, and every change to their access: "
      + "find them by their user id or a customer's email."),
    h("a", { class: "button", href: "/settings/members" }, "Find a member"));
  const unmatchedBox = h("section", { class: "card", "aria-labelledby": "unmatched-heading" });
  main.append(h("h1", {}, "Connectors"),
    h("p", { class: "lead" }, "Connect the services your site works with."), messages, cardBox, options, members,
    unmatchedBox);
  if (state && state.outcome) {
    messages.append(outcomeBanner(state.outcome), ...(state.outcome.notes || []).map(outcomeBanner));
    // Said once: a reload shows the card as it is then, without the old news.
    history.replaceState(null, "", location.pathname);
  }

  let card = null;
  let timer = null;
  let gone = false;
  let failedPolls = 0;
  const currentCard = () => card;
  const view = connectorCard(cardBox, {
    connect: () => connectDialog(currentCard),
    syncNow,
    switchAccount: () => connectDialog(currentCard, { differentAccount: true }),
    disconnect,
  });
  const unmatched = unmatchedPanel(unmatchedBox, { currentCard, say });

  function say(element) {
    messages.replaceChildren(element);
  }

  function fail(error) {
    say(problem(error.message));
  }

  // A new card redraws the card; the same connection only its counts, so that
  // a poll never closes an open menu or a form being filled in.
  function show(next) {
    const same = card && next.status === card.status && (next.account || {}).id === (card.account || {}).id;
    const wasImporting = card && card.sync && card.sync.state === "importing";
    const before = card;
    card = next;
    cardBox.removeAttribute("aria-busy");
    const importNote = messages.querySelector(".import-note");
    if (importNote) importNote.textContent = importNoteWords(card);
    const updated = same && view.update(card);
    if (!updated) {
      view.draw(card);
      options.replaceChildren(portalSettings(card, { onSaved }));
      // Connected or disconnected since the list was read: it is another account's, or none.
      if (before) unmatched.load();
    }
    if (wasImporting && card.sync && card.sync.state !== "importing") {
      announce(syncWords(card.sync).map((node) => node.textContent).join(" "));
      unmatched.load();
    }
    clearTimeout(timer);
    if (!gone && card.status === "connected" && card.sync && card.sync.state === "importing") {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  // A save redraws the card, not the form: the form keeps what the admin typed and says it saved.
  function onSaved(next) {
    card = next;
    view.draw(card);
  }

  async function poll() {
    let next;
    try {
      next = await api("GET", "/connectors/stripe");
    } catch (error) {
      failedPolls += 1;
      if (gone) return;
      // A refusal (a sign-in no longer accepted, say) will not pass by itself: said at once.
      const passing = error.status === 0 || error.status >= 500;
      if (passing && failedPolls < POLL_TRIES) {
        timer = setTimeout(poll, Math.min(POLL_MS * 2 ** failedPolls, LONGEST_POLL_MS));
      } else {
        fail(error);
      }
      return;
    }
    failedPolls = 0;
    show(next);
  }

  async function syncNow() {
    try {
      show(await api("POST", "/connectors/stripe/sync"));
      announce("Importing subscriptions from Stripe.");
    } catch (error) {
      fail(error);
    }
  }

  async function disconnect() {
    const confirmed = await confirmDialog({
      title: "Disconnect Stripe?",
      text: `CustomerHub stops hearing from ${card.account.display_name} and turns the billing portal off. `
        + "Members keep the access they have paid for until it ends.",
      confirm: "Disconnect", danger: true,
    });
    if (!confirmed) return;
    try {
      show(await api("DELETE", "/connectors/stripe"));
      say(h("p", { class: "notice", role: "status" }, "Stripe is disconnected."));
      document.getElementById("stripe-connect")?.focus();
    } catch (error) {
      fail(error);
    }
  }

  (async () => {
    try {
      show(await api("GET", "/connectors/stripe"));
    } catch (error) {
      cardBox.removeAttribute("aria-busy");
      fail(error);
    }
    unmatched.load();
  })();
  return () => {
    gone = true;
    clearTimeout(timer);
    view.stop();
  };
}
