import { cleanup } from "@testing-library/svelte";
import { afterEach, vi } from "vitest";

// The Tauri IPC is not there under jsdom: every test says what the core answers.
vi.mock("@tauri-apps/api/core", () => ({ invoke: vi.fn() }));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn(async () => () => {}) }));

afterEach(() => {
  cleanup();
  vi.clearAllMocks();
});

// jsdom has no layout, hence no ResizeObserver (Svelte's bind:clientWidth uses it).
globalThis.ResizeObserver ??= class {
  observe(): void {}
  unobserve(): void {}
  disconnect(): void {}
};
