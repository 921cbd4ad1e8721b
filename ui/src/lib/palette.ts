// The Ctrl+K palette's answers for what was typed: the views the role may use, and — where the
// role may see them — the e-mails to an address, a message by id, a job by id. Webhook endpoints
// join when the Webhooks view lands.
import type { Role } from "./api.gen";
import { canSee, viewsFor, type View } from "./state.svelte";

export type PaletteItem =
  | { kind: "view"; view: View; label: string; hint: string }
  | { kind: "emails-to"; to: string; label: string; hint: string }
  | { kind: "email"; id: string; label: string; hint: string }
  | { kind: "job"; id: string; label: string; hint: string };

const ID = /^[a-z0-9]{1,60}$/i;

export function paletteItems(query: string, role: Role | null): PaletteItem[] {
  const q = query.trim();
  const lower = q.toLowerCase();
  const items: PaletteItem[] = [];
  if (q.startsWith("msg_") && ID.test(q.slice(4)) && canSee(role, "emails")) {
    items.push({ kind: "email", id: q, label: `Open e-mail ${q}`, hint: "E-mails" });
  }
  if (q.startsWith("job_") && ID.test(q.slice(4)) && (role === "admin" || role === "operator")) {
    items.push({ kind: "job", id: q, label: `Look up job ${q}`, hint: "Jobs" });
  }
  for (const v of viewsFor(role)) {
    if (lower === "" || v.label.toLowerCase().includes(lower) || v.id.includes(lower)) {
      items.push({ kind: "view", view: v.id, label: v.label, hint: `Ctrl+${v.key}` });
    }
  }
  const idLike = q.startsWith("msg_") || q.startsWith("job_");
  if (canSee(role, "emails") && q.length >= 3 && q.length <= 254 && !idLike && !/\s/.test(q)) {
    items.push({
      kind: "emails-to",
      to: q,
      label: q.includes("@") ? `E-mails to ${q}` : `E-mails to addresses containing “${q}”`,
      hint: "E-mails",
    });
  }
  return items;
}
