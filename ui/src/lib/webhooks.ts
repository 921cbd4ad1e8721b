// The Webhooks view's pure parts: how a message's status and an endpoint's health look, what a
// stream event changes, and the recovery ranges offered.
import type { WebhookEndpointOut, WebhookMessageStatus } from "./api.gen";

export const MESSAGE_STATUSES: WebhookMessageStatus[] = ["pending", "held", "delivered", "failed"];

export const RECOVER_RANGES: { hours: number; label: string }[] = [
  { hours: 1, label: "the last hour" },
  { hours: 6, label: "the last 6 hours" },
  { hours: 24, label: "the last 24 hours" },
  { hours: 24 * 3, label: "the last 3 days" },
  { hours: 24 * 7, label: "the last 7 days" },
  { hours: 24 * 30, label: "the last 30 days" },
];

export function messageTone(status: WebhookMessageStatus): "pass" | "warn" | "fail" | "muted" {
  switch (status) {
    case "delivered":
      return "pass";
    case "pending":
      return "warn";
    case "held":
      return "muted";
    case "failed":
      return "fail";
  }
}

/** An endpoint at a glance: disabled, circuit open, failing now, or by its health score (healthy
 * from 90, degraded from 50, else unreliable), or not tried yet. */
export function endpointState(e: WebhookEndpointOut): { label: string; tone: "pass" | "warn" | "fail" | "muted" } {
  if (!e.enabled) return { label: "disabled", tone: "fail" };
  if (e.circuit === "open") return { label: "circuit open", tone: "fail" };
  if (e.consecutive_failures > 0) return { label: "failing", tone: "warn" };
  if (e.health === null) return { label: "no deliveries yet", tone: "muted" };
  if (e.health >= 90) return { label: "healthy", tone: "pass" };
  return e.health >= 50 ? { label: "degraded", tone: "warn" } : { label: "unreliable", tone: "fail" };
}

/** The health score as shown: "97 / 100", or a dash before any attempt. */
export const score = (e: WebhookEndpointOut): string => (e.health === null ? "—" : `${e.health} / 100`);

/** Whether a `webhook.changed` kind changes an endpoint's row (not only a message). */
export const changesEndpoint = (kind: string): boolean =>
  ["circuit_opened", "circuit_closed", "disabled", "enabled", "rotated", "created", "updated", "deleted", "failed", "delivered", "retrying", "held"].includes(kind);
