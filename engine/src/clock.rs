//! One injectable clock: the CLI sets it from `DIRCTL_NOW` so that tests cross
//! 30-day windows and daily backups without waiting.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { fixed: None }
    }

    /// A clock that always reads `rfc3339`.
    pub fn fixed(rfc3339: &str) -> Result<Clock> {
        let t = DateTime::parse_from_rfc3339(rfc3339).map_err(|e| {
            Error::Invalid(format!(
                "time {rfc3339:?} is not RFC 3339 (e.g. 2026-12-29T10:00:00Z): {e}"
            ))
        })?;
        Ok(Clock {
            fixed: Some(t.with_timezone(&Utc)),
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Graph's timestamp format: `2026-11-29T18:05:42Z`.
    pub fn now_graph(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}
