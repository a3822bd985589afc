// The news the callback page hands over, shown above the card once, and its
// word on the import the connection started, kept in step with the card.
import { h } from "../../dom.js";

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

// The banner's word on the import a connection started, as the card has it now.
export function importNoteWords(card) {
  const sync = card.status === "connected" ? card.sync : null;
  if (!sync) return "";
  if (sync.state === "importing") return "Its subscriptions are being imported: the card below shows how far.";
  if (sync.state === "failed") return "The import of its subscriptions stopped: the card below says how to try again.";
  return "Its subscriptions are imported: the card below has the counts.";
}
