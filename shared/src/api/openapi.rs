//! The OpenAPI 3.1 document of the API. Its schemas are derived (utoipa) from the wire types in
//! [`crate::api`] and the rows they embed; its operations are written here, one table row per
//! route, naming which of those types each reads and answers and which errors it can give.
//! The committed `openapi.yaml` is this document: a test fails when they differ
//! (`make openapi` writes it again).

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::*;
use crate::http::{PROBLEM_JSON, VENDOR_JSON};
use crate::jobs::{Input, JobStatus};
use mecapy_domain::job::Limits;

#[derive(OpenApi)]
#[openapi(components(schemas(
    LoginRequest,
    LoginResponse,
    CallbackRequest,
    CallbackResponse,
    User,
    FileRow,
    FileView,
    UploadForm,
    PresignRequest,
    PresignResponse,
    Page<FileRow>,
    crate::jobs::SubmitRequest,
    SubmitAccepted,
    JobView,
    JobLinks,
    Page<Job>,
    Job,
    crate::rules::RuleRequest,
    crate::db::rules::Rule,
    Page<crate::db::rules::Rule>,
    WebhookSecret,
    crate::db::webhooks::WebhookStatus,
    JobStatus,
    Limits,
    Input,
    JobOutput,
    Finding,
    Problem,
)))]
struct Schemas;

/// Who answers a route, how it is reached and what it may answer besides its success.
struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    /// A bearer token is required.
    auth: bool,
    parameters: &'static [Param],
    body: Body,
    success: Success,
    /// The problem+json statuses it can answer (401 is added for `auth`, 406 and 503 to all
    /// but the documentation's own routes).
    errors: &'static [u16],
    /// Operations its success leads to, each given the `id` its answer holds at this pointer.
    links: &'static [(&'static str, &'static str)],
}

#[derive(Clone, Copy)]
enum Param {
    Id,
    Limit,
    Offset,
}

#[derive(Clone, Copy)]
enum Body {
    None,
    /// A JSON object of this schema; `required: false` lets an empty body stand for `{}`.
    Json {
        schema: &'static str,
        required: bool,
    },
    Multipart(&'static str),
}

#[derive(Clone, Copy)]
enum Success {
    /// JSON of this schema, in both the plain and the vendor media type.
    Json(u16, &'static str, &'static str),
    /// The OpenAPI document itself.
    Document,
    /// An HTML page.
    Html(&'static str),
}

const AUTH: &str = "auth";
const FILES: &str = "files";
const COMPUTE: &str = "compute";
const RULES: &str = "rules";
const WEBHOOKS: &str = "webhooks";
const DOCS: &str = "documentation";

const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/auth/login",
        id: "login",
        tag: AUTH,
        summary: "Start a login",
        description:
            "Makes a PKCE verifier and its S256 challenge and a signed state binding them \
            to the redirect URI; send the browser to `authorization_url`. The provider sends it \
            back to the redirect URI with `code` and `state`: give them, with `code_verifier`, \
            to `POST /auth/callback`.",
        auth: false,
        parameters: &[],
        body: Body::Json {
            schema: "LoginRequest",
            required: false,
        },
        success: Success::Json(200, "LoginResponse", "The login to follow"),
        errors: &[400, 405, 413, 415],
        links: &[],
    },
    Operation {
        method: "post",
        path: "/auth/callback",
        id: "callback",
        tag: AUTH,
        summary: "Complete a login",
        description: "Checks the state and the verifier, exchanges the code at the provider's \
            token endpoint with PKCE, validates the access token, and creates or updates the \
            user. A code can be used once.",
        auth: false,
        parameters: &[],
        body: Body::Json {
            schema: "CallbackRequest",
            required: true,
        },
        success: Success::Json(200, "CallbackResponse", "The access token and its user"),
        errors: &[400, 401, 405, 413, 415],
        links: &[],
    },
    Operation {
        method: "post",
        path: "/files",
        id: "uploadFile",
        tag: FILES,
        summary: "Upload a file",
        description: "Stores the part `file` at `{user_id}/{filename}` with its row (size, \
            sha256, content type, etag). The name is stored as sent (in Unicode NFC) or refused \
            with the reason: no `/`, `\\`, `..`, control or invisible characters, at most 255 \
            bytes. Larger files go through `POST /files/presign`.",
        auth: true,
        parameters: &[],
        body: Body::Multipart("UploadForm"),
        success: Success::Json(201, "FileView", "The stored file"),
        errors: &[400, 405, 409, 413, 415],
        links: &[("getFile", "/id")],
    },
    Operation {
        method: "get",
        path: "/files",
        id: "listFiles",
        tag: FILES,
        summary: "List my files",
        description: "The caller's available files, newest first.",
        auth: true,
        parameters: &[Param::Limit, Param::Offset],
        body: Body::None,
        success: Success::Json(200, "Page_File", "A page of files"),
        errors: &[400, 405],
        links: &[],
    },
    Operation {
        method: "post",
        path: "/files/presign",
        id: "presignUpload",
        tag: FILES,
        summary: "Reserve a name for a large upload",
        description: "Reserves the name (`pending`) and answers a presigned PUT URL valid for \
            `expires_in` seconds; PUT the bytes there with the given headers, then \
            `POST /files/{id}/complete`.",
        auth: true,
        parameters: &[],
        body: Body::Json {
            schema: "PresignRequest",
            required: true,
        },
        success: Success::Json(201, "PresignResponse", "The reservation and its upload URL"),
        errors: &[400, 405, 409, 413, 415],
        links: &[("completeUpload", "/file/id"), ("getFile", "/file/id")],
    },
    Operation {
        method: "post",
        path: "/files/{id}/complete",
        id: "completeUpload",
        tag: FILES,
        summary: "Record a presigned upload",
        description: "Checks that the object exists, hashes it and makes the file available. \
            Idempotent: an available file is answered as it is.",
        auth: true,
        parameters: &[Param::Id],
        body: Body::None,
        success: Success::Json(200, "FileView", "The available file"),
        errors: &[404, 405, 409, 413],
        links: &[("getFile", "/id")],
    },
    Operation {
        method: "get",
        path: "/files/{id}",
        id: "getFile",
        tag: FILES,
        summary: "A file and its download link",
        description: "The file's metadata and, once it is available, a presigned GET. Another \
            user's file is a 404, like a missing one.",
        auth: true,
        parameters: &[Param::Id],
        body: Body::None,
        success: Success::Json(200, "FileView", "The file"),
        errors: &[404, 405],
        links: &[],
    },
    Operation {
        method: "post",
        path: "/compute",
        id: "submitJob",
        tag: COMPUTE,
        summary: "Submit a computation",
        description: "Checks the tool, the caller's inputs and the code's size, validates the \
            code statically (imports outside the tool's allow-list, dynamic evaluation, dunder \
            and private attributes... are refused with their line and column), records the job \
            `queued` and writes its code and manifest; the manifest's creation dispatches it. \
            The job runs `python3 /work/main.py ARGS...` with its inputs under `/work/inputs/`, \
            no network, the tool's limits; files it writes under `/work/out/` are kept. With \
            `callback_url` (https, a public address), the job's end is POSTed there: its \
            `CalculationFinished` event, signed in the style of Standard Webhooks (`webhook-id`, \
            `webhook-timestamp`, `webhook-signature`; see `GET /webhooks/secret`), retried with \
            backoff until a 2xx (redirects are not followed); the job's `webhook` shows how it \
            went.",
        auth: true,
        parameters: &[],
        body: Body::Json {
            schema: "SubmitRequest",
            required: true,
        },
        success: Success::Json(202, "SubmitAccepted", "The job, queued"),
        errors: &[400, 404, 405, 413, 415, 422],
        links: &[("getJob", "/job_id"), ("cancelJob", "/job_id")],
    },
    Operation {
        method: "get",
        path: "/compute",
        id: "listJobs",
        tag: COMPUTE,
        summary: "List my jobs",
        description: "The caller's jobs, newest first.",
        auth: true,
        parameters: &[Param::Limit, Param::Offset],
        body: Body::None,
        success: Success::Json(200, "Page_Job", "A page of jobs"),
        errors: &[400, 405],
        links: &[],
    },
    Operation {
        method: "get",
        path: "/compute/{id}",
        id: "getJob",
        tag: COMPUTE,
        summary: "A job, its facts and its results",
        description: "Status, timings, exit code, image digest, limits applied, the inputs with \
            their sha256, and presigned links to stdout, stderr and the outputs once it ran. \
            Another user's job is a 404.",
        auth: true,
        parameters: &[Param::Id],
        body: Body::None,
        success: Success::Json(200, "JobView", "The job"),
        errors: &[404, 405],
        links: &[],
    },
    Operation {
        method: "delete",
        path: "/compute/{id}",
        id: "cancelJob",
        tag: COMPUTE,
        summary: "Cancel a job that has not started",
        description: "A queued job becomes `cancelled`; once it has started, 409.",
        auth: true,
        parameters: &[Param::Id],
        body: Body::None,
        success: Success::Json(200, "JobView", "The cancelled job"),
        errors: &[404, 405, 409],
        links: &[],
    },
    Operation {
        method: "post",
        path: "/rules",
        id: "createRule",
        tag: RULES,
        summary: "Run a computation on every matching upload",
        description: "When the caller uploads a file whose name matches `filename_glob` (and \
            whose content type matches `content_type`, when given), the rule submits a job: its \
            tool, its code (inline, or read from `code_file_id` each time) and its arguments, \
            with the file under `/work/inputs/{filename}`. One job per rule and upload, however \
            the upload finished (direct, `/complete`, or its storage event); the job names the \
            rule and the upload (`rule_id`, `upload_file_id`). The rule is checked now as a \
            submission would be (422 with the findings); a rule whose code stops passing later \
            is disabled with its reason. At most 20 rules per user (409); an upload starts at \
            most 5 jobs (its oldest matching rules).",
        auth: true,
        parameters: &[],
        body: Body::Json {
            schema: "RuleRequest",
            required: true,
        },
        success: Success::Json(201, "Rule", "The rule, enabled"),
        errors: &[400, 404, 405, 409, 413, 415, 422],
        links: &[("getRule", "/id"), ("deleteRule", "/id")],
    },
    Operation {
        method: "get",
        path: "/rules",
        id: "listRules",
        tag: RULES,
        summary: "List my upload rules",
        description: "All of the caller's rules, in the order they fire (oldest first).",
        auth: true,
        parameters: &[],
        body: Body::None,
        success: Success::Json(200, "Page_Rule", "The rules"),
        errors: &[405],
        links: &[],
    },
    Operation {
        method: "get",
        path: "/rules/{id}",
        id: "getRule",
        tag: RULES,
        summary: "An upload rule",
        description: "The rule, whether it is enabled, and why not. Another user's rule is a 404.",
        auth: true,
        parameters: &[Param::Id],
        body: Body::None,
        success: Success::Json(200, "Rule", "The rule"),
        errors: &[404, 405],
        links: &[],
    },
    Operation {
        method: "delete",
        path: "/rules/{id}",
        id: "deleteRule",
        tag: RULES,
        summary: "Delete an upload rule",
        description: "The rule fires no more; the jobs it started stay (their `rule_id` is then \
            null).",
        auth: true,
        parameters: &[Param::Id],
        body: Body::None,
        success: Success::Json(200, "Rule", "The deleted rule"),
        errors: &[404, 405],
        links: &[],
    },
    Operation {
        method: "get",
        path: "/webhooks/secret",
        id: "getWebhookSecret",
        tag: WEBHOOKS,
        summary: "My webhook signing secret",
        description: "The secret the caller's webhooks (`callback_url` of jobs and rules) are \
            signed with; it is the caller's own, so no one else can sign a webhook as the \
            platform for them. A receiver checks `webhook-signature` against \
            HMAC-SHA256(secret, `{webhook-id}.{webhook-timestamp}.{body}`) and refuses a \
            timestamp far from its clock; `webhook-id` (the event's id) is the same on every \
            retry.",
        auth: true,
        parameters: &[],
        body: Body::None,
        success: Success::Json(200, "WebhookSecret", "The secret"),
        errors: &[400, 405],
        links: &[],
    },
    Operation {
        method: "get",
        path: "/openapi.json",
        id: "openapi",
        tag: DOCS,
        summary: "This document",
        description: "The API's OpenAPI 3.1 document, as JSON.",
        auth: false,
        parameters: &[],
        body: Body::None,
        success: Success::Document,
        errors: &[405],
        links: &[],
    },
    Operation {
        method: "get",
        path: "/docs",
        id: "docs",
        tag: DOCS,
        summary: "The API's documentation page",
        description: "This document as a self-contained HTML page.",
        auth: false,
        parameters: &[],
        body: Body::None,
        success: Success::Html("The documentation page"),
        errors: &[405],
        links: &[],
    },
];

const DESCRIPTION: &str = "\
MecaPy runs scientific computations in isolated containers: log in through the identity \
provider (OAuth 2.0 authorization code with PKCE, through `POST /auth/login` and \
`POST /auth/callback`), upload files, submit Python code that reads them, and fetch what it \
printed and wrote.

Every route but the login's and the documentation's needs `Authorization: Bearer <token>`, an \
RS256 JWT access token of the provider. Responses are `application/json`, or \
`application/vnd.mecapy.v1+json` when the request's `Accept` asks for it (another version, or \
only types the API never produces, is a 406). Errors are `application/problem+json` (RFC 9457) \
with the request's `request_id`. Every response carries `X-Request-Id`.";

/// The problem+json statuses and what each means here.
const PROBLEMS: &[(u16, &str)] = &[
    (
        400,
        "The request is malformed or a field is invalid (`field` names it)",
    ),
    (
        401,
        "No bearer token, or the token was refused (`WWW-Authenticate` says why)",
    ),
    (
        404,
        "No such resource for the caller (another user's is missing too)",
    ),
    (
        405,
        "The route does not take this method (`Allow` lists those it takes)",
    ),
    (
        406,
        "The `Accept` header asks only for types the API does not produce",
    ),
    (409, "The request conflicts with the resource's state"),
    (413, "The body, file or code is larger than allowed"),
    (415, "The body's media type is not accepted"),
    (
        422,
        "The code was refused by static validation (`findings` says where)",
    ),
    (
        503,
        "A backing service is unavailable; retry after `Retry-After` seconds",
    ),
];

fn problem_ref(status: u16) -> Value {
    json!({ "$ref": format!("#/components/responses/Problem{status}") })
}

fn json_content(schema: &str) -> Value {
    let schema = json!({ "$ref": format!("#/components/schemas/{schema}") });
    json!({
        "application/json": { "schema": schema },
        VENDOR_JSON: { "schema": schema },
    })
}

fn parameter(param: Param) -> Value {
    match param {
        Param::Id => json!({
            "name": "id", "in": "path", "required": true,
            "description": "The resource's id (a UUID; anything else names nothing: 404)",
            "schema": { "type": "string", "format": "uuid" },
        }),
        Param::Limit => json!({
            "name": "limit", "in": "query", "required": false,
            "description": "Items per page",
            "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 50 },
        }),
        Param::Offset => json!({
            "name": "offset", "in": "query", "required": false,
            "description": "Items to skip",
            "schema": { "type": "integer", "minimum": 0, "maximum": i64::MAX, "default": 0 },
        }),
    }
}

fn operation(op: &Operation) -> Value {
    let mut responses = Map::new();
    let (status, mut ok) = match op.success {
        Success::Json(status, schema, description) => (
            status,
            json!({ "description": description, "content": json_content(schema) }),
        ),
        Success::Document => (
            200,
            json!({
                "description": "The OpenAPI document",
                "content": { "application/json": { "schema": { "type": "object" } } },
            }),
        ),
        Success::Html(description) => (
            200,
            json!({
                "description": description,
                "content": { "text/html": { "schema": { "type": "string" } } },
            }),
        ),
    };
    if !op.links.is_empty() {
        let links: Map<String, Value> = op
            .links
            .iter()
            .map(|(target, pointer)| {
                let value = json!({
                    "operationId": target,
                    "parameters": { "id": format!("$response.body#{pointer}") },
                });
                (target.to_string(), value)
            })
            .collect();
        ok["links"] = Value::Object(links);
    }
    responses.insert(status.to_string(), ok);
    let api_route = !matches!(op.success, Success::Document | Success::Html(_));
    let mut errors: Vec<u16> = op.errors.to_vec();
    if op.auth {
        errors.push(401);
    }
    if api_route {
        errors.extend([406, 503]);
    }
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        responses.insert(status.to_string(), problem_ref(status));
    }

    let mut value = json!({
        "operationId": op.id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": op.description,
        "responses": responses,
    });
    if !op.parameters.is_empty() {
        value["parameters"] = op.parameters.iter().map(|p| parameter(*p)).collect();
    }
    match op.body {
        Body::None => {}
        Body::Json { schema, required } => {
            value["requestBody"] = json!({
                "required": required,
                "content": { "application/json": {
                    "schema": { "$ref": format!("#/components/schemas/{schema}") },
                } },
            });
        }
        Body::Multipart(schema) => {
            value["requestBody"] = json!({
                "required": true,
                "content": { "multipart/form-data": {
                    "schema": { "$ref": format!("#/components/schemas/{schema}") },
                } },
            });
        }
    }
    value["security"] = if op.auth {
        json!([{ "bearer": [] }])
    } else {
        json!([])
    };
    value
}

fn problem_responses() -> Value {
    let mut responses = Map::new();
    for (status, description) in PROBLEMS {
        let mut response = json!({
            "description": description,
            "content": { PROBLEM_JSON: {
                "schema": { "$ref": "#/components/schemas/Problem" },
            } },
        });
        let header = match status {
            401 => Some(("WWW-Authenticate", "The bearer challenge (RFC 6750)")),
            405 => Some(("Allow", "The methods the route takes")),
            503 => Some(("Retry-After", "Seconds to wait before retrying")),
            _ => None,
        };
        if let Some((name, description)) = header {
            response["headers"] = json!({ name: {
                "description": description,
                "required": true,
                "schema": { "type": "string" },
            } });
        }
        responses.insert(format!("Problem{status}"), response);
    }
    Value::Object(responses)
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let schemas = Schemas::openapi();
    let components = serde_json::to_value(&schemas.components).unwrap_or(Value::Null);

    let mut paths = Map::new();
    for op in OPERATIONS {
        let item = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = operation(op);
    }
    let mut components = match components {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    components.insert("responses".into(), problem_responses());
    components.insert(
        "securitySchemes".into(),
        json!({ "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token of the identity provider (RS256 JWT, audience the \
                API's), as `POST /auth/callback` answers it",
        } }),
    );
    let document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "MecaPy API",
            "version": "1",
            "description": DESCRIPTION,
            "license": { "name": "MIT", "identifier": "MIT" },
        },
        "tags": [
            { "name": AUTH, "description": "Logging in through the identity provider" },
            { "name": FILES, "description": "Files, stored at `{user_id}/{filename}`" },
            { "name": COMPUTE, "description": "Computations run in isolated containers" },
            { "name": RULES, "description": "Computations that uploads start by themselves" },
            { "name": WEBHOOKS, "description": "Signed notifications of job ends" },
            { "name": DOCS, "description": "This document" },
        ],
        "paths": paths,
        "components": components,
    });
    // Parsing it into utoipa's model checks its shape, and gives the YAML its one ordering.
    serde_json::from_value(document).unwrap_or_else(|e| panic!("the OpenAPI document: {e}"))
}

/// The document as committed (`openapi.yaml`).
pub fn yaml() -> String {
    document()
        .to_yaml()
        .unwrap_or_else(|e| panic!("the OpenAPI document as YAML: {e}"))
}

/// The document as served (`GET /openapi.json`).
pub fn json() -> String {
    document()
        .to_pretty_json()
        .unwrap_or_else(|e| panic!("the OpenAPI document as JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = include_str!("../../../openapi.yaml");

    #[test]
    fn committed_document_is_the_generated_one() {
        assert!(
            yaml() == COMMITTED,
            "openapi.yaml differs from the document the code derives: run `make openapi` and \
             commit openapi.yaml"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(document()).unwrap();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/").skip(1) {
            let pointer = format!("/{}", piece.split('"').next().unwrap());
            assert!(doc.pointer(&pointer).is_some(), "{pointer} is not defined");
        }
    }

    #[test]
    fn links_lead_to_operations_of_the_document() {
        for op in OPERATIONS {
            for (target, _) in op.links {
                assert!(
                    OPERATIONS.iter().any(|o| o.id == *target),
                    "{} -> {target}",
                    op.id
                );
            }
        }
    }

    #[test]
    fn protected_routes_declare_the_bearer_scheme_and_401() {
        let doc = serde_json::to_value(document()).unwrap();
        for op in OPERATIONS {
            let o = &doc["paths"][op.path][op.method];
            assert_eq!(o["operationId"], op.id);
            assert!(!op.auth || o["responses"].get("401").is_some(), "{}", op.id);
            assert_eq!(
                op.auth,
                o["security"] == json!([{"bearer": []}]),
                "{}",
                op.id
            );
        }
    }
}
