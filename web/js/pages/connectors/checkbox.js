// A checkbox with its label and hint below, as the portal settings and the
// connect dialog lay one out.
import { h } from "../../dom.js";

export function checkbox(id, label, hint, checked = false) {
  const input = h("input", { id, type: "checkbox", checked, "aria-describedby": `${id}-hint` });
  return { input, field: h("div", { class: "field check" }, input, h("label", { for: id }, label),
    h("p", { class: "hint", id: `${id}-hint` }, hint)) };
}
