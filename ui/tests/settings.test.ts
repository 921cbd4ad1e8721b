import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { invoke } from "@tauri-apps/api/core";
import { describe, expect, it, vi } from "vitest";
import { ConsoleState } from "../src/lib/state.svelte";
import Settings from "../src/views/Settings.svelte";

describe("Settings", () => {
  it("logs out of a profile after the confirmation, without an error in between", async () => {
    vi.mocked(invoke).mockImplementation(async (cmd: string) => (cmd === "prefs" ? { enabled: true, warn: false, quiet_start: null, quiet_end: null, dedupe_secs: 300, paused_until: null } : undefined));
    const errors: unknown[] = [];
    const onError = (e: ErrorEvent) => errors.push(e.error);
    window.addEventListener("error", onError);
    const s = new ConsoleState();
    s.setProfiles(
      [{ id: "staging", name: "Staging", url: "https://ops.example/", colour: "#2563eb", production: false, local: false, email: "ops@example.com", token_id: "tok_1", token_expires_at: null, allow_plain_http: false }],
      "staging",
    );
    const onchanged = vi.fn(async () => {});
    render(Settings, { model: s, onchanged });
    await fireEvent.click(screen.getByRole("button", { name: "Log out" }));
    const dialog = screen.getByRole("dialog");
    await fireEvent.click(dialog.querySelector("button.primary") as HTMLButtonElement);
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("logout", { id: "staging" }));
    await waitFor(() => expect(onchanged).toHaveBeenCalled());
    window.removeEventListener("error", onError);
    expect(errors).toEqual([]);
  });
});
