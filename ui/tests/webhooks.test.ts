import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { invoke } from "@tauri-apps/api/core";
import { describe, expect, it, vi } from "vitest";
import type { WebhookEndpointOut, WebhookMessageDetailOut, WebhookMessageOut } from "../src/lib/api.gen";
import { ConsoleState } from "../src/lib/state.svelte";
import { endpointState, score } from "../src/lib/webhooks";
import Webhooks from "../src/views/webhooks/Webhooks.svelte";

const profile = {
  id: "local",
  name: "Local",
  url: "http://127.0.0.1:8080/",
  colour: "#2563eb",
  production: false,
  local: true,
  email: "op@airwave.local",
  token_id: null,
  token_expires_at: null,
  allow_plain_http: false,
};

function endpoint(over: Partial<WebhookEndpointOut> = {}): WebhookEndpointOut {
  return {
    id: "whe_1",
    client_id: "cli_1",
    url: "https://hooks.example.com/airwave",
    description: "",
    event_types: [],
    header_names: [],
    rate_limit_per_s: null,
    enabled: true,
    disabled_at: null,
    disabled_reason: null,
    circuit: "closed",
    circuit_retry_at: null,
    consecutive_failures: 0,
    failing_since: null,
    health: 50,
    success_rate: 0.5,
    p50_latency_ms: 12,
    last_success_at: null,
    last_failure_at: null,
    secret_generation: 1,
    previous_secret_until: null,
    pending: 0,
    failed: 1,
    created_at: "2026-12-04T10:00:00Z",
    ...over,
  };
}

function message(over: Partial<WebhookMessageOut> = {}): WebhookMessageOut {
  return {
    id: "whm_1",
    endpoint_id: "whe_1",
    event_type: "render.completed",
    event_id: "evt_1",
    status: "failed",
    attempts: 3,
    next_attempt_at: null,
    last_status: 500,
    last_error: "answered 500",
    created_at: "2026-12-04T10:00:00Z",
    delivered_at: null,
    ...over,
  };
}

function detail(m: WebhookMessageOut): WebhookMessageDetailOut {
  return {
    ...m,
    body: '{"type":"render.completed","timestamp":"2026-12-04T10:00:00.000Z","data":{}}',
    attempt_log: [
      {
        id: "wha_1",
        message_id: m.id,
        attempt: 1,
        started_at: "2026-12-04T10:00:00Z",
        duration_ms: 15,
        status_code: 500,
        delivered: false,
        error_class: "status",
        error: "answered 500 Internal Server Error",
        request_headers: { "webhook-id": m.id },
        response_headers: {},
        response_body: "boom",
      },
    ],
  };
}

function model(role: "support" | "operator"): ConsoleState {
  const s = new ConsoleState();
  s.setProfiles([profile], "local");
  s.setRole(role);
  return s;
}

function core(answers: Record<string, (args: Record<string, unknown>) => unknown>): void {
  vi.mocked(invoke).mockImplementation(async (cmd: string, args?: unknown) => {
    const answer = answers[cmd];
    if (!answer) throw new Error(`unexpected command ${cmd}`);
    return answer((args ?? {}) as Record<string, unknown>);
  });
}

describe("an endpoint at a glance", () => {
  it("says disabled, circuit open, failing, healthy or untried", () => {
    expect(endpointState(endpoint({ enabled: false })).label).toBe("disabled");
    expect(endpointState(endpoint({ circuit: "open" })).label).toBe("circuit open");
    expect(endpointState(endpoint({ consecutive_failures: 2 })).label).toBe("failing");
    expect(endpointState(endpoint({ health: 100 })).tone).toBe("pass");
    expect(endpointState(endpoint({ health: 60 })).label).toBe("degraded");
    expect(endpointState(endpoint({ health: 20 })).label).toBe("unreliable");
    expect(endpointState(endpoint({ health: null })).label).toBe("no deliveries yet");
    expect(score(endpoint({ health: null }))).toBe("—");
  });
});

describe("the Webhooks view", () => {
  it("lists endpoints, shows a failed message's attempts and replays it after a confirmation", async () => {
    const replayed: unknown[] = [];
    core({
      webhook_endpoints: () => ({ items: [endpoint()], next_cursor: null }),
      webhook_endpoint: () => endpoint(),
      webhook_messages: () => ({ items: [message()], next_cursor: null }),
      webhook_message: () => detail(message()),
      replay_webhook: (a) => {
        replayed.push(a.messageId);
        return message({ status: "pending" });
      },
    });
    const s = model("operator");
    render(Webhooks, { model: s });
    const row = await screen.findByText("https://hooks.example.com/airwave");
    await fireEvent.click(row);
    await screen.findByTestId("webhook-messages");
    await fireEvent.click(screen.getByText("render.completed"));
    const attempts = await screen.findByTestId("webhook-attempts");
    expect(attempts.textContent).toContain("500");
    await fireEvent.click(screen.getByText("Replay…"));
    expect(screen.getByRole("dialog").textContent).toContain("same webhook-id");
    await fireEvent.click(screen.getByRole("button", { name: "Replay" }));
    await waitFor(() => expect(replayed).toEqual(["whm_1"]));
    expect(s.troubledEndpoints).toBe(0);
  });

  it("shows support the deliveries but no actions, and an error with Retry", async () => {
    let fail = true;
    core({
      webhook_endpoints: () => {
        if (fail) throw { kind: "network", message: "the server did not answer" };
        return { items: [endpoint({ circuit: "open" })], next_cursor: null };
      },
      webhook_endpoint: () => endpoint({ circuit: "open" }),
      webhook_messages: () => ({ items: [], next_cursor: null }),
    });
    const s = model("support");
    render(Webhooks, { model: s });
    await screen.findByText("the server did not answer");
    fail = false;
    await fireEvent.click(screen.getByText("Retry"));
    await fireEvent.click(await screen.findByText("https://hooks.example.com/airwave"));
    await screen.findByText("Nothing has been sent to this endpoint yet.");
    expect(screen.queryByText("Send test event")).toBeNull();
    expect(s.troubledEndpoints).toBe(1);
  });
});
