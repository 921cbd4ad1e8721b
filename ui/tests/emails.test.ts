import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { invoke } from "@tauri-apps/api/core";
import { describe, expect, it, vi } from "vitest";
import type { EmailDetailOut, EmailOut } from "../src/lib/api.gen";
import { applyChange, MAIL_CSP, mergeFirstPage, sandboxed } from "../src/lib/emails";
import { paletteItems } from "../src/lib/palette";
import { ConsoleState, viewsFor } from "../src/lib/state.svelte";
import Emails from "../src/views/emails/Emails.svelte";
import MessageDetail from "../src/views/emails/MessageDetail.svelte";

const profile = {
  id: "local",
  name: "Local",
  url: "http://127.0.0.1:8080/",
  colour: "#2563eb",
  production: false,
  local: true,
  email: "sup@airwave.local",
  token_id: null,
  token_expires_at: null,
  allow_plain_http: false,
};

function mail(id: string, over: Partial<EmailOut> = {}): EmailOut {
  return {
    id,
    to: "ada@example.com",
    template: "password_reset",
    subject: "Reset your password",
    status: "sent",
    attempts: 1,
    last_error: null,
    transport: "smtp",
    provider_id: null,
    message_id: `<${id}@airwave.test>`,
    correlation_id: null,
    resend_of: null,
    created_at: "2026-12-02T10:00:00Z",
    sent_at: "2026-12-02T10:00:01Z",
    status_at: "2026-12-02T10:00:01Z",
    ...over,
  };
}

function detail(email: EmailOut, over: Partial<EmailDetailOut> = {}): EmailDetailOut {
  return {
    email,
    from: "noreply@airwave.test",
    text: "Reset: https://app.example/reset?token=[redacted]",
    html: "<p>Reset <script>alert(1)</script><img src='https://tracker.example/x.png'></p>",
    attempts: [{ attempt: 1, transport: "smtp", started_at: "2026-12-02T10:00:00Z", duration_ms: 12, outcome: "sent", error: null, provider_id: null }],
    suppressed: false,
    resent_as: [],
    ...over,
  };
}

function model(role: "support" | "operator" = "support"): ConsoleState {
  const s = new ConsoleState();
  s.setProfiles([profile], "local");
  s.setRole(role);
  return s;
}

/** Answers the core's commands from a table; anything else fails the test. */
function core(answers: Record<string, (args: Record<string, unknown>) => unknown>): void {
  vi.mocked(invoke).mockImplementation(async (cmd: string, args?: unknown) => {
    const answer = answers[cmd];
    if (!answer) throw new Error(`unexpected command ${cmd}`);
    return answer((args ?? {}) as Record<string, unknown>);
  });
}

describe("the sidebar and the palette follow the role", () => {
  it("shows support the Overview, E-mails, Webhooks and Backups, and nothing else but Settings", () => {
    expect(viewsFor("support").map((v) => v.id)).toEqual(["overview", "emails", "webhooks", "backups", "settings"]);
    expect(viewsFor("operator").map((v) => v.id)).toEqual(["overview", "health", "emails", "webhooks", "backups", "settings"]);
    expect(viewsFor("member").map((v) => v.id)).toEqual(["overview", "settings"]);
    expect(viewsFor(null).map((v) => v.id)).toEqual(["overview", "settings"]);
  });

  it("keeps a role out of a view it may not use", () => {
    const s = model("support");
    s.go("health");
    expect(s.view).toBe("overview");
    s.go("emails");
    expect(s.view).toBe("emails");
    s.setRole("member");
    expect(s.view).toBe("overview");
  });

  it("finds views, addresses, messages and jobs", () => {
    const kinds = (q: string, role: "support" | "operator") => paletteItems(q, role).map((i) => i.kind);
    expect(paletteItems("mail", "support").map((i) => i.label)).toContain("E-mails");
    expect(kinds("ada@example.com", "support")).toEqual(["emails-to"]);
    expect(kinds("msg_01abc", "support")).toEqual(["email"]);
    expect(kinds("job_01abc", "support")).toEqual([]);
    expect(kinds("job_01abc", "operator")).toEqual(["job"]);
    expect(paletteItems("health", "support").some((i) => i.kind === "view")).toBe(false);
    expect(kinds("ada@example.com", "member" as "support")).toEqual([]);
  });

  it("counts what needs attention", () => {
    const s = model("operator");
    s.failedEmails = 3;
    expect(s.badges.emails).toBe(3);
  });
});

describe("showing a message safely", () => {
  it("puts a policy that runs and loads nothing ahead of the message", () => {
    const doc = sandboxed("<p>hi</p>");
    expect(doc.indexOf("Content-Security-Policy")).toBeLessThan(doc.indexOf("<p>hi</p>"));
    expect(MAIL_CSP).toContain("default-src 'none'");
    expect(MAIL_CSP).not.toContain("script-src");
  });

  it("renders the HTML part in a frame sandboxed without scripts", async () => {
    core({ email: () => detail(mail("msg_1")) });
    render(MessageDetail, { model: model(), id: "msg_1", tick: 0, onopen: () => {}, onresent: () => {} });
    const frame = (await screen.findByTestId("mail-frame")) as HTMLIFrameElement;
    expect(frame.getAttribute("sandbox")).toBe("");
    expect(frame.getAttribute("srcdoc")).toContain("default-src 'none'");
    expect(screen.getByTestId("email-attempts").textContent).toContain("12 ms");
  });
});

describe("the e-mail log", () => {
  it("searches, shows the rows, and pages on", async () => {
    const searches: unknown[] = [];
    core({
      email_templates: () => [{ name: "password_reset", description: "", sample_subject: "Reset" }],
      emails: (a) => {
        searches.push(a.search);
        const s = a.search as { cursor?: string };
        return s.cursor ? { items: [mail("msg_3")], next_cursor: null } : { items: [mail("msg_2"), mail("msg_1")], next_cursor: "c1" };
      },
    });
    render(Emails, { model: model() });
    await screen.findByText("Load more");
    expect(screen.getByTestId("email-list").querySelectorAll("tbody tr")).toHaveLength(2);
    await fireEvent.click(screen.getByText("Load more"));
    await waitFor(() => expect(screen.getByTestId("email-list").querySelectorAll("tbody tr")).toHaveLength(3));
    await fireEvent.input(screen.getByPlaceholderText("part of an address"), { target: { value: "ada@" } });
    await fireEvent.click(screen.getByRole("button", { name: "Search" }));
    await waitFor(() => expect(searches).toContainEqual(expect.objectContaining({ to: "ada@", limit: 50 })));
  });

  it("says so when nothing matches, and offers Retry when the server fails", async () => {
    let fail = true;
    core({
      email_templates: () => [],
      emails: () => {
        if (fail) throw { kind: "offline", message: "the server could not be reached" };
        return { items: [], next_cursor: null };
      },
    });
    render(Emails, { model: model() });
    expect((await screen.findByRole("alert")).textContent).toContain("could not be reached");
    fail = false;
    await fireEvent.click(screen.getByRole("button", { name: "Retry" }));
    await screen.findByText("No messages");
  });

  it("changes a row live from the stream and reads the first page again for a new one", async () => {
    let calls = 0;
    core({
      email_templates: () => [],
      emails: () => {
        calls++;
        return { items: calls === 1 ? [mail("msg_1", { status: "queued" })] : [mail("msg_2"), mail("msg_1")], next_cursor: null };
      },
    });
    const s = model();
    render(Emails, { model: s });
    await screen.findByTestId("email-list");
    s.applyEvent({ id: 9, event: "email.changed", data: { id: "msg_1", template: "password_reset", status: "sent", attempts: 1, time: "2026-12-02T10:00:02Z" } });
    await waitFor(() => expect(screen.getByTestId("email-list").querySelector("[data-status]")?.textContent).toBe("sent"));
    expect(calls).toBe(1);
    s.applyEvent({ id: 10, event: "email.changed", data: { id: "msg_2", template: "welcome", status: "queued", attempts: 0, time: "2026-12-02T10:00:03Z" } });
    await waitFor(() => expect(screen.getByTestId("email-list").querySelectorAll("tbody tr")).toHaveLength(2), { timeout: 2000 });
  });

  it("shows the stale state while the stream is down", async () => {
    core({ email_templates: () => [], emails: () => ({ items: [mail("msg_1")], next_cursor: null }) });
    const s = model();
    s.setConn({ state: "disconnected", since: "2026-12-02T10:00:00Z", reason: "the server went away" });
    render(Emails, { model: s });
    expect((await screen.findByTestId("stale")).textContent).toContain("Not live");
  });
});

describe("resending", () => {
  it("asks first, saying to whom, then sends and opens the new message", async () => {
    const resent: unknown[] = [];
    core({
      email: () => detail(mail("msg_1")),
      resend_email: (a) => {
        resent.push(a);
        return mail("msg_9", { status: "queued", resend_of: "msg_1" });
      },
    });
    const onresent = vi.fn();
    render(MessageDetail, { model: model(), id: "msg_1", tick: 0, onopen: () => {}, onresent });
    await fireEvent.click(await screen.findByRole("button", { name: "Resend…" }));
    expect(screen.getByRole("dialog").textContent).toContain("ada@example.com");
    expect(resent).toHaveLength(0);
    await fireEvent.click(screen.getByRole("button", { name: "Resend" }));
    await waitFor(() => expect(onresent).toHaveBeenCalledWith("msg_9"));
    expect(resent[0]).toMatchObject({ emailId: "msg_1", overrideReason: null });
  });

  it("does not let support send to a suppressed address; an operator must give a reason", async () => {
    core({ email: () => detail(mail("msg_1"), { suppressed: true }), resend_email: () => mail("msg_9") });
    const first = render(MessageDetail, { model: model("support"), id: "msg_1", tick: 0, onopen: () => {}, onresent: () => {} });
    const button = (await screen.findByRole("button", { name: "Resend…" })) as HTMLButtonElement;
    expect(button.disabled).toBe(true);
    first.unmount();

    render(MessageDetail, { model: model("operator"), id: "msg_1", tick: 0, onopen: () => {}, onresent: () => {} });
    await fireEvent.click(await screen.findByRole("button", { name: "Resend…" }));
    const confirm = screen.getByRole("button", { name: "Resend" }) as HTMLButtonElement;
    expect(confirm.disabled).toBe(true);
    await fireEvent.input(screen.getByRole("textbox"), { target: { value: "the client fixed their mailbox" } });
    expect(confirm.disabled).toBe(false);
    await fireEvent.click(confirm);
    await waitFor(() =>
      expect(invoke).toHaveBeenCalledWith("resend_email", expect.objectContaining({ overrideReason: "the client fixed their mailbox" })),
    );
  });
});

describe("live-list helpers", () => {
  it("apply a change in place and merge pages without repeats", () => {
    const rows = [mail("msg_2"), mail("msg_1", { status: "queued" })];
    expect(applyChange(rows, { id: "msg_1", template: "t", status: "failed", attempts: 3, time: "x" })).toBe(false);
    expect(rows[1].status).toBe("failed");
    expect(applyChange(rows, { id: "msg_3", template: "t", status: "queued", attempts: 0, time: "x" })).toBe(true);
    expect(mergeFirstPage([mail("msg_3"), mail("msg_2")], rows).map((r) => r.id)).toEqual(["msg_3", "msg_2", "msg_1"]);
  });
});
