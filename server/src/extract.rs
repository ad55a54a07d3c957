//! Request extractors that answer every client mistake in the server's one
//! error shape: JSON bodies (naming the offending field), query strings and
//! path parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest JSON body any endpoint accepts, in bytes.
pub const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A JSON request body. A content type other than `application/json` (see
/// [`is_json_content_type`]) is refused with a 415; unknown fields, wrong types and
/// missing fields with a 422 naming the field; bodies that are not JSON with a 400;
/// bodies over [`JSON_BODY_LIMIT`] with a 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match content_type {
            Some(ct) if is_json_content_type(&ct) => {}
            Some(ct) => {
                return Err(Error::UnsupportedMediaType(format!(
                    "expected Content-Type: application/json, got {ct}"
                )));
            }
            None => {
                return Err(Error::UnsupportedMediaType(
                    "expected a JSON body with Content-Type: application/json".into(),
                ));
            }
        }
        let bytes = body_bytes(req, state, JSON_BODY_LIMIT).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Whether a `Content-Type` value names JSON: exactly `application/json` (in any case),
/// with no parameter but `charset=utf-8`. Look-alikes (`application/jsonp`,
/// `application/json-seq`) and other charsets are not JSON to the server.
pub fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts
            .map(str::trim)
            .filter(|param| !param.is_empty())
            .all(|param| {
                param.split_once('=').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("charset")
                        && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                })
            })
}

/// Reads the whole body, mapping an over-limit body to [`Error::TooLarge`] and one that
/// stalled or dragged past the transport's limits to [`Error::Timeout`].
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S, limit: usize) -> Result<Bytes> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge { limit }
        } else if timed_out(&rejection) {
            Error::Timeout("the request body did not arrive in the time allowed".into())
        } else {
            Error::Malformed(rejection.body_text())
        }
    })
}

/// Whether a body failed because a transport timeout ended it.
fn timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Parses JSON bytes into `T`, naming the field at fault on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            return Error::Malformed(format!("body is not valid JSON: {message}"));
        }
        // serde names a missing field in backticks, with the path pointing at
        // its parent (for an unknown field the path already ends with it).
        let field = match backticked(&message) {
            Some(name) if message.starts_with("missing field") => {
                if path == "." {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                }
            }
            _ => path,
        };
        Error::invalid(field, message)
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// A query string, refused with a 422 naming the problem when it does not parse.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_from_str(query).map(ApiQuery)
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(query: &str) -> Result<T> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| Error::Malformed("bad query string".into()))?,
    )
    .map(|q| q.0)
    .map_err(|e| Error::invalid("query", e.body_text()))
}

/// A path parameter, refused with a 404 when it does not parse (an id that
/// cannot exist names nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| Error::NotFound(e.body_text()))
    }
}

/// Paging parameters shared by list endpoints: `?page=1&per_page=50`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct Paging {
    /// 1-based page number.
    pub page: u32,
    /// Rows per page, at most [`Paging::MAX_PER_PAGE`].
    pub per_page: u32,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page: 1,
            per_page: 50,
        }
    }
}

impl Paging {
    /// The largest page size served.
    pub const MAX_PER_PAGE: u32 = 500;

    /// Checks the bounds.
    pub fn validate(self) -> Result<Self> {
        if self.page == 0 {
            return Err(Error::invalid("page", "pages count from 1"));
        }
        if self.per_page == 0 || self.per_page > Self::MAX_PER_PAGE {
            return Err(Error::invalid(
                "per_page",
                format!("must be between 1 and {}", Self::MAX_PER_PAGE),
            ));
        }
        Ok(self)
    }

    /// SQL `LIMIT`.
    pub fn limit(self) -> i64 {
        i64::from(self.per_page)
    }

    /// SQL `OFFSET`.
    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }
}

/// One page of a list, with the total count for pagers.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Rows matching the filter, over all pages.
    pub total: i64,
    /// This page's number.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        ratio: f64,
    }

    fn field_of(body: &str) -> (String, String) {
        match parse_json::<Thing>(body.as_bytes()).unwrap_err() {
            Error::Invalid { field, reason } => (field, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(
            field_of(r#"{"name":"a","inner":{"ratio":"x"}}"#).0,
            "inner.ratio"
        );
        assert_eq!(
            field_of(r#"{"name":"a","inner":{"ratio":1},"colour":1}"#).0,
            "colour"
        );
        assert_eq!(field_of(r#"{"name":"a","inner":{}}"#).0, "inner.ratio");
        assert_eq!(field_of(r#"{"inner":{"ratio":1}}"#).0, "name");
    }

    #[test]
    fn only_json_is_json() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/json;",
        ] {
            assert!(is_json_content_type(json), "{json}");
        }
        for other in [
            "application/jsonp",
            "application/json-seq",
            "application/json; charset=latin1",
            "application/json; boundary=x",
            "text/json",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!is_json_content_type(other), "{other}");
        }
    }

    #[test]
    fn syntax_errors_are_malformed() {
        assert!(matches!(
            parse_json::<Thing>(b"{\"name\":"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            parse_json::<Thing>(b"not json"),
            Err(Error::Malformed(_))
        ));
    }
}
