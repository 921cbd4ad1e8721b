// Toasts: short messages in a corner that go away by themselves (errors stay longer).
export type ToastKind = "info" | "success" | "error";
export type Toast = { id: number; kind: ToastKind; message: string };

let next = 1;
export const toasts = $state<Toast[]>([]);

export function toast(message: string, kind: ToastKind = "info", timeoutMs?: number): number {
  const id = next++;
  toasts.push({ id, kind, message });
  const ms = timeoutMs ?? (kind === "error" ? 8000 : 4000);
  if (ms > 0) setTimeout(() => dismiss(id), ms);
  return id;
}

export function dismiss(id: number): void {
  const i = toasts.findIndex((t) => t.id === id);
  if (i >= 0) toasts.splice(i, 1);
}
