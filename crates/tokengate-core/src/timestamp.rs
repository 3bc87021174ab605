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

    /// The earliest instant RFC 3339 can write: `0000-01-01T00:00:00Z`.
    pub const EARLIEST: Timestamp = Timestamp(-62_167_219_200_000);
    /// The latest: `9999-12-31T23:59:59.999Z`.
    pub const LATEST: Timestamp = Timestamp(253_402_300_799_999);

    /// `self + secs`, kept within [`Timestamp::EARLIEST`]..=[`Timestamp::LATEST`] on
    /// absurd inputs (never overflowing, always writable as RFC 3339).
    pub const fn plus_secs(self, secs: i64) -> Timestamp {
        let ms = self.0.saturating_add(secs.saturating_mul(1000));
        Timestamp(if ms > Self::LATEST.0 {
            Self::LATEST.0
        } else if ms < Self::EARLIEST.0 {
            Self::EARLIEST.0
        } else {
            ms
        })
    }

    /// Whole Unix seconds, when RFC 3339 can write them.
    pub fn from_unix_secs(secs: i64) -> Option<Timestamp> {
        Some(Timestamp(secs.checked_mul(1000)?)).filter(|t| (Self::EARLIEST..=Self::LATEST).contains(t))
    }

    /// Parses RFC 3339 (`2026-11-22T10:00:00Z`) or whole Unix seconds; instants RFC
    /// 3339 cannot write (before year 0, after year 9999) are not read either.
    pub fn parse(s: &str) -> Option<Timestamp> {
        if let Ok(secs) = s.parse::<i64>() {
            return Timestamp::from_unix_secs(secs);
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

    #[test]
    fn instants_stay_writable() {
        assert_eq!(Timestamp::EARLIEST.to_rfc3339(), "0000-01-01T00:00:00Z");
        assert_eq!(Timestamp::LATEST.to_rfc3339(), "9999-12-31T23:59:59.999Z");
        for outside in ["-9223372036854775", "9223372036854775807", "253402300800", "-62167219201"] {
            assert_eq!(Timestamp::parse(outside), None, "{outside}");
        }
        assert_eq!(Timestamp::parse("253402300799"), Some(Timestamp::from_millis(253_402_300_799_000)));
        let now = Timestamp::now();
        assert_eq!(now.plus_secs(i64::MAX), Timestamp::LATEST);
        assert_eq!(now.plus_secs(i64::MIN), Timestamp::EARLIEST);
        assert!(!now.plus_secs(i64::MAX / 1000).to_rfc3339().is_empty());
    }
}
