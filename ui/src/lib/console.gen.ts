// Generated from crates/console-core by its `typescript` unit test: do not edit.
// Regenerate with `AIRWAVE_UPDATE_TS=1 cargo test -p airwave-console-core typescript`.

export type ErrorKind = "unauthenticated" | "forbidden" | "offline" | "no_keychain" | "invalid" | "server" | "io";

export type Error = { kind: ErrorKind, message: string, 
/**
 * The server's stable problem code (e.g. `address_suppressed`), when it answered with one.
 */
code?: string, };

export type Profile = { 
/**
 * Stable id: the keychain entry is named after it.
 */
id: string, name: string, url: string, 
/**
 * `#rrggbb`.
 */
colour: string, production: boolean, 
/**
 * The local sidecar server the console starts itself.
 */
local: boolean, 
/**
 * Who is logged in (shown in the title bar), when someone is.
 */
email: string | null, 
/**
 * The server-side id of this profile's API token (for revoking it at logout).
 */
token_id: string | null, 
/**
 * When that token expires; the console renews it well before (see `session::renew_if_due`).
 */
token_expires_at: string | null, 
/**
 * A production profile over plain `http` was explicitly allowed (shown wherever the profile
 * is); without it such a profile's token and password are never sent.
 */
allow_plain_http: boolean, };

export type ProfilesView = { profiles: Array<Profile>, active: string | null, };

export type Prefs = { enabled: boolean, 
/**
 * Also notify when a component starts warning.
 */
warnings: boolean, 
/**
 * Local times `[start, end)`; may wrap midnight (22:00–07:00).
 */
quiet_hours: [string, string] | null, 
/**
 * The same component and status notify at most once per this many seconds.
 */
dedupe_secs: number, 
/**
 * The tray's "pause notifications" until this time.
 */
paused_until: string | null, };

export type Notification = { title: string, body: string, critical: boolean, 
/**
 * The view a click opens.
 */
view: string, };

export type ConnState = { "state": "connecting" } | { "state": "live" } | { "state": "disconnected", since: string, reason: string, } | { "state": "unauthorized" };

export type StreamEvent = { id: number | null, event: string, data: unknown, };

export type EmailSearch = { 
/**
 * Part of the recipient's address.
 */
to?: string, template?: string, 
/**
 * `queued`, `sent`, `delivered`, `bounced`, `complained`, `failed` or `suppressed`.
 */
status?: string, 
/**
 * Only messages recorded in the last this many hours (1 to a year); none: any time.
 */
hours?: number, 
/**
 * The previous page's `next_cursor`.
 */
cursor?: string, 
/**
 * 1 to 200 (the server's default when absent).
 */
limit?: number, };

export type BackupsSummary = { 
/**
 * One line, e.g. "newest good backup 5 h ago, drill passed, RTO 1.2 s".
 */
text: string, 
/**
 * Why the backups need someone now (the Overview's red banner); none: nothing is wrong.
 */
alarm: string | null, 
/**
 * When the newest good backup started (its data is as of then).
 */
newest_good_at: string | null, 
/**
 * A backup or a restore drill is queued or running.
 */
in_progress: boolean, };
