// The Emails view's pure parts: the search's time ranges, how a status looks, and the policy a
// message's HTML is shown under (a sandboxed frame: no scripts, no remote loads, no forms).
import type { EmailChangedEvent, EmailOut, EmailStatus } from "./api.gen";

export const STATUSES: EmailStatus[] = ["queued", "sent", "delivered", "bounced", "complained", "failed", "suppressed"];

export const RANGES: { hours: number | null; label: string }[] = [
  { hours: 1, label: "last hour" },
  { hours: 24, label: "last 24 h" },
  { hours: 24 * 7, label: "last 7 days" },
  { hours: 24 * 30, label: "last 30 days" },
  { hours: null, label: "any time" },
];

/** How a status reads at a glance: good, waiting, or needs a look. */
export function tone(status: EmailStatus): "pass" | "warn" | "fail" | "muted" {
  switch (status) {
    case "sent":
    case "delivered":
      return "pass";
    case "queued":
      return "warn";
    case "bounced":
    case "complained":
    case "failed":
      return "fail";
    case "suppressed":
      return "muted";
  }
}

/** The content policy every shown message carries, whatever its HTML says: nothing runs,
 * nothing is fetched (images only from `data:`), no form goes anywhere. */
export const MAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'";

/** A message's HTML as the `srcdoc` of a sandboxed frame, the policy first. */
export function sandboxed(html: string): string {
  const meta = `<meta http-equiv="Content-Security-Policy" content="${MAIL_CSP}">`;
  // The policy must come before anything the message holds: put it first in the document.
  return `<!doctype html><html><head>${meta}</head><body>${html}</body></html>`;
}

/** Applies a stream event to the rows shown: the row's status and attempts change in place;
 * `true` when the message is not among them (the first page should be read again). */
export function applyChange(rows: EmailOut[], ev: EmailChangedEvent): boolean {
  const row = rows.find((r) => r.id === ev.id);
  if (!row) return true;
  row.status = ev.status;
  row.attempts = ev.attempts;
  row.status_at = ev.time;
  return false;
}

/** Merges a fresh first page with the rows already loaded below it (newest first, no repeats). */
export function mergeFirstPage(fresh: EmailOut[], shown: EmailOut[]): EmailOut[] {
  const ids = new Set(fresh.map((r) => r.id));
  return [...fresh, ...shown.filter((r) => !ids.has(r.id))];
}

export const when = (t: string | null): string => (t ? new Date(t).toLocaleString() : "—");

/** A time in a list: the time of day for today, else the date and time. */
export function short(t: string, now = new Date()): string {
  const d = new Date(t);
  const today = d.toDateString() === now.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
