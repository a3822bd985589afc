// The shell: the left menu, the profile menu and the page for the address.
import { api, getConfig, loadConfig } from "./api.js";
import { h, menuButton, menuItem, problem } from "./dom.js";
import { currentUser, signOut } from "./session.js";
import { accountPage } from "./pages/account.js";
import { callbackPage } from "./pages/callback.js";
import { connectorsPage } from "./pages/connectors.js";
import { membersPage } from "./pages/members.js";
import { signInPage } from "./pages/sign-in.js";

const PAGES = {
  "/": { title: "Sign in", show: signInPage, open: true },
  "/settings": { redirect: "/settings/connectors" },
  "/settings/connectors": { title: "Connectors", show: connectorsPage, admin: true },
  "/settings/members": { title: "Members", show: membersPage, admin: true },
  "/settings/connectors/stripe/callback": { title: "Connecting Stripe", show: callbackPage, admin: true },
  "/account": { title: "Your account", show: accountPage },
};

const main = document.getElementById("main");
let leavePage = null;
let profileMenu = null;

export function navigate(path, { replace = false, state = null } = {}) {
  history[replace ? "replaceState" : "pushState"](state, "", path);
  showPage(true);
}

function showPage(moveFocus) {
  if (leavePage) leavePage();
  leavePage = null;
  const user = currentUser();
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const page = PAGES[path];
  if (page && page.redirect) {
    navigate(page.redirect, { replace: true });
    return;
  }
  updateShell(user, path);
  main.replaceChildren();
  let title = "Page not found";
  if (!page) {
    main.append(h("h1", {}, title), h("p", {}, "There is no page at this address. ",
      h("a", { href: "/" }, "Go to the start page"), "."));
  } else if (!page.open && !user) {
    title = "Sign in";
    main.append(h("h1", {}, "Sign in first"), h("p", {}, "Your sign-in has ended, or you have not signed in yet. ",
      h("a", { href: `/?next=${encodeURIComponent(location.pathname + location.search)}` }, "Sign in"),
      " to continue."));
  } else if (page.admin && !user.isAdmin) {
    title = page.title;
    main.append(h("h1", {}, page.title), problem("Only the site's owners and admins see this page. ",
      h("a", { href: "/" }, "Sign in as an admin"), " to use it."));
  } else {
    title = page.title;
    leavePage = page.show(main, { user, config: getConfig(), navigate, state: history.state }) || null;
  }
  document.title = `${title} · CustomerHub`;
  if (moveFocus) {
    const heading = (location.hash && document.getElementById(location.hash.slice(1))) || main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }
}

function updateShell(user, path) {
  document.getElementById("site-name").textContent = user ? user.site : "";
  document.getElementById("rail").hidden = !user;
  document.getElementById("rail-settings").hidden = !(user && user.isAdmin);
  document.getElementById("profile").hidden = !user;
  document.getElementById("avatar-initial").textContent = user ? (user.email || user.id).charAt(0).toUpperCase() : "";
  for (const link of document.querySelectorAll(".rail a")) {
    if (link.getAttribute("href") === path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // Open on the settings pages, closed elsewhere until the gear opens it.
  setSettingsOpen(path.startsWith("/settings"));
  if (profileMenu) profileMenu.close(false);
  // Asked on every page, so that Billing follows the admin's settings.
  if (user) fillProfileMenu();
}

function setSettingsOpen(open) {
  document.getElementById("settings-button").setAttribute("aria-expanded", String(open));
  document.getElementById("settings-links").hidden = !open;
}

// The profile menu: My access and Sign out at once, and Billing when the API
// says the member's portal can open (the site's portal is on and Stripe knows
// them as a customer). The menu is busy until it has said.
let menuAsked = 0;
async function fillProfileMenu() {
  const menu = document.getElementById("profile-menu");
  const asked = ++menuAsked;
  menu.setAttribute("aria-busy", "true");
  menu.replaceChildren(menuItem("My access", null, "/account#my-access"),
    menuItem("Sign out", () => { signOut(); navigate("/"); }));
  let available = false;
  try {
    ({ available } = await api("GET", "/billing/portal"));
  } catch {
    // Without an answer the menu goes without Billing; the account page says why.
  }
  // A later page asked again: its answer is the one that counts.
  if (asked !== menuAsked) return;
  if (available) menu.prepend(menuItem("Billing", openBilling));
  menu.removeAttribute("aria-busy");
}

async function openBilling() {
  try {
    const { url } = await api("POST", "/billing/portal/sessions", { return_url: `${getConfig().appBaseUrl}/account` });
    location.assign(url);
  } catch (error) {
    const words = {
      no_billing_account: "You have no billing account with this site yet: it appears once you subscribe.",
      portal_disabled: "Billing is not available on this site right now.",
      stripe_error: "Stripe could not open billing just now. Try again in a moment.",
    }[error.code] || error.message;
    main.querySelector(":scope > .problem")?.remove();
    main.prepend(problem(words));
  }
}

function wireShell() {
  const button = document.getElementById("profile-button");
  const menu = document.getElementById("profile-menu");
  profileMenu = menuButton(button, menu);
  // The gear shows the settings pages. On one of them it keeps them shown:
  // folding away the link to the page one is on hides the way to every other.
  document.getElementById("settings-button").addEventListener("click", (event) => {
    const onSettings = location.pathname.startsWith("/settings");
    setSettingsOpen(onSettings || event.currentTarget.getAttribute("aria-expanded") !== "true");
  });
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey
        || link.target || link.origin !== location.origin) return;
    const url = new URL(link.href);
    const path = url.pathname.replace(/\/+$/, "") || "/";
    if (!(path in PAGES)) return;
    event.preventDefault();
    if (url.pathname + url.search + url.hash !== location.pathname + location.search + location.hash) {
      navigate(url.pathname + url.search + url.hash);
    } else {
      (document.getElementById(url.hash.slice(1)) || main.querySelector("h1"))?.focus();
    }
  });
  window.addEventListener("popstate", () => showPage(true));
}

async function start() {
  try {
    await loadConfig();
  } catch {
    main.append(problem("The page could not read its configuration. Is the local stack (make run) running?"));
    return;
  }
  wireShell();
  showPage(false);
}

start();
