// Advanced options: the Stripe Customer Portal's settings. Every mistake the
// form can find is said at once beside its field, before the API is asked;
// the API's own refusal goes beside the field it names.
import { api } from "../../api.js";
import { h, problem } from "../../dom.js";
import { checkbox } from "./checkbox.js";

const URL_FIELDS = { privacy_policy_url: "Privacy Policy URL", terms_of_service_url: "Terms of Service URL" };
const GRACE_LABEL = "Days of access while a payment is retried";
const MAX_URL_LENGTH = 2048;

// Drawn from `card`; a save hands the card the API answers with to `onSaved`.
export function portalSettings(card, { onSaved }) {
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
      const next = await api("PUT", "/connectors/stripe/settings", body);
      onSaved(next);
      grace.input.value = String(next.settings.past_due_grace_days);
      saved.textContent = savedWords(next);
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

function savedWords(card) {
  if (card.status !== "connected") return "Saved. They apply once Stripe is connected.";
  return card.settings.portal_enabled
    ? "Saved. Members now find Billing in their profile menu." : "Saved. The customer portal is off.";
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
