//! Why a use case refuses or cannot do what it is asked. The HTTP edge maps each kind to its
//! status once; a queue consumer decides from the kind whether a retry can help.

/// One reason the code is refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// 1-based line of the offending node.
    pub line: u32,
    /// 1-based column of the offending node, counted in characters.
    pub column: u32,
    /// The rule violated: `syntax-error`, `import-not-allowed`, `forbidden-call`, `dunder-access`.
    pub rule: String,
    /// A short human explanation.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The request's content is wrong; `field` names the part that is.
    #[error("{detail}")]
    Invalid {
        detail: String,
        field: Option<String>,
    },
    /// The code is refused by its static validation; `findings` says where.
    #[error("{detail}")]
    Refused {
        detail: String,
        findings: Vec<Finding>,
    },
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the state it found (a name taken, a job already started).
    #[error("{0}")]
    Conflict(String),
    /// Bigger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// A backing service is down: worth trying again. `service` is shown, `cause` only logged.
    #[error("{service} unavailable: {cause}")]
    Unavailable {
        service: &'static str,
        cause: String,
    },
    /// A bug or a misconfiguration.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        DomainError::Invalid {
            detail: detail.into(),
            field: Some(field.to_string()),
        }
    }

    /// Whether the same request can never succeed (what it asks is wrong), as opposed to a
    /// failure a later attempt may not meet (a service down, a bug being fixed).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            DomainError::Unavailable { .. } | DomainError::Internal(_)
        )
    }
}

impl From<crate::files::FilenameError> for DomainError {
    fn from(e: crate::files::FilenameError) -> Self {
        DomainError::invalid("filename", e.to_string())
    }
}
