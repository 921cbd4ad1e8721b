// Uncaught UI errors: reported to the core (which scrubs them and, when a Sentry DSN is
// configured, sends them on) and shown as a toast — never a blank window.
import { api } from "./ipc";
import { toast } from "./toasts.svelte";

export function reportUiError(error: unknown, view: string | null): void {
  const message = error instanceof Error ? error.message : String(error);
  const stack = error instanceof Error ? (error.stack ?? null) : null;
  api.reportError(message, stack, view).catch(() => {
    /* the core is gone: nothing more to do */
  });
}

export function installGlobalHandlers(): void {
  window.addEventListener("error", (e) => {
    reportUiError(e.error ?? e.message, null);
    toast(`Something went wrong: ${e.message}`, "error");
  });
  window.addEventListener("unhandledrejection", (e) => {
    reportUiError(e.reason, null);
    toast(`Something went wrong: ${e.reason instanceof Error ? e.reason.message : String(e.reason)}`, "error");
  });
}
