import { invoke } from "@tauri-apps/api/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { call, ConsoleError } from "../src/lib/ipc";

describe("call: typed commands with a timeout", () => {
  afterEach(() => vi.useRealTimers());

  it("turns the core's {kind, message} into a ConsoleError", async () => {
    vi.mocked(invoke).mockRejectedValue({ kind: "unauthenticated", message: "log in to Staging first" });
    const e = await call("health", { id: "p" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConsoleError);
    expect((e as ConsoleError).kind).toBe("unauthenticated");
    expect((e as ConsoleError).message).toBe("log in to Staging first");
  });

  it("gives up on a command that never answers, with a message", async () => {
    vi.useFakeTimers();
    vi.mocked(invoke).mockReturnValue(new Promise(() => {}));
    const pending = call("health", { id: "p" }, 5000).catch((x: unknown) => x);
    await vi.advanceTimersByTimeAsync(5001);
    const e = (await pending) as ConsoleError;
    expect(e.kind).toBe("timeout");
    expect(e.message).toContain("No answer after 5 s");
  });
});
