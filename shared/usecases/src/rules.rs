//! Upload rules: "when I upload a file matching `*.csv` (and this content type), run this tool
//! with this code and these arguments, with the file as input". A rule is checked like a
//! submission when it is created; it fires on the file's `FileUploaded` event (the
//! `upload-rules` function), through [`crate::jobs::submit`], once per (rule, upload) however
//! often the event comes. A rule whose code no longer passes (validation changed, the code
//! file is gone) is disabled with the reason instead of failing again and again.

use serde::Deserialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::db::{self, files::FileRow, rules::Rule};
use crate::events::FileUploaded;
use crate::jobs::{submit, SubmitRequest};
use crate::Context;
use mecapy_domain::error::DomainError;

/// Rules one user may have.
pub const MAX_RULES_PER_USER: i64 = 20;
/// Jobs one upload may start (its first matching rules, oldest first).
pub const MAX_JOBS_PER_UPLOAD: usize = 5;
/// Longest glob, in bytes.
pub const MAX_GLOB_BYTES: usize = 255;

/// `POST /rules`: when an upload matches, run this. Exactly one of `code` and `code_file_id`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    /// Matched against the whole file name, case-sensitively: `*` any run of characters
    /// (none too), `?` exactly one, everything else itself.
    #[schema(min_length = 1, max_length = 255)]
    pub filename_glob: String,
    /// When set, the file's content type must be this (`text/csv`) or of this family (`text/*`).
    pub content_type: Option<String>,
    /// The tool that runs the code (`python`).
    #[schema(min_length = 1)]
    pub tool: String,
    /// The Python source, or…
    pub code: Option<String>,
    /// …one of the caller's files holding it (read each time the rule fires).
    pub code_file_id: Option<Uuid>,
    /// Arguments after `python3 /work/main.py` (the upload is under `/work/inputs/{filename}`).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub args: Vec<String>,
    /// Where the end of each job the rule starts is POSTed, signed (as `POST /compute`'s).
    #[schema(max_length = 2048)]
    pub callback_url: Option<String>,
}

impl RuleRequest {
    /// The submission the rule makes for `upload` (the one input).
    pub fn submission(&self, upload: Uuid) -> SubmitRequest {
        SubmitRequest {
            tool: self.tool.clone(),
            code: self.code.clone(),
            file_id: self.code_file_id,
            input_file_ids: vec![upload],
            args: self.args.clone(),
            callback_url: self.callback_url.clone(),
        }
    }

    /// The request's own rules (the glob, the content type), then the submission's checks and
    /// static validation, as `POST /compute` would refuse them.
    pub async fn check(
        &self,
        state: &Context,
        db: &impl GenericClient,
        user_id: Uuid,
    ) -> Result<Checked, DomainError> {
        Glob::parse(&self.filename_glob)?;
        if let Some(ct) = &self.content_type {
            check_content_type(ct)?;
        }
        let submission = self.submission(Uuid::nil());
        let source = submission.check(state.config.max_code_bytes).map_err(|e| {
            // The rule's field is `code_file_id`, the submission's `file_id`.
            match e {
                DomainError::Invalid { detail, field } if field.as_deref() == Some("file_id") => {
                    DomainError::invalid("code_file_id", detail)
                }
                other => other,
            }
        })?;
        let tool = db::tools::by_name(db, &self.tool)
            .await?
            .ok_or_else(|| DomainError::invalid("tool", format!("unknown tool {:?}", self.tool)))?;
        let code = match source {
            crate::jobs::spec::CodeSource::Inline(code) => code,
            crate::jobs::spec::CodeSource::File(id) => {
                submit::read_code_file(state, db, user_id, id).await?
            }
        };
        submit::check_code(&code, &tool.allowed_imports)?;
        let callback_url = match &self.callback_url {
            Some(raw) => Some(state.config.accept_callback(raw, true).await?),
            None => None,
        };
        Ok(Checked {
            tool_id: tool.id,
            callback_url,
        })
    }
}

/// What checking a rule found out.
pub struct Checked {
    pub tool_id: Uuid,
    /// The `callback_url` as it is stored.
    pub callback_url: Option<String>,
}

fn check_content_type(ct: &str) -> Result<(), DomainError> {
    let ok = ct.len() <= 127
        && ct.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
            };
            token(t) && (s == "*" || token(s))
        });
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "content_type",
            "a media type such as `text/csv`, or a family such as `text/*`",
        ))
    }
}

/// A file-name pattern: `*` any run of characters, `?` one character, the rest literal.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob(Vec<char>);

impl Glob {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let bad = |why: &str| Err(DomainError::invalid("filename_glob", why.to_string()));
        if raw.is_empty() || raw.len() > MAX_GLOB_BYTES {
            return bad("a glob of 1 to 255 bytes, such as `*.csv`");
        }
        if raw.contains('/') || raw.contains('\\') {
            return bad("a glob matches a file name: no `/` or `\\`");
        }
        if raw.chars().any(char::is_control) {
            return bad("a glob cannot hold control characters");
        }
        Ok(Glob(raw.chars().collect()))
    }

    /// Whether the whole of `name` matches (linear in practice: one backtrack point).
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let (p, n) = (&self.0, &name);
        let (mut i, mut j) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while j < n.len() {
            if i < p.len() && p[i] == '*' {
                star = Some((i, j));
                i += 1;
            } else if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
                i += 1;
                j += 1;
            } else if let Some((si, sj)) = star {
                i = si + 1;
                j = sj + 1;
                star = Some((si, sj + 1));
            } else {
                return false;
            }
        }
        p[i..].iter().all(|&c| c == '*')
    }
}

/// Whether `rule` is set off by an upload of `filename` with `content_type`.
pub fn matches(rule: &Rule, filename: &str, content_type: &str) -> bool {
    let name_ok = Glob::parse(&rule.filename_glob).is_ok_and(|g| g.matches(filename));
    let type_ok = match &rule.content_type {
        None => true,
        Some(want) => {
            let have = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let want = want.to_ascii_lowercase();
            match want.strip_suffix("/*") {
                Some(family) => have.split('/').next() == Some(family),
                None => have == want,
            }
        }
    };
    name_ok && type_ok
}

/// What one upload set off.
#[derive(Debug, Default, PartialEq)]
pub struct Fired {
    /// `(rule, job)` for each matching rule's job, `created` false when it existed already.
    pub jobs: Vec<(Uuid, Uuid, bool)>,
    /// Rules disabled now, with the reason.
    pub disabled: Vec<(Uuid, String)>,
    /// Matching rules left out by [`MAX_JOBS_PER_UPLOAD`].
    pub skipped: usize,
}

/// Runs the user's matching rules for the uploaded file. Errors are transient (the database or
/// storage down): the event is delivered again, and the jobs already created are found again.
pub async fn fire(
    state: &Context,
    db: &impl GenericClient,
    uploaded: &FileUploaded,
) -> Result<Fired, DomainError> {
    let mut fired = Fired::default();
    let Some(file) = db::files::get(db, uploaded.user_id, uploaded.file_id)
        .await?
        .filter(|f| f.status == "available")
    else {
        // Deleted since, or never this user's: nothing to run.
        return Ok(fired);
    };
    let rules: Vec<Rule> = db::rules::list(db, uploaded.user_id)
        .await?
        .into_iter()
        .filter(|r| r.enabled && matches(r, &file.filename, &file.content_type))
        .collect();
    fired.skipped = rules.len().saturating_sub(MAX_JOBS_PER_UPLOAD);
    for rule in rules.into_iter().take(MAX_JOBS_PER_UPLOAD) {
        match fire_one(state, db, &rule, &file).await {
            Ok(accepted) => fired
                .jobs
                .push((rule.id, accepted.job.id, accepted.created)),
            Err(e) if refuses_the_rule(&e) => {
                let reason = format!("disabled when {:?} was uploaded: {e}", file.filename);
                db::rules::disable(db, rule.id, &reason).await?;
                tracing::warn!(rule_id = %rule.id, reason, "upload rule disabled");
                fired.disabled.push((rule.id, reason));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(fired)
}

async fn fire_one(
    state: &Context,
    db: &impl GenericClient,
    rule: &Rule,
    file: &FileRow,
) -> Result<submit::Accepted, DomainError> {
    let request = SubmitRequest {
        tool: rule.tool.clone(),
        code: rule.code.clone(),
        file_id: rule.code_file_id,
        input_file_ids: vec![file.id],
        args: serde_json::from_value(rule.args.clone()).unwrap_or_default(),
        callback_url: rule.callback_url.clone(),
    };
    submit::submit(state, db, file.user_id, &request, Some((rule.id, file.id))).await
}

/// Failures that will not go away by retrying: the rule itself no longer holds.
fn refuses_the_rule(e: &DomainError) -> bool {
    matches!(
        e,
        DomainError::Invalid { .. }
            | DomainError::NotFound(_)
            | DomainError::TooLarge(_)
            | DomainError::Refused { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::parse(p).unwrap()
    }

    #[test]
    fn globs_match_whole_names() {
        for (p, name, want) in [
            ("*.csv", "data.csv", true),
            ("*.csv", ".csv", true),
            ("*.csv", "data.csv.bak", false),
            ("*.csv", "DATA.CSV", false),
            ("run-??.csv", "run-07.csv", true),
            ("run-??.csv", "run-7.csv", false),
            ("*", "anything at all", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("mesure*", "mesuré.csv", false),
            ("mesur?.csv", "mesuré.csv", true),
            ("exact.txt", "exact.txt", true),
            ("exact.txt", "exact.txt ", false),
            ("*x", "*ax", true),
        ] {
            assert_eq!(glob(p).matches(name), want, "{p} on {name}");
        }
    }

    #[test]
    fn a_pathological_glob_stays_fast() {
        let p = glob(&"*a".repeat(100));
        let name = "a".repeat(99) + "b";
        let started = std::time::Instant::now();
        assert!(!p.matches(&name));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn bad_globs_are_refused_on_their_field() {
        for bad in [
            String::new(),
            "a/b".into(),
            "a\\b".into(),
            "a\nb".into(),
            "x".repeat(256),
        ] {
            let e = Glob::parse(&bad).unwrap_err();
            assert!(
                matches!(&e, DomainError::Invalid { field: Some(f), .. } if f == "filename_glob"),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn content_types_match_exactly_or_by_family() {
        let rule = |ct: Option<&str>| Rule {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            filename_glob: "*".into(),
            content_type: ct.map(str::to_string),
            tool: "python".into(),
            code: Some("print(1)".into()),
            code_file_id: None,
            args: serde_json::json!([]),
            enabled: true,
            disabled_reason: None,
            callback_url: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        assert!(matches(&rule(None), "a", "application/octet-stream"));
        assert!(matches(&rule(Some("text/csv")), "a", "text/csv"));
        assert!(matches(
            &rule(Some("text/csv")),
            "a",
            "Text/CSV; charset=utf-8"
        ));
        assert!(!matches(&rule(Some("text/csv")), "a", "text/plain"));
        assert!(matches(&rule(Some("text/*")), "a", "text/plain"));
        assert!(!matches(&rule(Some("text/*")), "a", "texts/plain"));
        for ok in ["text/csv", "text/*", "application/vnd.ms-excel"] {
            assert!(check_content_type(ok).is_ok(), "{ok}");
        }
        for bad in ["csv", "*/*x", "text/", "/csv", "text/c sv", "text/csv\n"] {
            assert!(check_content_type(bad).is_err(), "{bad}");
        }
    }
}
