import { render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import type { HealthOut } from "../src/lib/api.gen";
import { ConsoleState, queueTotals } from "../src/lib/state.svelte";
import Overview from "../src/views/Overview.svelte";

const profile = {
  id: "local",
  name: "Local",
  url: "http://127.0.0.1:8080/",
  colour: "#2563eb",
  production: false,
  local: true,
  email: "ops@airwave.local",
  token_id: null, token_expires_at: null, allow_plain_http: false,
};

function health(status: "pass" | "fail", ms: number): HealthOut {
  return {
    status,
    version: "1",
    serviceId: "airwave",
    description: "",
    checks: {
      "database:responseTime": [
        { componentId: "db", componentType: "datastore", observedValue: ms, observedUnit: "ms", status, time: "2026-11-26T10:00:00Z", output: null, warnAbove: 250 },
      ],
    },
  };
}

describe("the console's state", () => {
  it("applies a health report and live events; the overall status follows", () => {
    const s = new ConsoleState();
    s.applyHealth(health("pass", 3));
    expect(s.overall).toBe("pass");
    s.applyEvent({
      id: 7,
      event: "health.changed",
      data: { component: "database:responseTime", status: "fail", previous: "pass", observed_value: 900, observed_unit: "ms", output: "timeout", time: "2026-11-26T10:01:00Z" },
    });
    expect(s.overall).toBe("fail");
    expect(s.components["database:responseTime"].recent).toEqual([3, 900]);
    expect(s.components["database:responseTime"].warnAbove).toBe(250);
    expect(s.asOf).toBe("2026-11-26T10:01:00Z");
  });

  it("sums queue counts", () => {
    const counts = { waiting: 2, delayed: 0, active: 1, completed: 5, retrying: 0, dead: 1, cancelled: 0 };
    const st = new ConsoleState();
    st.applyEvent({ id: 1, event: "queue.stats", data: { time: "2026-11-26T10:00:00Z", queues: [{ name: "render", paused: false, counts }] } });
    st.applyEvent({ id: 2, event: "queue.stats", data: { time: "2026-11-26T10:00:05Z", queues: [{ name: "render", paused: false, counts: { ...counts, waiting: 7 } }] } });
    expect(st.depth.render).toEqual([["2026-11-26T10:00:00Z", 3], ["2026-11-26T10:00:05Z", 8]]);
    expect(queueTotals([{ name: "render", paused: false, counts }, { name: "email", paused: true, counts }]).dead).toBe(2);
  });
});

describe("Overview", () => {
  it("invites to connect when no profile is logged in", () => {
    const s = new ConsoleState();
    render(Overview, { model: s, loaded: false, onopen: () => {} });
    expect(screen.getByText("Not connected")).toBeTruthy();
  });

  it("shows a skeleton before the first health report, then the components and queue totals", async () => {
    const s = new ConsoleState();
    s.setProfiles([profile], "local");
    const { rerender } = render(Overview, { model: s, loaded: false, onopen: () => {} });
    expect(screen.getByTestId("skeleton")).toBeTruthy();
    s.applyHealth(health("fail", 12));
    s.applyEvent({
      id: 1,
      event: "queue.stats",
      data: { time: "2026-11-26T10:00:00Z", queues: [{ name: "render", paused: false, counts: { waiting: 4, delayed: 0, active: 2, completed: 9, retrying: 1, dead: 3, cancelled: 0 } }] },
    });
    await rerender({ model: s, loaded: true, onopen: () => {} });
    const card = screen.getByTestId("components").querySelector('[data-component="database:responseTime"]');
    expect(card?.textContent).toContain("failing");
    expect(card?.textContent).toContain("12 ms");
    expect(screen.getByTestId("queue-totals").textContent).toContain("dead3");
  });
});
