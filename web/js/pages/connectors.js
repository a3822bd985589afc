// Settings, Connectors: the Stripe card, its advanced options and the
// subscribers the connector could not match to a member.
import { api } from "../api.js";
import { announce, confirmDialog, fill, formatDate, formatDay, h, hidden, menuButton, menuItem, openDialog, problem,
  timeAgo } from "../dom.js";
import { productName } from "../access.js";
import { rememberConnecting } from "../connecting.js";

const POLL_MS = 1500;
// How often "3 minutes ago" is said again.
const AGO_MS = 30_000;
const REASONS = {
  disconnected_by_admin: "An admin disconnected it.",
  revoked_in_stripe: "Access was revoked in Stripe: the account's owner removed CustomerHub in their Stripe dashboard.",
};
// Needs someone's attention: the admin did not choose it.
const WARNING_REASONS = new Set(["revoked_in_stripe"]);
const STATES = { active: "Active", canceling: "Cancels at period end", past_due: "Past due" };
const URL_FIELDS = { privacy_policy_url: "Privacy Policy URL", terms_of_service_url: "Terms of Service URL" };
const GRACE_LABEL = "Days of access while a payment is retried";
const MAX_URL_LENGTH = 2048;
const KEBAB = '<svg aria-hidden="true" viewBox="0 0 24 24"><circle cx="12" cy="5" r="2"/>'
  + '<circle cx="12" cy="12" r="2"/><circle cx="12" cy="19" r="2"/></svg>';

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
  const unmatched = h("section", { class: "card", "aria-labelledby": "unmatched-heading" });
  main.append(h("h1", {}, "Connectors"),
    h("p", { class: "lead" }, "Connect the services your site works with."), messages, cardBox, options, members,
    unmatched);
  if (state && state.outcome) {
    messages.append(outcomeBanner(state.outcome), ...(state.outcome.notes || []).map(outcomeBanner));
    // Said once: a reload shows the card as it is then, without the old news.
    history.replaceState(null, "", location.pathname);
  }

  let card = null;
  let timer = null;
  let gone = false;
  let syncBox = null;
  let eventsBox = null;
  // "last received 3 minutes ago" stays true while the page is open.
  const agoTimer = setInterval(() => {
    for (const time of cardBox.querySelectorAll("time.ago")) time.textContent = timeAgo(time.dateTime);
  }, AGO_MS);

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
    if (same && syncBox) {
      syncBox.replaceChildren(...syncWords(card.sync));
      if (JSON.stringify(card.events) !== eventsBox.dataset.shown) fillEvents();
    } else {
      drawCard();
      options.replaceChildren(advancedOptions());
      // Connected or disconnected since the list was read: it is another account's, or none.
      if (before) loadUnmatched();
    }
    if (wasImporting && card.sync && card.sync.state !== "importing") {
      announce(syncWords(card.sync).map((node) => node.textContent).join(" "));
      loadUnmatched();
    }
    clearTimeout(timer);
    if (!gone && card.status === "connected" && card.sync && card.sync.state === "importing") {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  async function poll() {
    try {
      show(await api("GET", "/connectors/stripe"));
    } catch (error) {
      fail(error);
    }
  }

  function drawCard() {
    const connected = card.status === "connected";
    cardBox.classList.toggle("is-connected", connected);
    const head = h("div", { class: "card-head" },
      h("span", { class: "logo", "aria-hidden": "true" }, "S"),
      h("div", { class: "card-title" }, h("h2", { id: "stripe-heading" }, "Stripe"),
        h("p", { class: "muted" }, "Billing portal and members' access from their subscriptions")),
      h("span", { class: connected ? "badge ok" : "badge" }, connected ? "Connected" : "Not connected"),
      connected ? moreActions() : null);
    if (!connected) {
      const connect = h("button", { type: "button", class: "primary", id: "stripe-connect",
        onclick: () => connectDialog() }, "Connect");
      fill(cardBox, head,
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
    fillEvents();
    cardBox.replaceChildren(head,
      h("dl", { class: "facts" },
        h("div", {}, h("dt", {}, "Account"), h("dd", {}, h("strong", { class: "account-name" }, account.display_name),
          " ", h("code", {}, account.id), account.livemode ? "" : h("span", { class: "tag" }, "Test mode"))),
        h("div", {}, h("dt", {}, "Connected since"), h("dd", {}, formatDate(card.connected_at))),
        h("div", {}, h("dt", {}, "Customer portal"), h("dd", {}, card.settings.portal_enabled ? "On" : "Off"))),
      eventsBox, syncBox);
  }

  // Redrawn only when what it says changes: a poll must not say a warning again.
  function fillEvents() {
    eventsBox.dataset.shown = JSON.stringify(card.events);
    eventsBox.replaceChildren(...eventWords(card.events));
  }

  function moreActions() {
    const button = h("button", { type: "button", class: "icon-button", id: "stripe-actions-button",
      "aria-label": "More actions", "aria-haspopup": "menu", "aria-expanded": "false",
      "aria-controls": "stripe-actions" });
    button.innerHTML = KEBAB;
    const menu = h("ul", { class: "menu", role: "menu", id: "stripe-actions",
      "aria-labelledby": "stripe-actions-button", hidden: true },
      menuItem("Sync now", syncNow),
      menuItem("Connect a different account", () => connectDialog({ differentAccount: true })),
      menuItem("Disconnect", disconnect));
    menuButton(button, menu);
    return h("div", { class: "menu-anchor" }, button, menu);
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

  function connectDialog({ differentAccount = false } = {}) {
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
            rememberConnecting(url, card);
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

  function advancedOptions() {
    const connected = card.status === "connected";
    const settings = card.settings;
    // While disconnected the portal stays off; the rest is kept for the next connection.
    const enabled = checkbox("portal-enabled", "Enable Stripe Customer Portal",
      connected ? "Members open it from Billing in their profile menu: their card, invoices and subscriptions."
        : "Connect a Stripe account to turn it on. The settings below are kept until then.",
      settings.portal_enabled);
    enabled.input.disabled = !connected;
    // Each field the API's messages may name, and what to call it instead.
    const named = {};
    const fields = Object.entries(URL_FIELDS).map(([name, label]) => {
      const id = name.replace(/_/g, "-");
      const input = h("input", { id, name, type: "url", inputmode: "url", autocomplete: "url", spellcheck: "false",
        placeholder: "https://", value: settings[name] || "", "aria-describedby": `${id}-error` });
      const error = h("p", { class: "field-error", id: `${id}-error` });
      named[name] = { input, error, label };
      return h("div", { class: "field" }, h("label", { for: id }, label), input, error);
    });
    const allowCancel = checkbox("allow-cancel", "Allow users to cancel subscriptions?",
      "Members cancel at the end of their paid period and say why.", settings.allow_cancel);
    const grace = graceField(settings.past_due_grace_days);
    named.past_due_grace_days = grace;
    const formError = h("div", { role: "alert" });
    const saved = h("p", { class: "saved", role: "status" });
    const form = h("form", { novalidate: true },
      h("fieldset", {},
        h("legend", { class: "visually-hidden" }, "Customer portal"),
        enabled.field, ...fields, allowCancel.field, grace.field, formError,
        h("div", { class: "actions" }, h("button", { class: "primary" }, "Save"), saved)));

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      formError.replaceChildren();
      saved.textContent = "";
      for (const field of Object.values(named)) {
        field.input.removeAttribute("aria-invalid");
        field.error.textContent = "";
      }
      const value = (name) => named[name].input.value.trim() || null;
      const body = {
        portal_enabled: enabled.input.checked, privacy_policy_url: value("privacy_policy_url"),
        terms_of_service_url: value("terms_of_service_url"), allow_cancel: allowCancel.input.checked,
      };
      // Left empty, the stored number stays. A number field holds "" for what is not a number.
      const days = grace.input.value.trim();
      if (days !== "") body.past_due_grace_days = Number(days);
      // Every field's mistake at once, beside each; the API still has the last word.
      const mistakes = settingsMistakes(body, named);
      if (Object.keys(mistakes).length) {
        showFieldErrors(mistakes, named, formError);
        return;
      }
      try {
        card = await api("PUT", "/connectors/stripe/settings", body);
        drawCard();
        grace.input.value = String(card.settings.past_due_grace_days);
        saved.textContent = savedWords(card);
      } catch (error) {
        const aboutField = Object.keys(named).some((name) => error.message.includes(name));
        if (error.code === "invalid_settings" || (error.code === "invalid_request" && aboutField)) {
          showFieldErrors(apiMistakes(error.message, named), named, formError);
        } else {
          formError.replaceChildren(problem(`Not saved: ${error.message}`));
        }
      }
    });
    return h("details", { class: "card options", open: connected && settings.portal_enabled },
      h("summary", {}, "Advanced options"), form);
  }

  async function loadUnmatched(cursor = null) {
    // The API lists none while disconnected: that is nothing to match yet, not every subscription matched.
    if (card && card.status !== "connected") {
      fill(unmatched, unmatchedHeading(), h("p", { class: "empty" }, "Nothing to match until a Stripe account is "
        + "connected. Then its subscriptions whose customer names no member of this site show here, for you to "
        + "link to a member."));
      return;
    }
    let page;
    try {
      const after = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      page = await api("GET", `/connectors/stripe/unmatched?limit=50${after}`);
    } catch (error) {
      unmatched.replaceChildren(unmatchedHeading(), problem(error.message));
      return;
    }
    const rows = page.unmatched.map((row) => unmatchedRow(row, page.product_names));
    let body = unmatched.querySelector("tbody");
    if (!cursor || !body) {
      body = h("tbody");
      fill(unmatched, unmatchedHeading(),
        h("p", { class: "muted" }, "Stripe subscriptions whose customer names no member of this site. They give "
          + "no access until the member signs in with the customer's email, or you link them to a member."),
        rows.length ? h("table", { class: "stack" },
          h("thead", {}, h("tr", {}, ["Customer", "Products", "State", "Access until"].map(
            (name) => h("th", { scope: "col" }, name)), h("th", { scope: "col" }, hidden("Actions")))), body)
          : h("p", { class: "empty" }, "None: every subscription names a member."));
    }
    body.append(...rows);
    unmatched.querySelector(".more")?.remove();
    if (page.next_cursor) {
      unmatched.append(h("button", { type: "button", class: "more", onclick: () => loadUnmatched(page.next_cursor) },
        "Show more"));
    }
  }

  function unmatchedHeading() {
    return h("div", { class: "section-head" }, h("h2", { id: "unmatched-heading" }, "Unmatched subscribers"),
      h("button", { type: "button", onclick: () => loadUnmatched() }, "Refresh", hidden(" unmatched subscribers")));
  }

  function unmatchedRow(row, names) {
    const who = row.email || row.name || row.customer_id;
    // A cell's content in one box: on a narrow screen the cell is its label and that box.
    const cell = (label, ...content) => h("td", { "data-label": label }, h("div", {}, ...content));
    return h("tr", {},
      cell("Customer", row.name ? h("strong", { class: "block" }, row.name) : null,
        row.email ? h("span", { class: "block" }, row.email) : null, h("code", {}, row.customer_id)),
      cell("Products", row.products.map((p) => productName(names, p.product_id)).join(", ")),
      cell("State", STATES[row.state] || row.state),
      cell("Access until", formatDay(row.access_until)),
      cell("", h("button", { type: "button", onclick: () => linkDialog(row, who) },
        "Link", hidden(` ${who} (${row.subscription_id})`))));
  }

  async function linkDialog(row, who) {
    const linked = await openDialog({
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
        async function find() {
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
            ({ members: customers } = await api("GET", `/members?email=${encodeURIComponent(address)}`));
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
    if (linked) {
      const { user, products } = linked;
      say(h("p", { class: "notice", role: "status" },
        `Linked ${who} to ${user}: `, products.length ? `they have access to ${andList(products)}. `
          : "the subscription gives them access. ",
        h("a", { href: `/settings/members?user=${encodeURIComponent(user)}` }, `See ${user}'s access`), "."));
      loadUnmatched();
    }
  }

  (async () => {
    try {
      show(await api("GET", "/connectors/stripe"));
    } catch (error) {
      cardBox.removeAttribute("aria-busy");
      fail(error);
    }
    loadUnmatched();
  })();
  return () => {
    gone = true;
    clearTimeout(timer);
    clearInterval(agoTimer);
  };
}

// "Yoga", "Yoga and Pilates", "Yoga, Pilates and Rowing".
function andList(words) {
  return words.length > 1 ? `${words.slice(0, -1).join(", ")} and ${words.at(-1)}` : words[0];
}

function checkbox(id, label, hint, checked = false) {
  const input = h("input", { id, type: "checkbox", checked, "aria-describedby": `${id}-hint` });
  return { input, field: h("div", { class: "field check" }, input, h("label", { for: id }, label),
    h("p", { class: "hint", id: `${id}-hint` }, hint)) };
}

function savedWords(card) {
  if (card.status !== "connected") return "Saved. They apply once Stripe is connected.";
  return card.settings.portal_enabled
    ? "Saved. Members now find Billing in their profile menu." : "Saved. The customer portal is off.";
}

function graceField(days) {
  const id = "past-due-grace-days";
  const input = h("input", { id, name: "past_due_grace_days", type: "number", inputmode: "numeric", min: "0",
    max: "60", step: "1", value: String(days), "aria-describedby": `${id}-hint ${id}-error` });
  const error = h("p", { class: "field-error", id: `${id}-error` });
  const field = h("div", { class: "field" }, h("label", { for: id }, GRACE_LABEL), input,
    h("p", { class: "hint", id: `${id}-hint` }, "When a renewal payment fails, Stripe tries it again for a while. "
      + "Members keep their access this many days meanwhile, from 0 to 60."), error);
  return { input, error, label: GRACE_LABEL, field };
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

function syncWords(sync) {
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

// What the API would refuse in the settings, found before asking it: by
// field, in the API's own words with the fields' labels.
function settingsMistakes(body, fields) {
  const mistakes = {};
  for (const name of Object.keys(URL_FIELDS)) {
    const { label } = fields[name];
    if (body[name]) {
      const wrong = urlMistake(body[name]);
      if (wrong) mistakes[name] = `${label} ${wrong}`;
    } else if (body.portal_enabled) {
      mistakes[name] = `Enabling the portal needs the ${label}`;
    }
  }
  const days = body.past_due_grace_days;
  if (fields.past_due_grace_days.input.validity.badInput) {
    mistakes.past_due_grace_days = `${GRACE_LABEL} must be a whole number of days`;
  } else if (days !== undefined && !(Number.isInteger(days) && days >= 0 && days <= 60)) {
    mistakes.past_due_grace_days = Number.isInteger(days) ? `${GRACE_LABEL} must be from 0 to 60`
      : `${GRACE_LABEL} must be a whole number of days`;
  }
  return mistakes;
}

// Members open these from Stripe's portal: absolute https on a named host.
function urlMistake(url) {
  if (url.length > MAX_URL_LENGTH) return `is longer than ${MAX_URL_LENGTH} characters`;
  let parsed = null;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL at all.
  }
  // "https:host" parses here as https://host; Stripe and the API refuse it.
  if (!parsed || !/^https:\/\/[^/?#]/i.test(url) || /[\s\u0000-\u001f\u007f]/.test(url) || !parsed.hostname) {
    return "must be an absolute https URL";
  }
  if (parsed.username || parsed.password) return "must not carry a user name or password";
  return null;
}

// The API's invalid_settings names the field it is about: its words go beside
// that field (both, when it names both and neither is filled in).
function apiMistakes(message, fields) {
  const named = Object.keys(fields).filter((name) => message.includes(name));
  let marked = named.length > 1 ? named.filter((name) => !fields[name].input.value.trim()) : named;
  if (!marked.length) marked = named;
  const words = Object.entries(fields).reduce((text, [name, field]) => text.split(name).join(field.label), message);
  return marked.length ? Object.fromEntries(marked.map((name) => [name, words])) : { form: words };
}

// Each mistake beside its field, the form saying how many, focus on the first.
function showFieldErrors(mistakes, fields, formError) {
  const order = Object.keys(fields).filter((name) => mistakes[name]);
  for (const name of order) {
    fields[name].input.setAttribute("aria-invalid", "true");
    fields[name].error.textContent = mistakes[name];
  }
  const all = Object.values(mistakes);
  formError.replaceChildren(all.length === 1 ? problem(`Not saved: ${all[0]}`)
    : problem(`Not saved: ${all.length} fields need fixing. `, h("span", {}, order.map(
      (name) => fields[name].label).join(", "), ".")));
  if (order.length) fields[order[0]].input.focus();
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

function disconnectedWords(reason) {
  const words = [h("strong", {}, "Disconnected. "), REASONS[reason] || reason];
  return WARNING_REASONS.has(reason) ? h("div", { class: "warning" }, h("p", {}, ...words))
    : h("p", { class: "reason" }, ...words);
}

// The banner's word on the import a connection started, as the card has it now.
function importNoteWords(card) {
  const sync = card.status === "connected" ? card.sync : null;
  if (!sync) return "";
  if (sync.state === "importing") return "Its subscriptions are being imported: the card below shows how far.";
  if (sync.state === "failed") return "The import of its subscriptions stopped: the card below says how to try again.";
  return "Its subscriptions are imported: the card below has the counts.";
}

// An outcome the callback page hands over: a success or a notice is news
// (status), a warning or a problem needs the admin (alert); red only for a failure.
export function outcomeBanner(outcome) {
  const tone = outcome.tone || (outcome.ok ? "success" : "problem");
  const urgent = tone === "problem" || tone === "warning";
  return h("div", { class: `${tone} outcome`, role: urgent ? "alert" : "status" },
    h("p", {}, h("strong", {}, outcome.title)), outcome.text ? h("p", {}, outcome.text) : null,
    (outcome.lines || []).map((line) => h("p", {}, line)),
    outcome.followsImport ? h("p", { class: "import-note" }, "Its subscriptions are being imported: the card below "
      + "shows how far.") : null);
}
