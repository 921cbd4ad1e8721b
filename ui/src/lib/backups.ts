// The Backups view's pure parts: how a backup's and a drill's status read, sizes and durations in
// human units, which version of a polled row to show, the Overview's banner, and the restore
// runbook's commands (the console opens no external links: the runbook is shown in the app).
import type { BackupOut, BackupStatus, DrillOut, DrillStatus } from "./api.gen";
import type { BackupsSummary } from "./console.gen";
import type { Component } from "./state.svelte";

/** How often a running backup or drill is polled, and the list re-read while one runs. */
export const POLL_MS = 1_000;
export const LIST_REFRESH_MS = 10_000;

export const backupDone = (b: BackupOut): boolean => b.status === "succeeded" || b.status === "failed";
export const drillDone = (d: DrillOut): boolean => d.status === "passed" || d.status === "failed";

/** How a status reads at a glance: good, under way, or needs a look. */
export function tone(status: BackupStatus | DrillStatus): "pass" | "warn" | "fail" {
  switch (status) {
    case "succeeded":
    case "passed":
      return "pass";
    case "queued":
    case "running":
      return "warn";
    case "failed":
      return "fail";
  }
}

/** Bytes as `512 B`, `4.1 kB`, `12.3 MB`, `1.2 GB` (powers of 1000, like file managers). */
export function size(bytes: number | null): string {
  if (bytes === null) return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Milliseconds as `850 ms`, `1.2 s`, `2 min 5 s`, `1 h 3 min` (the core's `human_ms`). */
export function duration(ms: number | null): string {
  if (ms === null) return "—";
  const m = Math.max(0, Math.round(ms));
  if (m < 1_000) return `${m} ms`;
  if (m < 60_000) return `${(m / 1_000).toFixed(1)} s`;
  if (m < 3_600_000) {
    const s = Math.floor(m / 1_000);
    return `${Math.floor(s / 60)} min ${s % 60} s`;
  }
  const min = Math.floor(m / 60_000);
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

/** Seconds (a recovery point's age) as `45 s`, `12 min`, `5 h 20 min`, `3 d 4 h`. */
export function age(seconds: number | null): string {
  if (seconds === null) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3_600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) {
    const m = Math.floor(s / 60);
    return m % 60 === 0 ? `${m / 60} h` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }
  const h = Math.floor(s / 3_600);
  return h % 24 === 0 ? `${h / 24} d` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** The first characters of a sha256, enough to tell backups apart. */
export const shortSha = (sha: string | null): string => (sha ? sha.slice(0, 12) : "—");

/** A run's progress (0–100) as a bar's 0–1; none while it is only queued (an indeterminate bar). */
export const fraction = (status: BackupStatus | DrillStatus, progress: number): number | null =>
  status === "queued" ? null : Math.max(0, Math.min(100, progress)) / 100;

/** Of two versions of the same backup or drill (the list's and the one polled), the one further
 * along: a finished one over one still running, else the higher progress, else the polled one. */
export function furthest<T extends BackupOut | DrillOut>(listed: T, polled: T, done: (x: T) => boolean): T {
  if (done(listed) !== done(polled)) return done(listed) ? listed : polled;
  return listed.progress > polled.progress ? listed : polled;
}

/** The rows to show: the list, with the polled backup (just run) in its place or first. */
export function withPolled(rows: BackupOut[], polled: BackupOut | null): BackupOut[] {
  if (!polled) return rows;
  const i = rows.findIndex((r) => r.id === polled.id);
  if (i < 0) return [polled, ...rows];
  const shown = [...rows];
  shown[i] = furthest(rows[i], polled, backupDone);
  return shown;
}

/** A backup's drill to show: the latest one listed, or the one polled when it is that one or newer. */
export function drillOf(b: BackupOut, polled: DrillOut | undefined): DrillOut | null {
  const listed = b.latest_drill;
  if (!polled) return listed;
  if (!listed) return polled;
  if (listed.id === polled.id) return furthest(listed, polled, drillDone);
  return polled.created_at >= listed.created_at ? polled : listed;
}

/** Why a finished drill failed, in a line: its error, or the tables that differ. */
export function drillProblem(d: DrillOut): string | null {
  if (d.status !== "failed") return null;
  if (d.error) return d.error;
  if (d.mismatches.length > 0) return d.mismatches.join("; ");
  return "the restored tables differ from the backup";
}

export type Banner = { tone: "fail" | "warn"; text: string };

/** The Overview's unmissable banner: red when the backups are bad (the newest backup or the last
 * drill failed, none succeeded) or their health component fails, amber when it warns. */
export function banner(component: Component | undefined, summary: BackupsSummary | null): Banner | null {
  const health = component && component.status !== "pass" ? component : null;
  const alarm = summary?.alarm ?? null;
  if (!health && !alarm) return null;
  const parts: string[] = alarm ? [alarm] : [];
  if (health) {
    const said = health.output ?? `the backups check is ${health.status === "fail" ? "failing" : "warning"}`;
    // A failed drill is in both the list and the health check: said once.
    if (!alarm?.includes(said)) parts.push(said);
  }
  return { tone: alarm || health?.status === "fail" ? "fail" : "warn", text: parts.join("; ") };
}

/** The restore runbook (docs/backup-restore.md), as the commands to run on a server host. */
export const RUNBOOK: { step: string; command: string | null }[] = [
  { step: "Find the backup: the newest whose drill passed (its RPO is the data you lose).", command: "airwave-server backup list" },
  {
    step: "Create an empty target database beside the live one, and restore into it (prints the tables and rows restored).",
    command: "airwave-server backup restore bkp_… --target postgres://airwave@db-new:5432/airwave_restored",
  },
  { step: "SQLite: restore into a new file instead.", command: "airwave-server backup restore bkp_… --target sqlite:///var/lib/airwave/restored.db" },
  {
    step: "Stop the servers, point DATABASE_URL at the restored database, run migrations if the backup is older than the running version, start them; check the Overview.",
    command: "airwave-server migrate",
  },
  {
    step: "The live database is refused unless --force-live and its name typed to confirm (stop every server first; take a backup just before — it is the way back).",
    command: null,
  },
];
