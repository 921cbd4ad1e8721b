// The only door to the Rust core. Every command has a typed wrapper and a timeout, so a slow
// network shows a message instead of freezing the UI; every failure is a `ConsoleError` with the
// core's `{kind, message}`. The webview never holds a token: the core makes every request.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  BackupOut,
  DrillOut,
  EmailDetailOut,
  EmailOut,
  EmailTemplateOut,
  HealthOut,
  JobDetailOut,
  Page,
  QueueOut,
  SuppressionOut,
  UserOut,
  WebhookAttemptOut,
  WebhookEndpointOut,
  WebhookMessageDetailOut,
  WebhookMessageOut,
  WebhookMessageStatus,
  WebhookRecoverOut,
  WebhookRecoveryOut,
  WebhookSecretOut,
} from "./api.gen";
import type {
  BackupsSummary,
  ConnState,
  EmailSearch,
  ErrorKind,
  Notification,
  Prefs,
  Profile,
  ProfilesView,
  StreamEvent,
} from "./console.gen";

export class ConsoleError extends Error {
  constructor(
    readonly kind: ErrorKind | "timeout" | "internal",
    message: string,
    /** The server's stable problem code, when it answered with one. */
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "ConsoleError";
  }
}

/** Default time a command may take before the UI gives up waiting and says so. */
export const DEFAULT_TIMEOUT_MS = 15_000;

function toConsoleError(e: unknown): ConsoleError {
  if (e instanceof ConsoleError) return e;
  if (e && typeof e === "object" && "kind" in e && "message" in e) {
    const { kind, message, code } = e as { kind: ErrorKind; message: string; code?: string };
    return new ConsoleError(kind, message, code ?? null);
  }
  return new ConsoleError("internal", e instanceof Error ? e.message : String(e));
}

export async function call<T>(
  cmd: string,
  args: Record<string, unknown> = {},
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ConsoleError(
            "timeout",
            `No answer after ${Math.round(timeoutMs / 1000)} s — the server or network is slow. Try again.`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([invoke<T>(cmd, args), timeout]);
  } catch (e) {
    throw toConsoleError(e);
  } finally {
    clearTimeout(timer);
  }
}

export const api = {
  profiles: () => call<ProfilesView>("profiles"),
  addProfile: (name: string, url: string, colour: string | null, production: boolean, allowPlainHttp = false) =>
    call<Profile>("add_profile", { name, url, colour, production, allowPlainHttp }),
  selectProfile: (id: string) => call<void>("select_profile", { id }),
  removeProfile: (id: string) => call<void>("remove_profile", { id }),
  login: (id: string, email: string, password: string) =>
    call<UserOut>("login", { id, email, password }, 30_000),
  logout: (id: string) => call<void>("logout", { id }),
  health: (id: string) => call<HealthOut>("health", { id }),
  queues: (id: string) => call<QueueOut[]>("queues", { id }),
  historyChart: (id: string, component: string, hours: number, width: number, height: number, dark: boolean) =>
    call<string>("history_chart", { id, component, hours, width, height, dark }, 30_000),
  uptimeChart: (id: string, component: string, hours: number, width: number, height: number, dark: boolean) =>
    call<string>("uptime_chart", { id, component, hours, width, height, dark }, 30_000),
  queueChart: (id: string, queue: string, hours: number, width: number, height: number, dark: boolean) =>
    call<string>("queue_chart", { id, queue, hours, width, height, dark }, 30_000),
  depthChart: (queue: string, points: [string, number][], width: number, height: number, dark: boolean) =>
    call<string>("depth_chart", { queue, points, width, height, dark }),
  connect: (id: string) => call<void>("connect", { id }),
  prefs: () => call<Prefs>("prefs"),
  setPrefs: (prefs: Prefs) => call<void>("set_prefs", { prefs }),
  pauseNotifications: (minutes: number) => call<void>("pause_notifications", { minutes }),
  me: (id: string) => call<UserOut>("me", { id }),
  job: (id: string, jobId: string) => call<JobDetailOut>("job", { id, jobId }),
  emails: (id: string, search: EmailSearch) => call<Page<EmailOut>>("emails", { id, search }),
  email: (id: string, emailId: string) => call<EmailDetailOut>("email", { id, emailId }),
  resendEmail: (id: string, emailId: string, overrideReason: string | null) =>
    call<EmailOut>("resend_email", { id, emailId, overrideReason }, 30_000),
  emailTemplates: (id: string) => call<EmailTemplateOut[]>("email_templates", { id }),
  emailPreview: (id: string, name: string, format: "html" | "text") =>
    call<string>("email_preview", { id, name, format }),
  suppressions: (id: string, address: string | null, cursor: string | null) =>
    call<Page<SuppressionOut>>("suppressions", { id, address, cursor }),
  addSuppression: (id: string, address: string, note: string) =>
    call<SuppressionOut>("add_suppression", { id, address, note }),
  removeSuppression: (id: string, address: string) => call<void>("remove_suppression", { id, address }),
  backups: (id: string) => call<BackupOut[]>("backups", { id }),
  backup: (id: string, backupId: string) => call<BackupOut>("backup", { id, backupId }),
  runBackup: (id: string) => call<BackupOut>("run_backup", { id }, 30_000),
  verifyBackup: (id: string, backupId: string) => call<DrillOut>("verify_backup", { id, backupId }, 30_000),
  drill: (id: string, drillId: string) => call<DrillOut>("drill", { id, drillId }),
  backupsSummary: (id: string) => call<BackupsSummary>("backups_summary", { id }),
  webhookEndpoints: (id: string, cursor: string | null = null) =>
    call<Page<WebhookEndpointOut>>("webhook_endpoints", { id, cursor }),
  webhookEndpoint: (id: string, endpointId: string) => call<WebhookEndpointOut>("webhook_endpoint", { id, endpointId }),
  webhookMessages: (id: string, endpointId: string, status: WebhookMessageStatus | null, cursor: string | null = null) =>
    call<Page<WebhookMessageOut>>("webhook_messages", { id, endpointId, status, cursor }),
  webhookMessage: (id: string, messageId: string) => call<WebhookMessageDetailOut>("webhook_message", { id, messageId }),
  replayWebhook: (id: string, messageId: string) => call<WebhookMessageOut>("replay_webhook", { id, messageId }),
  recoverWebhooks: (id: string, endpointId: string, hours: number, dryRun: boolean) =>
    call<WebhookRecoverOut>("recover_webhooks", { id, endpointId, hours, dryRun }, 30_000),
  webhookRecovery: (id: string, recoveryId: string) => call<WebhookRecoveryOut>("webhook_recovery", { id, recoveryId }),
  rotateWebhookSecret: (id: string, endpointId: string, force: boolean) =>
    call<WebhookSecretOut>("rotate_webhook_secret", { id, endpointId, force }),
  revokePreviousWebhookSecret: (id: string, endpointId: string) =>
    call<WebhookEndpointOut>("revoke_previous_webhook_secret", { id, endpointId }),
  testWebhook: (id: string, endpointId: string) => call<WebhookAttemptOut>("test_webhook", { id, endpointId }, 45_000),
  setWebhookEnabled: (id: string, endpointId: string, enabled: boolean, reason: string | null) =>
    call<WebhookEndpointOut>("set_webhook_enabled", { id, endpointId, enabled, reason }),
  reportError: (message: string, stack: string | null, view: string | null) =>
    call<void>("report_error", { message, stack, view }, 5_000),
};

export type Events = {
  "ops-event": StreamEvent;
  "conn-state": ConnState;
  notified: Notification;
  "open-view": string;
  "profiles-changed": null;
  "console-error": { kind: ErrorKind; message: string };
};

export function on<K extends keyof Events>(
  event: K,
  handler: (payload: Events[K]) => void,
): Promise<UnlistenFn> {
  return listen<Events[K]>(event, (e) => handler(e.payload));
}
