import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { invoke } from "@tauri-apps/api/core";
import { describe, expect, it, vi } from "vitest";
import ConfirmDialog from "../src/components/ConfirmDialog.svelte";
import ConnBanner from "../src/components/ConnBanner.svelte";
import ProgressBar from "../src/components/ProgressBar.svelte";
import { ConsoleError } from "../src/lib/ipc";
import BoundaryHost from "./fixtures/BoundaryHost.svelte";
import LoadableHost from "./fixtures/LoadableHost.svelte";

describe("Loadable: the loading, error, empty and loaded states every view uses", () => {
  it("shows a skeleton while loading, then the data", async () => {
    let resolve!: (v: string[]) => void;
    render(LoadableHost, { load: () => new Promise<string[]>((r) => (resolve = r)) });
    expect(screen.getByTestId("skeleton")).toBeTruthy();
    resolve(["alpha", "beta"]);
    await screen.findByText("alpha");
    expect(screen.queryByTestId("skeleton")).toBeNull();
  });

  it("shows the error with a Retry that loads again", async () => {
    const load = vi
      .fn<() => Promise<string[]>>()
      .mockRejectedValueOnce(new ConsoleError("offline", "the server could not be reached"))
      .mockResolvedValueOnce(["back"]);
    render(LoadableHost, { load });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("the server could not be reached");
    await fireEvent.click(screen.getByRole("button", { name: "Retry" }));
    await screen.findByText("back");
    expect(load).toHaveBeenCalledTimes(2);
  });

  it("shows the empty state when there is nothing", async () => {
    render(LoadableHost, { load: async () => [] });
    await screen.findByText("No items");
    expect(screen.getByTestId("empty")).toBeTruthy();
  });
});

describe("ErrorBoundary", () => {
  it("turns a crashing view into a friendly error with a retry, reports it, keeps the window", async () => {
    vi.mocked(invoke).mockResolvedValue(undefined);
    let failing = true;
    render(BoundaryHost, { fail: () => failing });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("boom in the view");
    expect(screen.getByText("the rest of the window")).toBeTruthy();
    expect(invoke).toHaveBeenCalledWith("report_error", expect.objectContaining({ message: "boom in the view", view: "test-view" }));
    failing = false;
    await fireEvent.click(screen.getByRole("button", { name: "Retry" }));
    await screen.findByText("rendered fine");
  });
});

describe("ConnBanner: the stale state", () => {
  it("says live when connected", () => {
    render(ConnBanner, { conn: { state: "live" }, asOf: null });
    expect(screen.getByRole("status").textContent).toContain("live");
  });

  it("says disconnected and how old the data is", () => {
    const asOf = "2026-11-26T10:15:30Z";
    render(ConnBanner, { conn: { state: "disconnected", since: asOf, reason: "connection refused" }, asOf });
    const text = screen.getByRole("status").textContent ?? "";
    expect(text).toContain("disconnected — data as of");
    expect(text).toContain(new Date(asOf).toLocaleTimeString());
  });

  it("asks to log in again when the token was refused", () => {
    render(ConnBanner, { conn: { state: "unauthorized" }, asOf: null });
    expect(screen.getByRole("status").textContent).toContain("log in again");
  });
});

describe("ConfirmDialog", () => {
  it("confirms with the button and cancels with Escape", async () => {
    const onconfirm = vi.fn();
    const oncancel = vi.fn();
    render(ConfirmDialog, { title: "Log out?", message: "The token is revoked.", confirmLabel: "Log out", onconfirm, oncancel });
    expect(screen.getByRole("dialog").textContent).toContain("The token is revoked.");
    await fireEvent.keyDown(window, { key: "Escape" });
    expect(oncancel).toHaveBeenCalledOnce();
    await fireEvent.click(screen.getByRole("button", { name: "Log out" }));
    expect(onconfirm).toHaveBeenCalledOnce();
  });
});

describe("ProgressBar", () => {
  it("reports its value, or none while indeterminate", () => {
    render(ProgressBar, { value: 0.42, label: "Backing up" });
    expect(screen.getByRole("progressbar", { name: "Backing up" }).getAttribute("aria-valuenow")).toBe("42");
  });
});
