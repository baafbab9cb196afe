//! The migrate step on the REAL PostgreSQL: idempotent, and an edited applied migration is refused.

use mecapy_shared::db::migrate;
use mecapy_testkit::TestContext;

#[tokio::test]
async fn rerunning_migrations_is_a_no_op() {
    let ctx = TestContext::new().await;
    let mut client = ctx.db().await;
    let report = migrate::run(&mut client).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already, migrate::MIGRATIONS.len());
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "event_outbox",
            "files",
            "jobs",
            "orphan_objects",
            "schema_migrations",
            "tools",
            "upload_rules",
            "users",
            "webhook_deliveries"
        ]
    );
}

#[tokio::test]
async fn edited_applied_migration_is_a_clear_error() {
    let ctx = TestContext::new().await;
    let mut client = ctx.db().await;
    let (name, sql) = migrate::MIGRATIONS[1];
    let edited = format!("{sql}\n-- edited afterwards\n");
    let mut list: Vec<(&str, &str)> = migrate::MIGRATIONS.to_vec();
    list[1] = (name, &edited);
    let err = migrate::run_list(&mut client, &list)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(name) && err.contains("edited"), "{err}");
}

#[tokio::test]
async fn new_migration_is_applied_once_and_recorded() {
    let ctx = TestContext::new().await;
    let mut client = ctx.db().await;
    let mut list: Vec<(&str, &str)> = migrate::MIGRATIONS.to_vec();
    list.push(("9999_probe.sql", "CREATE TABLE probe (id int);"));
    let first = migrate::run_list(&mut client, &list).await.unwrap();
    assert_eq!(first.applied, ["9999_probe.sql"]);
    let again = migrate::run_list(&mut client, &list).await.unwrap();
    assert!(again.applied.is_empty());
    let checksum: String = client
        .query_one(
            "SELECT checksum FROM schema_migrations WHERE version = 9999",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(checksum, migrate::checksum("CREATE TABLE probe (id int);"));
}

#[tokio::test]
async fn failing_migration_leaves_nothing_half_applied() {
    let ctx = TestContext::new().await;
    let mut client = ctx.db().await;
    let mut list: Vec<(&str, &str)> = migrate::MIGRATIONS.to_vec();
    list.push((
        "9998_broken.sql",
        "CREATE TABLE half (id int); SELECT * FROM missing_table;",
    ));
    let err = migrate::run_list(&mut client, &list)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("9998_broken.sql"), "{err}");
    let half: Option<String> = client
        .query_one("SELECT to_regclass('half')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(half, None);
}
