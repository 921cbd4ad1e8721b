//! Bad input on every route answers 4xx problem+json and changes nothing. The routes come from
//! the OpenAPI document, so a new route is covered without touching this file.

use airwave_api::Role;
use airwave_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The path with every `{param}` replaced by `with`.
pub fn fill_path(path: &str, with: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                with
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The path with every `{param}` replaced by a well-formed id of the right kind for nothing.
pub fn fill_path_with_ids(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        if seg.starts_with('{') {
            let prefix = match (*seg, i.checked_sub(1).map(|j| segs[j])) {
                ("{user_id}", _) => "usr",
                ("{upload_id}", _) => "upl",
                (_, Some("users")) => "usr",
                (_, Some("clients")) => "cli",
                (_, Some("assets")) => "ast",
                (_, Some("campaigns")) => "cmp",
                (_, Some("matrices")) => "mtx",
                (_, Some("executions")) => "exe",
                (_, Some("approvals")) => "apr",
                (_, Some("tokens")) => "tok",
                (_, Some("invites")) => "inv",
                (_, Some("jobs")) => "job",
                (_, Some("emails")) => "msg",
                (_, Some("uploads")) => "upl",
                (_, Some("backups")) => "bkp",
                (_, Some("drills")) => "drl",
                (_, Some("exports")) => "exp",
                (_, Some("endpoints")) => "whe",
                (_, Some("messages")) => "whm",
                (_, Some("recoveries")) => "whr",
                // A signed link's token that is well-formed and not ours.
                ("{token}", Some("blobs")) => {
                    out.push("eyJrIjoieCJ9.AAAA".to_string());
                    continue;
                }
                // An address that is well-formed and on no list.
                ("{address}", Some("suppressions")) => {
                    out.push("nobody%40example.com".to_string());
                    continue;
                }
                // A template name that is well-formed and names nothing.
                ("{name}", Some("templates")) => {
                    out.push("no_such_template".to_string());
                    continue;
                }
                ("{queue}", _) | ("{name}", Some("consumers")) => {
                    out.push("render".to_string());
                    continue;
                }
                (_, before) => {
                    panic!("no id kind known for {seg} after {before:?} in {path}; add it here")
                }
            };
            out.push(format!("{prefix}_01jz0000000000000000000000"));
        } else {
            out.push(seg.to_string());
        }
    }
    out.join("/")
}

struct Case {
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    what: &'static str,
    /// The statuses allowed; any 4xx when empty.
    expect: &'static [StatusCode],
}

fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((
                method.to_uppercase().parse().unwrap(),
                path.clone(),
                op.clone(),
            ));
        }
    }
    ops
}

/// A schema, with a `$ref` to `components/schemas` followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

fn is_numeric(schema: &Value) -> bool {
    let t = &schema["type"];
    ["integer", "number"]
        .iter()
        .any(|n| t == *n || t.as_array().is_some_and(|a| a.iter().any(|x| x == *n)))
}

/// An operation's numeric inputs: `("query" | "body", name, schema)`.
fn numeric_inputs(doc: &Value, op: &Value) -> Vec<(&'static str, String, Value)> {
    let mut out = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let schema = resolve(doc, &p["schema"]);
        if p["in"] == "query" && is_numeric(schema) {
            out.push((
                "query",
                p["name"].as_str().unwrap().to_owned(),
                schema.clone(),
            ));
        }
    }
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    for (name, prop) in resolve(doc, body)["properties"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let schema = resolve(doc, prop);
        if is_numeric(schema) {
            out.push(("body", name.clone(), schema.clone()));
        }
    }
    out
}

/// Values just past a numeric schema's declared bounds, and past every integer type.
fn out_of_range(schema: &Value) -> Vec<String> {
    let mut v = vec![
        "18446744073709551616".to_string(),
        "-9223372036854775809".to_string(),
    ];
    if let Some(max) = schema["maximum"].as_i64() {
        v.push((i128::from(max) + 1).to_string());
    }
    if let Some(min) = schema["minimum"].as_i64() {
        v.push((i128::from(min) - 1).to_string());
    }
    v
}

#[tokio::test]
async fn every_numeric_input_declares_its_bounds_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .http()
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut unbounded = Vec::new();
    let mut seen = Vec::new();
    for (method, path, op) in operations(&doc) {
        for (place, name, schema) in numeric_inputs(&doc, &op) {
            seen.push(format!("{method} {path} {place} `{name}`"));
            if schema.get("maximum").is_none() && schema.get("minimum").is_none() {
                unbounded.push(format!("{method} {path} {place} `{name}`"));
            }
        }
    }
    assert!(
        unbounded.is_empty(),
        "numeric inputs without bounds: {unbounded:#?}"
    );
}

fn cases(doc: &Value) -> Vec<Case> {
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes();
    let mut out = Vec::new();
    for (method, path, op) in operations(doc) {
        let html = path == "/approve";
        let well_formed = fill_path_with_ids(&path);
        if path.contains('{') {
            // A queue is named, not an id: only malformed names are bad there.
            let bad: &[&str] = if path.contains("{queue}") {
                &["%00", "a%20b", "..%2f..%2fetc"]
            } else {
                &[
                    "bogus",
                    "usr_01jz0000000000000000000000x",
                    "%00",
                    "..%2f..%2fetc",
                ]
            };
            for bad_id in bad.iter().copied() {
                out.push(Case {
                    method: method.clone(),
                    path: fill_path(&path, bad_id),
                    content_type: "application/json",
                    body: b"{}".to_vec(),
                    what: "invalid id",
                    expect: &[],
                });
            }
        }
        // A provider's signed webhook (inbound) checks its signature before it reads the body:
        // none here. (The rest of `/api/webhooks/…` is our outgoing webhooks' API.)
        let signed = path == "/api/webhooks/resend";
        if signed {
            for (body, what, expect) in [
                (
                    b"{bad".to_vec(),
                    "unsigned malformed JSON",
                    &[StatusCode::UNAUTHORIZED][..],
                ),
                (b"{}".to_vec(), "unsigned", &[StatusCode::UNAUTHORIZED][..]),
                (
                    huge.clone(),
                    "huge body",
                    &[StatusCode::PAYLOAD_TOO_LARGE][..],
                ),
            ] {
                out.push(Case {
                    method: method.clone(),
                    path: well_formed.clone(),
                    content_type: "application/json",
                    body,
                    what,
                    expect,
                });
            }
        }
        // JSON bodies (file bodies — uploads, tus PATCH — have their own tests in uploads.rs).
        let takes_json = op["requestBody"]["content"]
            .get("application/json")
            .is_some();
        if takes_json && !html && !signed {
            let json = "application/json";
            // serde_json calls some type mismatches (a number for an enum) syntax errors: 400 or 422.
            const SHAPE: &[StatusCode] =
                &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY];
            let cases: [(Vec<u8>, &'static str, &'static [StatusCode]); 6] = [
                (b"{bad".to_vec(), "malformed JSON", &[StatusCode::BAD_REQUEST]),
                (b"".to_vec(), "empty body", &[StatusCode::BAD_REQUEST]),
                (b"[1,2,3]".to_vec(), "wrong type", SHAPE),
                (br#"{"name": 12, "email": [], "password": {}, "token": 1, "client_id": false, "role": "god", "decision": 3}"#.to_vec(), "wrong field types", SHAPE),
                (br#"{"zzz_unknown": 1}"#.to_vec(), "unknown field", &[StatusCode::UNPROCESSABLE_ENTITY]),
                (huge.clone(), "huge body", &[StatusCode::PAYLOAD_TOO_LARGE]),
            ];
            for (body, what, expect) in cases {
                out.push(Case {
                    method: method.clone(),
                    path: well_formed.clone(),
                    content_type: json,
                    body,
                    what,
                    expect,
                });
            }
            out.push(Case {
                method: method.clone(),
                path: well_formed.clone(),
                content_type: "text/plain",
                body: b"hello".to_vec(),
                what: "not JSON",
                expect: &[StatusCode::UNSUPPORTED_MEDIA_TYPE],
            });
        }
        if html {
            out.push(Case {
                method: method.clone(),
                path: "/approve?token=forged".into(),
                content_type: "application/x-www-form-urlencoded",
                body: b"token=x&decision=maybe".to_vec(),
                what: "bad form",
                expect: &[],
            });
        }
        // Every numeric input, query parameter or body field, past each bound it declares and
        // past what any integer type holds: a 4xx problem, never a panic in time arithmetic.
        for (place, name, schema) in numeric_inputs(doc, &op) {
            for value in out_of_range(&schema) {
                let (path, body) = match place {
                    "query" => (format!("{well_formed}?{name}={value}"), Vec::new()),
                    _ => (
                        well_formed.clone(),
                        format!("{{\"{name}\": {value}}}").into_bytes(),
                    ),
                };
                out.push(Case {
                    method: method.clone(),
                    path,
                    content_type: "application/json",
                    body,
                    what: "number out of range",
                    expect: &[],
                });
            }
        }
        if method == Method::GET
            && op.get("parameters").is_some_and(|p| {
                p.as_array()
                    .is_some_and(|a| a.iter().any(|x| x["in"] == "query"))
            })
        {
            for (q, what) in [
                ("limit=abc", "non-numeric limit"),
                ("limit=100000", "limit out of range"),
                ("cursor=garbage", "garbage cursor"),
                ("client_id=nope&status=bogus&type=bogus", "bad filters"),
                ("token=", "empty token"),
            ] {
                out.push(Case {
                    method: method.clone(),
                    path: format!("{well_formed}?{q}"),
                    content_type: "application/json",
                    body: vec![],
                    what,
                    expect: &[],
                });
            }
        }
    }
    out
}

async fn sweep(app: &TestApp, client: &reqwest::Client, token: &str) -> usize {
    let doc: Value = client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = cases(&doc);
    for c in &all {
        let url = format!("{}{}", app.base.as_str().trim_end_matches('/'), c.path);
        let send = || {
            let mut req = client
                .request(c.method.clone(), &url)
                .header("content-type", c.content_type)
                .bearer_auth(token);
            if !c.body.is_empty() {
                req = req.body(c.body.clone());
            }
            req.send()
        };
        // A server answers 413 from the declared length and closes the connection without
        // reading the rest; a client still writing the body can see the close before the answer.
        // That race is the client's, so only a huge body is sent again (on a new connection).
        let mut resp = send().await;
        for _ in 0..4 {
            match &resp {
                Err(e) if c.what == "huge body" && (e.is_request() || e.is_body()) => {
                    resp = send().await;
                }
                _ => break,
            }
        }
        let resp = resp.unwrap_or_else(|e| panic!("{} {} ({}): {e}", c.method, c.path, c.what));
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.text().await.unwrap();
        assert!(
            status.is_client_error(),
            "{} {} ({}): {status} {body}",
            c.method,
            c.path,
            c.what
        );
        assert!(
            c.expect.is_empty() || c.expect.contains(&status),
            "{} {} ({}): {status}, expected {:?}: {body}",
            c.method,
            c.path,
            c.what,
            c.expect
        );
        // (A HEAD answer has no body: its status and headers are the answer.)
        if status.is_client_error() && !c.path.starts_with("/approve") && c.method != Method::HEAD {
            assert_eq!(
                ct, "application/problem+json",
                "{} {} ({})",
                c.method, c.path, c.what
            );
            let p: airwave_api::Problem = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{} {}: not a problem ({e}): {body}", c.method, c.path));
            assert_eq!(p.status, status.as_u16());
            assert!(!p.code.is_empty() && p.request_id.is_some());
        }
    }
    all.len()
}

#[tokio::test]
async fn bad_input_on_every_route_is_a_4xx_problem_and_changes_nothing() {
    // Resend's webhook is live (its signature is its credential: unsigned input is a 401).
    let app = TestApp::spawn_with(&[(
        "RESEND_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )])
    .await;
    let (_, _admin) = app.user_with_role("root@example.com", Role::Admin).await;
    let admin_token = app.login("root@example.com").await.token;
    let (_, member) = app.member("ada@example.com").await;
    let member_token = app.login("ada@example.com").await.token;
    let execution = crate::journey::setup_execution(&member).await;
    // Let the worker finish rendering it, so the snapshot only moves if a request writes.
    airwave_tests::finished_execution(&member, &execution).await;
    // The render's completion mail is recorded by an event consumer: let it land first.
    let email = app
        .db
        .text(
            "SELECT u.email FROM executions e JOIN users u ON u.id = e.created_by WHERE e.id = $1",
            execution.as_str(),
        )
        .await
        .unwrap();
    app.mail_to(&email, "render_complete")
        .await
        .expect("the render-complete mail");
    app.settle_mail().await;
    let before = app.db.snapshot().await;
    // A server answers 413 before reading a huge body and closes the connection: no pooling.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let n = sweep(&app, &http, &admin_token).await;
    sweep(&app, &http, &member_token).await;
    assert!(n > 150, "only {n} cases");
    assert_eq!(
        app.db.snapshot().await,
        before,
        "a rejected request wrote something"
    );
}

#[tokio::test]
async fn wrong_methods_and_unknown_routes_are_problems() {
    let app = TestApp::spawn().await;
    let resp = app
        .http()
        .put(app.url("/api/clients"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: airwave_api::Problem = resp.json().await.unwrap();
    assert_eq!(p.code, "method_not_allowed");
}

#[tokio::test]
async fn valid_ids_of_nothing_are_404_and_ids_of_another_kind_are_400() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    assert_eq!(
        ada.get_client("cli_01jz0000000000000000000000")
            .await
            .unwrap_err()
            .code(),
        Some("not_found")
    );
    assert_eq!(
        ada.get_client("usr_01jz0000000000000000000000")
            .await
            .unwrap_err()
            .code(),
        Some("invalid_id")
    );
}
