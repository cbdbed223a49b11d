//! A Graph request's raw parts: its body (bounded) and its percent-escaped path.

use axum::body::Body;

use super::error::GraphError;

/// The request body, at most `max` bytes. A larger one is a 400; the rest of it is read
/// and dropped (up to 16 times the limit), so that the client, still sending, gets the
/// answer and not a reset; then the connection closes.
pub(super) async fn read_body(body: Body, max: usize) -> Result<axum::body::Bytes, GraphError> {
    use tokio_stream::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            GraphError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        seen += chunk.len();
        if seen <= max {
            kept.extend_from_slice(&chunk);
        } else if seen > max.saturating_mul(16) {
            break;
        }
    }
    if seen > max {
        return Err(GraphError {
            close: true,
            ..GraphError::bad_request(format!("the request body is larger than {max} bytes"))
        });
    }
    Ok(kept.into())
}

/// `%XX` escapes decoded; None for a bad escape or bytes that are not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
