//! Campaign exports: the approved renders and a manifest in one zip, built by a worker, stored on
//! either backend, downloaded through a signed link and read back with the `zip` crate (not the
//! writer's own code). The renders are the worker's own.

use airwave_api::{
    ApiClient, ApprovalDecisionIn, ApprovalIn, CampaignIn, Decision, ExecutionIn, ExportOut,
    ExportStatus, MatrixIn, Role,
};
use airwave_server::storage::fs::FolderStore;
use airwave_server::storage::BlobStore;
use airwave_tests::{eventually, TestApp};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::io::Read as _;

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

struct Campaign {
    ada: ApiClient,
    client_id: String,
    campaign_id: String,
    /// (execution id, its render's bytes), approved ones first.
    approved: Vec<(String, Vec<u8>)>,
    rejected: String,
    /// Every execution's render key, in creation order.
    keys: Vec<String>,
}

/// A campaign with three executions rendered by the worker: two approved (one of them first
/// rejected, then approved on a second request), one approved and then rejected.
async fn campaign(app: &TestApp, store: &dyn BlobStore) -> Campaign {
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme Shoes").await.unwrap();
    let campaign = ada
        .create_campaign(&CampaignIn {
            client_id: client.id.clone(),
            name: "Spring Sale / 2027".into(),
            description: None,
        })
        .await
        .unwrap();
    let matrix = ada
        .create_matrix(
            &campaign.id,
            &MatrixIn {
                name: "Square".into(),
                template: json!({"width": 64, "height": 64, "layers": []})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        )
        .await
        .unwrap();
    let mut executions = Vec::new();
    for n in 0..3u8 {
        let e = ada
            .create_execution(
                &matrix.id,
                &ExecutionIn {
                    params: json!({"n": n}).as_object().unwrap().clone(),
                },
            )
            .await
            .unwrap();
        executions.push(e.id);
    }
    // The worker renders them; the archive must hold exactly what it stored.
    let mut rendered = Vec::new();
    for id in executions {
        let e = airwave_tests::finished_execution(&ada, &id).await;
        let key = e
            .output_key
            .unwrap_or_else(|| panic!("{id} rendered: {:?}", e.error));
        let bytes = store.get_bounded(&key, 1 << 30).await.unwrap();
        rendered.push((id, key, bytes));
    }
    let mut executions: Vec<(String, Vec<u8>)> = rendered
        .iter()
        .map(|(id, _, b)| (id.clone(), b.clone()))
        .collect();
    let decide = |execution: String, decisions: Vec<Decision>| {
        let (ada, api) = (ada.clone(), app.api.clone());
        async move {
            for d in decisions {
                let created = ada
                    .request_approval(&execution, &ApprovalIn::default())
                    .await
                    .unwrap();
                api.decide_approval(&ApprovalDecisionIn {
                    token: created.token,
                    decision: d,
                    comment: Some("ok".into()),
                })
                .await
                .unwrap();
            }
        }
    };
    decide(executions[0].0.clone(), vec![Decision::Approve]).await;
    decide(
        executions[1].0.clone(),
        vec![Decision::Reject, Decision::Approve],
    )
    .await;
    decide(
        executions[2].0.clone(),
        vec![Decision::Approve, Decision::Reject],
    )
    .await;
    let rejected = executions.pop().unwrap().0;
    Campaign {
        ada,
        keys: rendered.into_iter().map(|(_, k, _)| k).collect(),
        client_id: client.id,
        campaign_id: campaign.id,
        approved: executions,
        rejected,
    }
}

async fn until_done(ada: &ApiClient, campaign: &str, id: &str) -> ExportOut {
    eventually("the export to finish", || async {
        let e = ada.get_export(campaign, id).await.unwrap();
        matches!(e.status, ExportStatus::Ready | ExportStatus::Failed).then_some(e)
    })
    .await
}

/// Requests, builds (with a worker), downloads and reads back an export.
async fn exports_the_approved_renders(app: &TestApp, store: &dyn BlobStore) {
    let c = campaign(app, store).await;
    let (_, op) = app.user_with_role("olga@example.com", Role::Operator).await;
    assert!(op.queue_action("cleanup", "pause").await.unwrap().paused);
    let queued = c.ada.export_campaign(&c.campaign_id).await.unwrap();
    assert_eq!(queued.status, ExportStatus::Queued);
    assert_eq!(queued.renders, Some(2));
    assert!(queued.download.is_none());

    // One at a time per campaign (the cleanup queue is paused, so it is still queued).
    // (Only the exports are compared: the worker is live, and writes events of its own.)
    let again = c.ada.export_campaign(&c.campaign_id).await.unwrap_err();
    assert_eq!(again.code(), Some("export_running"), "{again}");
    assert_eq!(
        app.db.count("exports").await,
        1,
        "a refused request writes nothing"
    );

    assert!(!op.queue_action("cleanup", "resume").await.unwrap().paused);
    let done = until_done(&c.ada, &c.campaign_id, &queued.id).await;
    assert_eq!(done.status, ExportStatus::Ready, "{:?}", done.error);
    assert_eq!((done.progress, done.renders), (100, Some(2)));
    let link = done.download.expect("a ready export has a link");
    let got = reqwest::get(&link.url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()["content-type"].to_str().unwrap(),
        "application/zip"
    );
    let disposition = got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with(&format!(
            "attachment; filename=\"Spring-Sale-2027-{}.zip\"",
            done.id
        )),
        "{disposition}"
    );
    let bytes = got.bytes().await.unwrap().to_vec();
    assert_eq!(Some(bytes.len() as i64), done.size_bytes);
    assert_eq!(Some(sha(&bytes)), done.sha256);

    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
    let mut names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    names.sort();
    let mut expected: Vec<String> = c
        .approved
        .iter()
        .map(|(id, _)| format!("renders/{id}.png"))
        .chain(["manifest.json".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "the rejected render ({}) is left out",
        c.rejected
    );
    for (id, render) in &c.approved {
        let mut f = zip.by_name(&format!("renders/{id}.png")).unwrap();
        let mut inside = Vec::new();
        f.read_to_end(&mut inside).unwrap();
        assert!(
            inside == *render,
            "the render of {id} is in the archive unchanged"
        );
    }
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["format"], "airwave-export/1");
    assert_eq!(manifest["export_id"], done.id);
    assert_eq!(manifest["campaign"]["id"], c.campaign_id);
    assert_eq!(manifest["campaign"]["client_id"], c.client_id);
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for (f, (id, render)) in files.iter().zip(&c.approved) {
        assert_eq!(f["execution_id"], *id);
        assert_eq!(f["path"], format!("renders/{id}.png"));
        assert_eq!(f["size"], render.len());
        assert_eq!(f["sha256"], sha(render));
        assert_eq!(f["approval"]["comment"], "ok");
        assert!(f["approval"]["id"].as_str().unwrap().starts_with("apr_"));
    }

    // Completion was announced, once.
    assert_eq!(
        app.db
            .count_where(
                "events",
                &format!("type = 'export.ready' AND subject_id = '{}'", done.id)
            )
            .await,
        1
    );
    // And a new export may now be asked for.
    let next = c.ada.export_campaign(&c.campaign_id).await.unwrap();
    assert_ne!(next.id, done.id);
    let listed = c.ada.list_exports(&c.campaign_id).await.unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn a_campaign_export_on_the_folder_holds_its_approved_renders_and_manifest() {
    let app = TestApp::spawn().await;
    let store = FolderStore::new(app.data_dir().join("blobs"));
    exports_the_approved_renders(&app, &store).await;
}

#[tokio::test]
async fn a_campaign_export_on_s3_holds_its_approved_renders_and_manifest() {
    let Some((store, env)) = crate::storage::s3_bucket("exports").await else {
        return;
    };
    let app = TestApp::spawn_with(&crate::storage::as_pairs(&env)).await;
    exports_the_approved_renders(&app, &store).await;
}

#[tokio::test]
async fn exports_refuse_what_they_cannot_do_and_store_nothing_half_written() {
    let app = TestApp::spawn().await;
    let store = FolderStore::new(app.data_dir().join("blobs"));
    let c = campaign(&app, &store).await;

    // Someone else's campaign does not exist for them; support staff may look but not export.
    let (_, eve) = app.member("eve@example.com").await;
    let err = eve.export_campaign(&c.campaign_id).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let (_, support) = app.user_with_role("sam@example.com", Role::Support).await;
    let err = support.export_campaign(&c.campaign_id).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // Ids are checked for their kind.
    let err = c
        .ada
        .export_campaign("exe_01jz0000000000000000000000")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(app.db.count("exports").await, 0);

    // A campaign without approved renders has nothing to export.
    let empty = c
        .ada
        .create_campaign(&CampaignIn {
            client_id: c.client_id.clone(),
            name: "Empty".into(),
            description: None,
        })
        .await
        .unwrap();
    let err = c.ada.export_campaign(&empty.id).await.unwrap_err();
    assert_eq!(err.code(), Some("nothing_to_export"), "{err}");
    assert_eq!(app.db.count("exports").await, 0);

    // A render that vanished from storage fails the export, with the reason, and no archive.
    let (gone, _) = &c.approved[1];
    store.delete(&c.keys[1]).await.unwrap();
    let queued = c.ada.export_campaign(&c.campaign_id).await.unwrap();
    let failed = until_done(&c.ada, &c.campaign_id, &queued.id).await;
    assert_eq!(failed.status, ExportStatus::Failed);
    let why = failed.error.unwrap_or_default();
    assert!(why.contains(gone) && why.contains("missing"), "{why}");
    assert!(failed.download.is_none());
    let archives = store
        .list(&format!("clients/{}/exports/", c.client_id), None, 10)
        .await
        .unwrap();
    assert!(archives.is_empty(), "{archives:?}");
    assert_eq!(
        app.db.count_where("events", "type = 'export.ready'").await,
        0
    );
    // An unknown export of a real campaign.
    let err = c
        .ada
        .get_export(&c.campaign_id, "exp_01jz0000000000000000000000")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[tokio::test]
async fn an_export_over_its_size_limit_fails_and_stores_nothing() {
    let app = TestApp::spawn_with(&[("AIRWAVE_EXPORT_MAX_GIB", "1")]).await;
    let store = FolderStore::new(app.data_dir().join("blobs"));
    let c = campaign(&app, &store).await;
    // A render bigger than the limit (a sparse file: the size is what counts).
    let path = app.data_dir().join("blobs").join(&c.keys[0]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    let queued = c.ada.export_campaign(&c.campaign_id).await.unwrap();
    let failed = until_done(&c.ada, &c.campaign_id, &queued.id).await;
    assert_eq!(failed.status, ExportStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("AIRWAVE_EXPORT_MAX_GIB"),
        "{:?}",
        failed.error
    );
    let archives = store
        .list(&format!("clients/{}/exports/", c.client_id), None, 10)
        .await
        .unwrap();
    assert!(archives.is_empty(), "{archives:?}");
}
