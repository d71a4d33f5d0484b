//! [`Expiry`]: a record's expiry time in Unix seconds, and the [`Clock`] that says what "now" is.
//!
//! The input rules of the API live here: a JSON integer or a string of ASCII digits, strictly in the
//! future, at most [`MAX_EXPIRE`]. Time is always read through a [`Clock`] so tests can inject it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The latest accepted expiry: 9999-12-31T23:59:59Z.
pub const MAX_EXPIRE: u64 = 253_402_300_799;

/// The default time to live of a record created without `expire`: 30 days.
pub const DEFAULT_TTL_SECS: u64 = 2_592_000;

/// An expiry time in Unix seconds, at most [`MAX_EXPIRE`].
///
/// Written as a decimal string in JSON (`"1427736345"`). Whether it lies in the future is checked
/// when it is parsed from input ([`Expiry::from_json`]); a stored one may since have passed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(u64);

/// Why a value is not an acceptable expiry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpiryError {
    /// Neither a JSON integer nor a string of ASCII digits (e.g. `null`, `1e10`, `5.0`, `"-1"`).
    #[error("expire must be Unix seconds, as a JSON integer or a string of ASCII digits")]
    Format,
    /// Not strictly after the current time.
    #[error("expire must be in the future (now is {now})")]
    NotInFuture {
        /// The time the value was checked against.
        now: u64,
    },
    /// After 9999-12-31T23:59:59Z.
    #[error("expire must be at most 253402300799 (9999-12-31T23:59:59Z)")]
    TooLate,
}

impl Expiry {
    /// Checks `seconds` against the rules: `now < seconds <= MAX_EXPIRE`.
    pub fn new_after(seconds: u64, now: u64) -> Result<Expiry, ExpiryError> {
        if seconds > MAX_EXPIRE {
            Err(ExpiryError::TooLate)
        } else if seconds <= now {
            Err(ExpiryError::NotInFuture { now })
        } else {
            Ok(Expiry(seconds))
        }
    }

    /// Parses a JSON value: a non-negative integer, or a string of ASCII digits.
    pub fn from_json(value: &Value, now: u64) -> Result<Expiry, ExpiryError> {
        let seconds = match value {
            Value::Number(number) => number.as_u64().ok_or(ExpiryError::Format)?,
            Value::String(text) => parse_digits(text)?,
            _ => return Err(ExpiryError::Format),
        };
        Expiry::new_after(seconds, now)
    }

    /// Parses text of ASCII digits (as on a command line), checked against `now`.
    pub fn parse(text: &str, now: u64) -> Result<Expiry, ExpiryError> {
        Expiry::new_after(parse_digits(text)?, now)
    }

    /// `now + ttl`, capped at [`MAX_EXPIRE`].
    pub fn after_ttl(now: u64, ttl_secs: u64) -> Expiry {
        Expiry(now.saturating_add(ttl_secs.max(1)).min(MAX_EXPIRE))
    }

    /// A stored value, trusted as written by this library (only the upper bound is enforced).
    pub(crate) fn from_stored(seconds: i64) -> Option<Expiry> {
        u64::try_from(seconds).ok().filter(|s| *s <= MAX_EXPIRE).map(Expiry)
    }

    /// The Unix time in seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// Whether the record is expired at `now` (`expire <= now`).
    pub fn is_expired_at(self, now: u64) -> bool {
        self.0 <= now
    }
}

fn parse_digits(text: &str) -> Result<u64, ExpiryError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExpiryError::Format);
    }
    // Only digits: the only failure left is overflow, which is past MAX_EXPIRE anyway.
    text.parse::<u64>().map_err(|_| ExpiryError::TooLate)
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expiry({})", self.0)
    }
}

impl serde::Serialize for Expiry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A source of the current Unix time in seconds.
///
/// The store reads time only through this trait, so tests and simulations can control it with
/// [`ManualClock`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current Unix time in seconds.
    fn now(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use guidstore::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// clock.advance(5);
/// assert_eq!(clock.now(), 1_005);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(now)))
    }

    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn from_json_applies_the_api_rules() {
        let cases: Vec<(Value, Result<u64, ExpiryError>)> = vec![
            (json!(1_800_000_000u64), Ok(1_800_000_000)),
            (json!("1800000000"), Ok(1_800_000_000)),
            (json!("0001800000000"), Ok(1_800_000_000)),
            (json!(NOW), Err(ExpiryError::NotInFuture { now: NOW })),
            (json!(NOW + 1), Ok(NOW + 1)),
            (json!(MAX_EXPIRE), Ok(MAX_EXPIRE)),
            (json!(MAX_EXPIRE + 1), Err(ExpiryError::TooLate)),
            (json!("99999999999999999999999"), Err(ExpiryError::TooLate)),
            (json!(-5), Err(ExpiryError::Format)),
            (json!(5.0), Err(ExpiryError::Format)),
            (json!(1e10), Err(ExpiryError::Format)),
            (json!("1e10"), Err(ExpiryError::Format)),
            (json!("+1800000000"), Err(ExpiryError::Format)),
            (json!(" 1800000000"), Err(ExpiryError::Format)),
            (json!("1800000000.0"), Err(ExpiryError::Format)),
            (json!("١٨٠٠٠٠٠٠٠٠"), Err(ExpiryError::Format)),
            (json!(""), Err(ExpiryError::Format)),
            (json!(null), Err(ExpiryError::Format)),
            (json!(true), Err(ExpiryError::Format)),
            (json!([1800000000]), Err(ExpiryError::Format)),
        ];
        for (value, expected) in cases {
            assert_eq!(Expiry::from_json(&value, NOW).map(Expiry::as_secs), expected, "{value}");
        }
    }

    #[test]
    fn serializes_as_a_decimal_string() {
        let expiry = Expiry::new_after(1_427_736_345, 0).unwrap();
        assert_eq!(serde_json::to_string(&expiry).unwrap(), "\"1427736345\"");
    }

    #[test]
    fn ttl_is_capped() {
        assert_eq!(Expiry::after_ttl(10, 5).as_secs(), 15);
        assert_eq!(Expiry::after_ttl(MAX_EXPIRE - 1, 100).as_secs(), MAX_EXPIRE);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,30}") {
            let _ = Expiry::parse(&text, NOW);
        }

        #[test]
        fn digits_round_trip(seconds in (NOW + 1)..=MAX_EXPIRE) {
            let expiry = Expiry::parse(&seconds.to_string(), NOW).unwrap();
            prop_assert_eq!(expiry.as_secs(), seconds);
            prop_assert_eq!(Expiry::from_json(&json!(seconds), NOW).unwrap(), expiry);
        }
    }
}
