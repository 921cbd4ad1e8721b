//! Asset listing and full-text search behave the same on both databases.

use airwave_api::{AssetIn, AssetPatch, AssetType};
use airwave_tests::TestApp;
use serde_json::json;

fn asset(client: &str, name: &str, description: &str, t: AssetType) -> AssetIn {
    AssetIn {
        client_id: client.into(),
        type_: t,
        name: name.into(),
        metadata: json!({"description": description})
            .as_object()
            .unwrap()
            .clone(),
    }
}

fn names(page: &airwave_api::Page<airwave_api::AssetOut>) -> Vec<&str> {
    let mut v: Vec<&str> = page.items.iter().map(|a| a.name.as_str()).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn full_text_search_matches_name_and_description_with_stemming() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let c = ada.create_client("Acme").await.unwrap();
    ada.create_asset(&asset(
        &c.id,
        "Beach sunset",
        "golden hour footage of runners",
        AssetType::Video,
    ))
    .await
    .unwrap();
    ada.create_asset(&asset(
        &c.id,
        "Winter logo",
        "snowy variant of the brand mark",
        AssetType::Image,
    ))
    .await
    .unwrap();
    let r = ada
        .create_asset(&asset(
            &c.id,
            "Running shoes",
            "product shot",
            AssetType::Image,
        ))
        .await
        .unwrap();

    assert_eq!(
        names(&ada.list_assets("q=beach").await.unwrap()),
        ["Beach sunset"]
    );
    assert_eq!(
        names(&ada.list_assets("q=snowy%20brand").await.unwrap()),
        ["Winter logo"],
        "description is searched, all words required"
    );
    assert_eq!(
        names(&ada.list_assets("q=run").await.unwrap()),
        ["Running shoes"],
        "stemmed: run ~ running"
    );
    assert_eq!(
        names(&ada.list_assets("q=runner").await.unwrap()),
        ["Beach sunset"],
        "stemmed: runner ~ runners"
    );
    assert!(ada
        .list_assets("q=beach%20snowy")
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(
        ada.list_assets("q=%22%2A%29%28NEAR")
            .await
            .unwrap()
            .items
            .is_empty(),
        "query syntax is inert"
    );
    assert_eq!(
        names(&ada.list_assets("q=shoes&type=image").await.unwrap()),
        ["Running shoes"]
    );
    assert!(ada
        .list_assets("q=shoes&type=video")
        .await
        .unwrap()
        .items
        .is_empty());

    // The index follows updates and deletes.
    ada.update_asset(
        &r.id,
        &AssetPatch {
            name: Some("Trail sneakers".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(ada.list_assets("q=shoes").await.unwrap().items.is_empty());
    assert_eq!(
        names(&ada.list_assets("q=sneakers").await.unwrap()),
        ["Trail sneakers"]
    );
    ada.delete_asset(&r.id).await.unwrap();
    assert!(ada
        .list_assets("q=sneakers")
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn listing_pages_with_a_stable_cursor() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let c = ada.create_client("Acme").await.unwrap();
    for i in 0..7 {
        ada.create_asset(&asset(&c.id, &format!("a{i}"), "", AssetType::Text))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut query = format!("client_id={}&limit=3", c.id);
    loop {
        let page = ada.list_assets(&query).await.unwrap();
        seen.extend(page.items.iter().map(|a| a.name.clone()));
        match page.next_cursor {
            Some(cur) => query = format!("client_id={}&limit=3&cursor={cur}", c.id),
            None => break,
        }
    }
    assert_eq!(seen, ["a6", "a5", "a4", "a3", "a2", "a1", "a0"]);
}
