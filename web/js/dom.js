// Small helpers for building the pages: elements, dialogs, menus, messages.

// h("p", {class: "muted"}, "text", child): an element with its attributes
// (on* are listeners; true, false and null are present or absent) and children.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      element.setAttribute(name, value);
    }
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) element.append(child);
  }
  return element;
}

// parent.replaceChildren(...) leaving out what is null, false or undefined.
export function fill(parent, ...children) {
  const present = children.flat().filter((child) => child !== null && child !== undefined && child !== false);
  parent.replaceChildren(...present);
  return parent;
}

// Hidden from the eye, read by a screen reader: which row a button acts on.
export function hidden(text) {
  return h("span", { class: "visually-hidden" }, text);
}

export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 50);
}

export function problem(text, ...more) {
  return h("div", { class: "problem", role: "alert" }, h("p", {}, text, ...more));
}

export function formatDate(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatDay(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleDateString(undefined, { dateStyle: "medium" });
}

// "3 minutes ago", "yesterday": how long ago, by this browser's clock (a
// time it reads as ahead of its own is "now").
export function timeAgo(iso) {
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 45) return "just now";
  const words = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size, below] of [["minute", 60, 60], ["hour", 3600, 24], ["day", 86400, 7]]) {
    const count = Math.round(seconds / size);
    if (count < below) return words.format(-Math.max(count, 1), unit);
  }
  return `on ${formatDay(iso)}`;
}

// A modal <dialog>: its title names it, Escape or Cancel closes it, and focus
// goes back where it was. `build(close)` gives the form's content; the dialog
// resolves with what close() was given.
export function openDialog({ title, describe, build, className = "" }) {
  return new Promise((resolve) => {
    const id = `dialog-${Math.random().toString(36).slice(2)}`;
    const opener = document.activeElement;
    const dialog = h("dialog", { class: `dialog ${className}`, "aria-labelledby": `${id}-title`,
      "aria-describedby": describe ? `${id}-text` : null });
    let result = null;
    const close = (value) => { result = value; dialog.close(); };
    fill(dialog, h("h2", { id: `${id}-title` }, title),
      describe ? h("p", { id: `${id}-text` }, describe) : null, build(close, dialog));
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Asks before something that cannot be undone; true when confirmed.
export function confirmDialog({ title, text, confirm, danger = false }) {
  return openDialog({
    title, describe: text,
    build: (close) => h("form", { method: "dialog", class: "actions" },
      h("button", { type: "button", onclick: () => close(false) }, "Cancel"),
      h("button", { type: "button", class: danger ? "danger" : "primary", onclick: () => close(true) }, confirm)),
  }).then(Boolean);
}

// A menu button (role=menu, menuitem): Enter, Space or the arrows open it,
// the arrows, Home and End move, Escape and Tab close it.
export function menuButton(button, menu) {
  const items = () => [...menu.querySelectorAll('[role="menuitem"]')];
  const isOpen = () => !menu.hidden;
  const open = (focusLast = false) => {
    menu.hidden = false;
    keepInView(menu);
    button.setAttribute("aria-expanded", "true");
    const list = items();
    if (list.length) (focusLast ? list[list.length - 1] : list[0]).focus();
    document.addEventListener("pointerdown", outside, true);
  };
  const close = (refocus = true) => {
    if (!isOpen()) return;
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", outside, true);
    if (refocus) button.focus();
  };
  function outside(event) {
    if (!menu.contains(event.target) && !button.contains(event.target)) close(false);
  }
  button.addEventListener("click", () => (isOpen() ? close() : open()));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") { event.preventDefault(); open(); }
    if (event.key === "ArrowUp") { event.preventDefault(); open(true); }
  });
  menu.addEventListener("keydown", (event) => {
    const list = items();
    const at = list.indexOf(document.activeElement);
    const move = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: list.length - 1 }[event.key];
    if (move !== undefined) {
      event.preventDefault();
      list[(move + list.length) % list.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    } else if (event.key === "Tab") {
      close(false);
    }
  });
  // A chosen item closes the menu before it acts, and focus is back on the
  // button, for a dialog the item opens to return to.
  menu.addEventListener("click", (event) => {
    if (event.target.closest('[role="menuitem"]')) close();
  }, true);
  return { close };
}

// An item of a role=menu list: a button, or a link when it goes somewhere.
export function menuItem(label, action, href) {
  const attributes = { role: "menuitem", tabindex: "-1" };
  const item = href
    ? h("a", { ...attributes, href }, label)
    : h("button", { ...attributes, type: "button", onclick: action }, label);
  return h("li", { role: "none" }, item);
}

// A menu opened near the edge of a narrow screen moves back inside it.
const EDGE = 8;
function keepInView(menu) {
  menu.style.transform = "";
  const box = menu.getBoundingClientRect();
  const width = document.documentElement.clientWidth;
  let shift = 0;
  if (box.right > width - EDGE) shift = width - EDGE - box.right;
  if (box.left + shift < EDGE) shift = EDGE - box.left;
  if (shift) menu.style.transform = `translateX(${shift}px)`;
}
