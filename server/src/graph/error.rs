//! Graph's error shape: `{"error": {"code", "message", "innerError": {"request-id", "date"}}}`,
//! and how each engine error becomes a status and one of Graph's codes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::Error;

/// An error as Graph answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds a client should wait before it tries again (503, 429).
    pub retry_after: Option<u64>,
    /// The connection closes after this answer (a body left unread): the client must not
    /// send its next request on it.
    pub close: bool,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> GraphError {
        GraphError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    pub fn unsupported_query(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    pub fn not_found(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::NOT_FOUND, "Request_ResourceNotFound", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> GraphError {
        GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    pub fn forbidden(message: impl Into<String>) -> GraphError {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            message,
        )
    }

    pub fn throttled(retry_after: u64) -> GraphError {
        GraphError {
            retry_after: Some(retry_after),
            ..GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "too many requests with this token; try again after the Retry-After seconds",
            )
        }
    }

    /// The body Graph sends, with this request's id and the time.
    pub fn body(&self, request_id: &str, date: &str) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": { "request-id": request_id, "date": date },
            }
        })
    }

    /// The response, its `innerError` naming `request_id`.
    pub fn into_response_for(self, request_id: &str) -> Response {
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let mut r = (self.status, axum::Json(self.body(request_id, &date))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            r.headers_mut().insert("request-id", v);
        }
        if self.close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// An engine error as Graph answers it: what the caller can do decides the status.
pub fn from_engine(e: &Error) -> GraphError {
    let m = e.to_string();
    match e {
        Error::Invalid(_) | Error::ImpossibleToken(_) => GraphError::bad_request(m),
        Error::NotFound(_) => GraphError::not_found(m),
        Error::Conflict(_) => GraphError::new(
            StatusCode::CONFLICT,
            "Request_MultipleObjectsWithSameKeyValue",
            m,
        ),
        Error::Unavailable(_) | Error::DiskFull(_) | Error::Damaged(_) => GraphError {
            retry_after: Some(1),
            ..GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                format!("{m} (nothing was applied)"),
            )
        },
        Error::NotPermitted(_) => {
            GraphError::new(StatusCode::FORBIDDEN, "Authorization_RequestDenied", m)
        }
        Error::OutcomeUnknown(_) | Error::Corrupt(_) | Error::Fenced(_) | Error::Storage(_) => {
            GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, "generalException", m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_error_has_its_status_and_code() {
        let cases = [
            (Error::Invalid("x".into()), 400, "Request_BadRequest"),
            (Error::NotFound("x".into()), 404, "Request_ResourceNotFound"),
            (
                Error::Conflict("x".into()),
                409,
                "Request_MultipleObjectsWithSameKeyValue",
            ),
            (Error::Unavailable("x".into()), 503, "serviceNotAvailable"),
            (Error::DiskFull("x".into()), 503, "serviceNotAvailable"),
            (Error::Storage("x".into()), 500, "generalException"),
            (
                Error::NotPermitted("x".into()),
                403,
                "Authorization_RequestDenied",
            ),
        ];
        for (e, status, code) in cases {
            let g = from_engine(&e);
            assert_eq!((g.status.as_u16(), g.code), (status, code), "{e:?}");
        }
        assert_eq!(
            from_engine(&Error::Unavailable("x".into())).retry_after,
            Some(1),
            "a 503 says when to try again"
        );
    }

    #[test]
    fn the_body_is_graphs_shape() {
        let b = GraphError::not_found("no user").body("r-1", "2026-12-02T10:00:00");
        assert_eq!(b["error"]["code"], "Request_ResourceNotFound");
        assert_eq!(b["error"]["message"], "no user");
        assert_eq!(b["error"]["innerError"]["request-id"], "r-1");
        assert_eq!(b["error"]["innerError"]["date"], "2026-12-02T10:00:00");
    }
}
