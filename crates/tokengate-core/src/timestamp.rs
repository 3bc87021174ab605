//! Instants as the store keeps them (whole milliseconds since the Unix epoch, the same
//! integer on SQLite and PostgreSQL) and as the API shows them (RFC 3339, UTC).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The clock read as milliseconds since the epoch (no calendar date is worked out:
    /// every gateway request reads it).
    pub fn now() -> Timestamp {
        let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => Timestamp(millis(since)),
            // A clock set before 1970: whole milliseconds down, as `div_euclid` rounds.
            Err(e) => Timestamp(-millis(e.duration() + std::time::Duration::from_nanos(999_999))),
        }
    }

    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `self + secs`, saturating rather than overflowing on absurd inputs.
    pub const fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Parses RFC 3339 (`2026-11-22T10:00:00Z`) or whole Unix seconds.
    pub fn parse(s: &str) -> Option<Timestamp> {
        if let Ok(secs) = s.parse::<i64>() {
            return Some(Timestamp(secs.checked_mul(1000)?));
        }
        let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        Some(Timestamp((dt.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|dt| dt.format(&Rfc3339).ok())
            .unwrap_or_default()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_reads_the_clock_as_the_calendar_does() {
        let calendar = || (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let before = calendar();
        let now = Timestamp::now().as_millis();
        let after = calendar();
        assert!(before <= now && now <= after, "{before} <= {now} <= {after}");
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::parse("1700000000"), Some(Timestamp::from_millis(1_700_000_000_000)));
        assert_eq!(Timestamp::parse("yesterday"), None);
    }
}
