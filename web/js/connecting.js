// What this tab knew when it sent the admin to Stripe, kept by the OAuth
// state the authorize URL carries: the account the card showed then, the
// card just before the page Stripe sends them back to completed it, and how
// that went. With it the page says what a connection replaced (and whether
// that is what the admin saw), and a reload or a second visit of a used link
// says how it went instead of reporting the used link as an error.
const PREFIX = "customerhub.connecting.";
// Stripe's link back is good for 10 minutes; a day covers a reload long after.
const KEEP_MS = 24 * 60 * 60 * 1000;

// The little of a card the pages compare: null when nothing is connected.
export function connectionOf(card) {
  if (!card || card.status !== "connected" || !card.account) return null;
  return { id: card.account.id, name: card.account.display_name, since: card.connected_at,
    portal: Boolean(card.settings && card.settings.portal_enabled) };
}

export function stateOf(authorizeUrl) {
  try {
    return new URL(authorizeUrl).searchParams.get("state");
  } catch {
    return null;
  }
}

// Before going to Stripe: the connection the admin sees as they press Connect.
export function rememberConnecting(authorizeUrl, card) {
  const state = stateOf(authorizeUrl);
  if (!state) return;
  forgetOld();
  write(state, { at: Date.now(), shown: connectionOf(card) });
}

// What this tab holds for `state`: {} when it never sent the admin to Stripe with it.
export function recall(state) {
  if (!state) return {};
  try {
    return JSON.parse(sessionStorage.getItem(PREFIX + state)) || {};
  } catch {
    return {};
  }
}

export function note(state, fields) {
  if (!state) return;
  write(state, { at: Date.now(), ...recall(state), ...fields });
}

function write(state, value) {
  try {
    sessionStorage.setItem(PREFIX + state, JSON.stringify(value));
  } catch {
    // A full or disabled storage only costs the page its finer words.
  }
}

function forgetOld() {
  for (let index = sessionStorage.length - 1; index >= 0; index -= 1) {
    const key = sessionStorage.key(index);
    if (!key || !key.startsWith(PREFIX)) continue;
    const at = recall(key.slice(PREFIX.length)).at || 0;
    if (Date.now() - at > KEEP_MS) sessionStorage.removeItem(key);
  }
}
