//! The server's one error type: every failure a handler or the store can report,
//! and how each is answered over HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Result alias used throughout the server.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the server.
///
/// Client mistakes carry enough to tell the caller what to fix; internal
/// failures are logged and answered with a bare 500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request body that is not JSON at all (syntax error, wrong content type).
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// A field is missing, has the wrong type or an invalid value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field at fault, as a dotted path (`items[2].code`).
        field: String,
        /// Why the value was refused.
        reason: String,
    },
    /// The thing asked for does not exist (or the caller may not know it does).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request clashes with the current state (duplicate key, already done).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The thing asked for existed and was removed for good (a record purged after its
    /// retention period).
    #[error("gone: {0}")]
    Gone(String),
    /// A purge asked for before the retention period has passed.
    #[error("{message}")]
    Retained {
        /// The first day (China date) the purge is allowed.
        allowed_on: chrono::NaiveDate,
        /// What was refused, naming that day.
        message: String,
    },
    /// No valid credentials: missing, expired or revoked token, wrong password.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Authenticated, but the caller's roles do not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Authenticated, without any of the roles this needs (403 `forbidden`).
    #[error("forbidden: this needs the role {}", .0.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or "))]
    RoleNeeded(Vec<crate::auth::Role>),
    /// A console form posted without its session's CSRF token (403 `forbidden`).
    #[error("forbidden: {}", CSRF_REFUSED)]
    Csrf,
    /// Separation of duties: the caller inspected the record and may not decide on it
    /// (403 `forbidden`); names the record.
    #[error(
        "forbidden: you were in the inspector group of record {0}, so you may not review or publish it"
    )]
    OwnRecord(String),
    /// A unique value already taken (409 `conflict`): the field and who holds it.
    #[error("conflict: {message}")]
    Duplicate {
        /// The field whose value is taken.
        field: &'static str,
        /// What clashes with what.
        message: String,
    },
    /// The request body is larger than the endpoint accepts.
    #[error("request body too large (limit {limit} bytes)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A request body of a type the endpoint does not take (JSON endpoints take
    /// `application/json` only).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The request did not arrive, or was not answered, in the time allowed.
    #[error("timeout: {0}")]
    Timeout(String),
    /// A client error answered by the HTTP layer rather than a handler (method not
    /// allowed, target or header fields too long, a framework's rejection).
    #[error("{message}")]
    Rejected {
        /// The 4xx status the layer chose.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// A sync request refused because of one record: the rule it broke.
    #[error("{message}")]
    Refused {
        /// HTTP status to answer with.
        status: StatusCode,
        /// Machine code (`refused`, `forbidden`, `not_found`).
        code: &'static str,
        /// The rule broken (see `suiji_mobile_core::sync::wire::rules`).
        rule: &'static str,
        /// The record concerned.
        record_id: String,
        /// What was wrong.
        message: String,
    },
    /// The database failed.
    #[error("database error")]
    Database(#[from] crate::store::sql::DatabaseError),
    /// A file or socket failed.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// A stored value could not be (de)serialised: a bug or a damaged database.
    #[error("stored data is not valid JSON")]
    Json(#[from] serde_json::Error),
    /// A background task panicked or was cancelled.
    #[error("background task failed")]
    Join(#[from] tokio::task::JoinError),
    /// Something else internal, described for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The message of a refused CSRF check ([`Error::Csrf`]).
pub const CSRF_REFUSED: &str =
    "表单校验失败（CSRF）：此表单不是从本站当前会话提交的，或页面已过期。请刷新页面后重试。";

impl Error {
    /// A validation error on `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Malformed(_) => StatusCode::BAD_REQUEST,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Retained { .. } => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::RoleNeeded(_) | Error::Csrf | Error::OwnRecord(_) => {
                StatusCode::FORBIDDEN
            }
            Error::Duplicate { .. } => StatusCode::CONFLICT,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Rejected { status, .. } => *status,
            Error::Refused { status, .. } => *status,
            Error::Database(_)
            | Error::Io(_)
            | Error::Json(_)
            | Error::Join(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short stable code for clients to switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed",
            Error::Invalid { .. } => "invalid",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Gone(_) => "gone",
            Error::Retained { .. } => "retained",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) | Error::RoleNeeded(_) | Error::Csrf | Error::OwnRecord(_) => {
                "forbidden"
            }
            Error::Duplicate { .. } => "conflict",
            Error::TooLarge { .. } => "too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::Timeout(_) => "timeout",
            Error::Rejected { status, .. } => rejection_code(*status),
            Error::Refused { code, .. } => code,
            _ => "internal",
        }
    }
}

/// The code of a client error the HTTP layer answered, by its status: the same codes the
/// handlers' errors use where they overlap.
fn rejection_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::GONE => "gone",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        _ => "rejected",
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "internal error");
            return (
                status,
                axum::Json(
                    json!({"error": {"code": "internal", "message": "internal server error"}}),
                ),
            )
                .into_response();
        }
        let mut body = json!({"code": self.code(), "message": self.to_string()});
        if let Error::Invalid { field, reason } = &self {
            body["field"] = json!(field);
            body["reason"] = json!(reason);
        }
        if let Error::Retained { allowed_on, .. } = &self {
            body["purge_allowed_on"] = json!(allowed_on);
        }
        if let Error::Refused {
            rule, record_id, ..
        } = &self
        {
            body["rule"] = json!(rule);
            body["record_id"] = json!(record_id);
        }
        let mut response = (status, axum::Json(json!({ "error": body }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
