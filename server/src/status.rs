//! Engine errors as gRPC statuses and back: the status code says what a generic client can
//! do, the `geodir-error` metadata keeps the engine's kind, so that a remote replica fails
//! exactly as a local one does (a fenced append stays `Error::Fenced`).

use engine::Error;
use tonic::{Code, Status};

const KIND: &str = "geodir-error";

/// The kind's name and the gRPC code for an engine error.
fn kind(e: &Error) -> (&'static str, Code) {
    match e {
        Error::Invalid(_) => ("invalid", Code::InvalidArgument),
        Error::NotFound(_) => ("not-found", Code::NotFound),
        Error::Conflict(_) => ("conflict", Code::AlreadyExists),
        Error::Unavailable(_) => ("unavailable", Code::Unavailable),
        Error::OutcomeUnknown(_) => ("outcome-unknown", Code::Unknown),
        Error::Corrupt(_) => ("corrupt", Code::DataLoss),
        Error::Fenced(_) => ("fenced", Code::FailedPrecondition),
        Error::Damaged(_) => ("damaged", Code::DataLoss),
        Error::DiskFull(_) => ("disk-full", Code::ResourceExhausted),
        Error::ImpossibleToken(_) => ("impossible-token", Code::InvalidArgument),
        Error::Storage(_) => ("storage", Code::Internal),
        Error::NotPermitted(_) => ("not-permitted", Code::PermissionDenied),
    }
}

/// The message an engine error carries (without the prefix its `Display` adds).
fn message(e: &Error) -> String {
    match e {
        Error::Invalid(m)
        | Error::NotFound(m)
        | Error::Conflict(m)
        | Error::Unavailable(m)
        | Error::OutcomeUnknown(m)
        | Error::Corrupt(m)
        | Error::Fenced(m)
        | Error::Damaged(m)
        | Error::DiskFull(m)
        | Error::ImpossibleToken(m)
        | Error::Storage(m)
        | Error::NotPermitted(m) => m.clone(),
    }
}

/// An engine error as a gRPC status, its kind in the metadata.
pub fn to_status(e: &Error) -> Status {
    let (name, code) = kind(e);
    let mut s = Status::new(code, message(e));
    if let Ok(v) = name.parse() {
        s.metadata_mut().insert(KIND, v);
    }
    s
}

/// A gRPC status as an engine error: the kind the server gave, else by code (a status from
/// the transport itself: the server is unreachable).
pub fn from_status(s: &Status, peer: &str) -> Error {
    let m = s.message().to_string();
    let named = s.metadata().get(KIND).and_then(|v| v.to_str().ok());
    match named {
        Some("invalid") => Error::Invalid(m),
        Some("not-found") => Error::NotFound(m),
        Some("conflict") => Error::Conflict(m),
        Some("unavailable") => Error::Unavailable(m),
        Some("outcome-unknown") => Error::OutcomeUnknown(m),
        Some("corrupt") => Error::Corrupt(m),
        Some("fenced") => Error::Fenced(m),
        Some("damaged") => Error::Damaged(m),
        Some("disk-full") => Error::DiskFull(m),
        Some("impossible-token") => Error::ImpossibleToken(m),
        Some("storage") => Error::Storage(m),
        Some("not-permitted") => Error::NotPermitted(m),
        _ => match s.code() {
            Code::InvalidArgument => Error::Invalid(format!("{peer}: {m}")),
            Code::NotFound => Error::NotFound(format!("{peer}: {m}")),
            _ => Error::Unavailable(format!("{peer} is unreachable: {} {m}", s.code())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_error_round_trips_through_a_status() {
        let all = [
            Error::Invalid("a".into()),
            Error::NotFound("b".into()),
            Error::Conflict("c".into()),
            Error::Unavailable("d".into()),
            Error::OutcomeUnknown("e".into()),
            Error::Corrupt("f".into()),
            Error::Fenced("g".into()),
            Error::Damaged("h".into()),
            Error::DiskFull("i".into()),
            Error::ImpossibleToken("j".into()),
            Error::Storage("k".into()),
            Error::NotPermitted("l".into()),
        ];
        for e in all {
            let back = from_status(&to_status(&e), "peer");
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
    }

    #[test]
    fn a_transport_failure_is_unavailable_naming_the_peer() {
        let e = from_status(&Status::unavailable("connection refused"), "eastus");
        assert!(
            matches!(&e, Error::Unavailable(m) if m.contains("eastus") && m.contains("connection refused")),
            "{e:?}"
        );
    }
}
