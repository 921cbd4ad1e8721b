//! The backup bucket on s3s-fs: every object written reaches it through the `storage.mirror` job,
//! `storage verify-backup` finds a copy that is missing or differs, and a removal reaches the copy
//! after the keep-deleted period.

use crate::storage::{as_pairs, s3_bucket};
use airwave_server::storage::{BlobStore as _, StorageError};
use airwave_tests::{eventually, TestApp};

/// A server on a fresh bucket with a fresh backup bucket (and `extra` settings), a member's asset
/// uploaded, and its copy in the backup bucket. `None` without s3s-fs.
struct Mirrored {
    app: TestApp,
    store: airwave_server::storage::s3::S3Store,
    backup: airwave_server::storage::s3::S3Store,
    env: Vec<(&'static str, String)>,
    ada: airwave_api::ApiClient,
    asset_id: String,
    key: String,
}

async fn mirrored(extra: &[(&'static str, &str)]) -> Option<Mirrored> {
    let (store, mut env) = s3_bucket("primary").await?;
    let (backup, _) = s3_bucket("backup").await?;
    env.push(("AWS_S3_BACKUP_BUCKET", backup.bucket().to_owned()));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let app = TestApp::spawn_with(&as_pairs(&env)).await;
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme").await.unwrap();
    let asset = app
        .image_asset(&ada, &client.id, "logo", crate::render::ONE_RED_PIXEL)
        .await;
    let key = app
        .db
        .text("SELECT storage_key FROM assets WHERE id = $1", &asset.id)
        .await
        .expect("the asset's file");
    eventually("the upload to reach the backup bucket", || async {
        backup.head(&key).await.ok()
    })
    .await;
    Some(Mirrored {
        app,
        store,
        backup,
        env,
        ada,
        asset_id: asset.id,
        key,
    })
}

#[tokio::test]
async fn objects_reach_the_backup_bucket_and_verify_backup_finds_what_differs() {
    let Some(Mirrored {
        app,
        store,
        backup,
        env,
        ada,
        asset_id,
        key,
    }) = mirrored(&[("AIRWAVE_BACKUP_BUCKET_KEEP_DELETED_HOURS", "0")]).await
    else {
        return;
    };
    let original = store.get_bounded(&key, 1 << 20).await.unwrap();
    assert_eq!(backup.get_bounded(&key, 1 << 20).await.unwrap(), original);
    // Temporary objects stay out of it (the health probe writes under tmp/).
    app.api.health().await.unwrap();
    assert!(backup.list("tmp/", None, 10).await.unwrap().is_empty());

    let verify = |deep: bool| {
        let (app, env) = (&app, &env);
        async move {
            let args: &[&str] = if deep {
                &["storage", "verify-backup", "--deep"]
            } else {
                &["storage", "verify-backup"]
            };
            let out = app.cli(args, &as_pairs(env), None).await;
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };
    let (ok, text) = verify(false).await;
    assert!(ok, "{text}");
    for line in [
        "store: 1 objects",
        "backup: 1 objects",
        "missing in backup: 0",
        "content differs: 0",
        "verify-backup: OK",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    let (ok, text) = verify(true).await;
    assert!(
        ok && text.contains("compared: 0 by ETag, 1 by sha256"),
        "{text}"
    );

    // A copy of the same size with one byte changed.
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    backup.put(&key, bad, "image/png").await.unwrap();
    let (ok, text) = verify(false).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("content differs: 1 ({key})")),
        "{text}"
    );
    assert!(text.contains("1 with other contents"), "{text}");
    // A missing copy.
    backup.delete(&key).await.unwrap();
    let (ok, text) = verify(false).await;
    assert!(
        !ok && text.contains(&format!("missing in backup: 1 ({key})")),
        "{text}"
    );
    // --copy-missing puts it back, and the check after says so.
    let out = app
        .cli(
            &["storage", "verify-backup", "--copy-missing"],
            &as_pairs(&env),
            None,
        )
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("copied: 1 object(s)") && text.contains("verify-backup: OK"),
        "{text}"
    );
    assert_eq!(backup.get_bounded(&key, 1 << 20).await.unwrap(), original);

    // Put right, then the asset removed: its copy goes once the keep-deleted period (0 h here)
    // has passed.
    ada.delete_asset(&asset_id).await.unwrap();
    eventually("the removal to reach the backup bucket", || async {
        matches!(backup.head(&key).await, Err(StorageError::NotFound(_))).then_some(())
    })
    .await;
    let (ok, text) = verify(false).await;
    assert!(ok && text.contains("store: 0 objects"), "{text}");
    assert!(backup.list("tmp/", None, 10).await.unwrap().is_empty());
}

/// With the default keep-deleted period, a removed asset's copy stays: its removal job waits a
/// week, on the storage queue.
#[tokio::test]
async fn a_removed_objects_copy_is_kept_for_the_keep_deleted_period() {
    use airwave_api::Role;
    let Some(Mirrored {
        app,
        backup,
        ada,
        asset_id,
        key,
        ..
    }) = mirrored(&[]).await
    else {
        return;
    };
    ada.delete_asset(&asset_id).await.unwrap();
    let (_, ops) = app.user_with_role("ops@example.com", Role::Operator).await;
    let delayed = ops.list_jobs("storage", "state=delayed").await.unwrap();
    let removal = delayed
        .items
        .iter()
        .find(|j| j.payload["key"] == key.as_str() && j.payload["removed"] == true)
        .unwrap_or_else(|| panic!("no parked removal in {:#?}", delayed.items));
    let ahead = removal.run_at - chrono::Utc::now();
    assert!(ahead > chrono::Duration::hours(167), "{ahead}");
    assert!(backup.head(&key).await.is_ok(), "the copy was kept");
}

#[tokio::test]
async fn a_backup_bucket_needs_s3_and_another_bucket() {
    let app = TestApp::spawn().await;
    let out = app
        .cli(
            &["config", "check"],
            &[("AWS_S3_BACKUP_BUCKET", "copies")],
            None,
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AWS_S3_BACKUP_BUCKET needs the S3 backend"),
        "{err}"
    );
    let out = app
        .cli(
            &["config", "check"],
            &[
                ("AWS_S3_BUCKET", "media"),
                ("AWS_S3_BACKUP_BUCKET", "media"),
            ],
            None,
        )
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be another bucket"), "{err}");
    let out = app.cli(&["storage", "verify-backup"], &[], None).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backup bucket"));
}
