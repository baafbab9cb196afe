//! The `users` table: one row per identity-provider subject.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{outbox, DbError};
use mecapy_domain::identity::Claims;

/// A user, as the identity provider knows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    /// The identity provider's subject (`sub`).
    #[serde(rename = "subject")]
    pub keycloak_sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<&Row> for User {
    fn from(r: &Row) -> Self {
        User {
            id: r.get("id"),
            keycloak_sub: r.get("keycloak_sub"),
            email: r.get("email"),
            name: r.get("name"),
            username: r.get("username"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            last_login_at: r.get("last_login_at"),
        }
    }
}

/// At login: creates the user or refreshes its profile from the token, stamps the login and
/// records its `UserLogin` event.
pub async fn upsert_login(db: &impl GenericClient, claims: &Claims) -> Result<User, DbError> {
    let row = db
        .query_one(
            &format!(
                "WITH changed AS (
                     INSERT INTO users (keycloak_sub, email, name, username, last_login_at)
                     VALUES ($1, $2, $3, $4, now())
                     ON CONFLICT (keycloak_sub) DO UPDATE SET
                         email = COALESCE(EXCLUDED.email, users.email),
                         name = COALESCE(EXCLUDED.name, users.name),
                         username = COALESCE(EXCLUDED.username, users.username),
                         last_login_at = now(),
                         updated_at = now()
                     RETURNING *)
                 {}
                 SELECT * FROM changed",
                outbox::emit("UserLogin", "changed")
            ),
            &profile(claims),
        )
        .await?;
    Ok(User::from(&row))
}

/// The token's profile as the queries' `$1..$4`: subject, email, name, user name.
fn profile(claims: &Claims) -> [&(dyn tokio_postgres::types::ToSql + Sync); 4] {
    [
        &claims.sub,
        &claims.email,
        &claims.name,
        &claims.preferred_username,
    ]
}

/// On an authenticated request: the caller's row, created from the token if this is the first
/// request of a user who never went through `callback` (one round trip, no write when it exists).
pub async fn ensure(db: &impl GenericClient, claims: &Claims) -> Result<User, DbError> {
    let row = db
        .query_one(
            "WITH inserted AS (
                 INSERT INTO users (keycloak_sub, email, name, username)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (keycloak_sub) DO NOTHING
                 RETURNING *
             )
             SELECT * FROM inserted
             UNION ALL
             SELECT * FROM users WHERE keycloak_sub = $1
             LIMIT 1",
            &profile(claims),
        )
        .await?;
    Ok(User::from(&row))
}
