//! `POST /auth/callback {code, code_verifier, state}`: checks the state, exchanges the code at
//! the provider's token endpoint with the PKCE verifier, validates the access token, and creates
//! or updates the user row.

use std::convert::Infallible;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mecapy_shared::api::{CallbackRequest, CallbackResponse};
use mecapy_shared::auth::state::{self as login_state, StateError};
use mecapy_shared::auth::{pkce, AuthError};
use mecapy_shared::db::{self, DbError};
use mecapy_shared::http::{self, ApiError};
use mecapy_shared::AppState;

pub async fn handle(state: AppState, req: Request) -> Result<Response<Body>, Infallible> {
    http::serve(state, req, "callback", callback).await
}

async fn callback(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, Method::POST)?;
    let body: CallbackRequest = http::json_body(&req, state.edge.max_json_bytes)?;
    if body.code.is_empty() || body.code.len() > 4096 {
        return Err(ApiError::bad_field("code", "code is empty or too long"));
    }
    if !pkce::is_valid_verifier(&body.code_verifier) {
        return Err(ApiError::bad_field(
            "code_verifier",
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        ));
    }
    let login = login_state::verify(
        &state.login()?.state_secret,
        &body.state,
        &body.code_verifier,
    )
    .map_err(|e| match e {
        StateError::VerifierMismatch => ApiError::bad_field("code_verifier", e.to_string()),
        other => ApiError::bad_field("state", other.to_string()),
    })?;

    let tokens = state
        .oidc
        .exchange_code(&body.code, &body.code_verifier, &login.redirect_uri)
        .await?;
    let claims = state
        .tokens
        .validate(&tokens.access_token)
        .await
        .map_err(|e| match e {
            AuthError::InvalidToken(why) => ApiError::Unauthorized {
                detail: format!("the provider's access token was refused: {why}"),
                invalid: true,
            },
            other => other.into(),
        })?;

    let client = state.db.get().await.map_err(DbError::from)?;
    let user = db::users::upsert_login(&**client, &claims).await?;
    drop(client);
    // The login recorded its UserLogin event: send it now (what fails stays in the outbox).
    state.publish_events().await;
    if let Some(meta) = http::RequestMeta::of(&req) {
        meta.set_user(user.id.to_string());
    }
    tracing::info!(user_id = %user.id, "user logged in");

    Ok(http::json(
        StatusCode::OK,
        &CallbackResponse {
            access_token: tokens.access_token,
            token_type: tokens.token_type,
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token,
            user,
        },
    ))
}
