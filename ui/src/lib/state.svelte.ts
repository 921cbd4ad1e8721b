// What every view shows, kept current by the live stream: the active profile, each health
// component's latest check (with a short history for the sparklines), the queues' counts and
// the connection state ("live", or "disconnected — data as of …").
import type {
  EmailChangedEvent,
  HealthOut,
  WebhookChangedEvent,
  HealthStatus,
  QueueCountsOut,
  QueueStatsEvent,
  QueueStatsItem,
  Role,
} from "./api.gen";
import type { ConnState, Profile, StreamEvent } from "./console.gen";

export type View = "overview" | "health" | "emails" | "webhooks" | "backups" | "settings";
export type Group = "Monitor" | "Operate" | "Govern";
export type ViewDef = {
  id: View;
  label: string;
  /** Ctrl+key opens it. */
  key: string;
  /** Where the sidebar lists it (Settings stands apart). */
  group: Group | null;
  /** Who may use it; `null`: anyone, logged in or not. */
  roles: Role[] | null;
};
/** The sidebar's groups, in order. Views still to come (Alerts, Queues, Rate limits,
 * Privacy, Analytics, Launch) join their group as they land. */
export const GROUPS: Group[] = ["Monitor", "Operate", "Govern"];
const STAFF: Role[] = ["admin", "operator", "support"];
export const VIEWS: ViewDef[] = [
  { id: "overview", label: "Overview", key: "1", group: "Monitor", roles: null },
  { id: "health", label: "Health", key: "2", group: "Monitor", roles: ["admin", "operator"] },
  { id: "emails", label: "E-mails", key: "6", group: "Operate", roles: STAFF },
  { id: "webhooks", label: "Webhooks", key: "8", group: "Operate", roles: STAFF },
  { id: "backups", label: "Backups", key: "7", group: "Operate", roles: STAFF },
  { id: "settings", label: "Settings", key: ",", group: null, roles: null },
];

/** The views `role` may use (before anyone logs in: the ones open to anyone). */
export function viewsFor(role: Role | null): ViewDef[] {
  return VIEWS.filter((v) => v.roles === null || (role !== null && v.roles.includes(role)));
}

export const canSee = (role: Role | null, view: View): boolean => viewsFor(role).some((v) => v.id === view);

/** What another view asked the Emails view to show (from the command palette). */
export type EmailsIntent = { to?: string; open?: string };

export type Component = {
  key: string;
  status: HealthStatus;
  value: number | null;
  unit: string | null;
  output: string | null;
  /** The value above which the check warns (same unit), when the server says. */
  warnAbove: number | null;
  time: string;
  /** The last observed values, oldest first (for sparklines). */
  recent: number[];
};

/** The health component that says how old the newest good backup is (and warns when it is overdue
 * or the last restore drill failed). */
export const BACKUPS_COMPONENT = "backups:age";

const SPARK_POINTS = 30;
/** Queue depth samples kept per queue (an hour at the stream's default 5 s). */
const DEPTH_POINTS = 720;

/** The jobs still to be done in a queue. */
export const depthOf = (c: QueueCountsOut): number => c.waiting + c.delayed + c.retrying + c.active;

export class ConsoleState {
  profiles = $state<Profile[]>([]);
  activeId = $state<string | null>(null);
  components = $state<Record<string, Component>>({});
  queues = $state<QueueStatsItem[] | null>(null);
  /** Each queue's depth over time, as observed on the stream: `[time, depth]`, oldest first. */
  depth = $state<Record<string, [string, number][]>>({});
  conn = $state<ConnState | null>(null);
  /** When the data shown was last known to be current. */
  asOf = $state<string | null>(null);
  view = $state<View>("overview");
  /** The logged-in user's role on the active profile (from `GET /api/me`). */
  role = $state<Role | null>(null);
  /** The last `email.changed` seen on the stream, and how many so far (views refresh on it). */
  lastEmailChange = $state<EmailChangedEvent | null>(null);
  emailChanges = $state(0);
  /** Messages that failed in the last day, when the Emails view last counted them. */
  failedEmails = $state<number | null>(null);
  emailsIntent = $state<EmailsIntent | null>(null);
  /** The last `webhook.changed` seen on the stream, and how many so far. */
  lastWebhookChange = $state<WebhookChangedEvent | null>(null);
  webhookChanges = $state(0);
  /** Endpoints whose circuit is open or that are disabled, when the Webhooks view last looked. */
  troubledEndpoints = $state<number | null>(null);

  active = $derived(this.profiles.find((p) => p.id === this.activeId) ?? null);
  overall = $derived(overallStatus(Object.values(this.components)));
  /** Whether what is shown may be out of date (the stream is not live). */
  stale = $derived(this.conn !== null && this.conn.state !== "live");
  /** A count beside a view in the sidebar, where something needs attention. */
  badges = $derived<Partial<Record<View, number>>>({
    overview: Object.values(this.components).filter((c) => c.status === "fail").length,
    emails: this.failedEmails ?? 0,
    webhooks: this.troubledEndpoints ?? 0,
    backups: (this.components[BACKUPS_COMPONENT]?.status ?? "pass") === "pass" ? 0 : 1,
  });

  /** Opens a view the role may use (else the Overview). */
  go(view: View): void {
    this.view = canSee(this.role, view) ? view : "overview";
  }

  setRole(role: Role | null): void {
    this.role = role;
    if (!canSee(role, this.view)) this.view = "overview";
  }

  setProfiles(profiles: Profile[], active: string | null): void {
    if (active !== this.activeId) {
      this.components = {};
      this.queues = null;
      this.depth = {};
      this.conn = null;
      this.asOf = null;
      this.role = null;
      this.failedEmails = null;
      this.lastEmailChange = null;
      this.emailsIntent = null;
      this.lastWebhookChange = null;
      this.troubledEndpoints = null;
      this.view = "overview";
    }
    this.profiles = profiles;
    this.activeId = active;
  }

  applyHealth(h: HealthOut, now = new Date().toISOString()): void {
    for (const [key, checks] of Object.entries(h.checks)) {
      if (key === "uptime") continue;
      const c = checks[0];
      if (!c) continue;
      const value = typeof c.observedValue === "number" ? c.observedValue : null;
      this.upsert(key, c.status, value, c.observedUnit ?? null, c.output ?? null, c.time, c.warnAbove ?? null);
    }
    this.asOf = now;
  }

  applyEvent(ev: StreamEvent): void {
    if (ev.event === "health.changed" || ev.event === "health.sample") {
      const d = ev.data as {
        component: string;
        status: HealthStatus;
        observed_value: number | null;
        observed_unit: string | null;
        output: string | null;
        time: string;
      };
      this.upsert(d.component, d.status, d.observed_value, d.observed_unit, d.output, d.time);
      this.asOf = d.time;
    } else if (ev.event === "queue.stats") {
      const d = ev.data as QueueStatsEvent;
      this.queues = d.queues;
      for (const q of d.queues) {
        const series = [...(this.depth[q.name] ?? []), [d.time, depthOf(q.counts)] as [string, number]];
        this.depth[q.name] = series.slice(-DEPTH_POINTS);
      }
      this.asOf = d.time;
    } else if (ev.event === "email.changed") {
      this.lastEmailChange = ev.data as EmailChangedEvent;
      this.emailChanges += 1;
    } else if (ev.event === "webhook.changed") {
      this.lastWebhookChange = ev.data as WebhookChangedEvent;
      this.webhookChanges += 1;
    }
  }

  setConn(s: ConnState): void {
    this.conn = s;
    if (s.state === "live") this.asOf = new Date().toISOString();
  }

  private upsert(
    key: string,
    status: HealthStatus,
    value: number | null,
    unit: string | null,
    output: string | null,
    time: string,
    warnAbove?: number | null,
  ): void {
    const prev = this.components[key];
    const recent = prev ? [...prev.recent] : [];
    if (value !== null) recent.push(value);
    this.components[key] = {
      key,
      status,
      value,
      unit,
      output,
      time,
      warnAbove: warnAbove === undefined ? (prev?.warnAbove ?? null) : warnAbove,
      recent: recent.slice(-SPARK_POINTS),
    };
  }
}

export function overallStatus(components: Component[]): HealthStatus | null {
  if (components.length === 0) return null;
  if (components.some((c) => c.status === "fail")) return "fail";
  if (components.some((c) => c.status === "warn")) return "warn";
  return "pass";
}

export function queueTotals(queues: QueueStatsItem[]): QueueCountsOut {
  const t: QueueCountsOut = { waiting: 0, delayed: 0, active: 0, completed: 0, retrying: 0, dead: 0, cancelled: 0 };
  for (const q of queues) for (const k of Object.keys(t) as (keyof QueueCountsOut)[]) t[k] += q.counts[k];
  return t;
}

export const app = new ConsoleState();
