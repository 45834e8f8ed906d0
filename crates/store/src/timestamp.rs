//! How both backends store a point in time: in UTC, to the microsecond.
//!
//! Postgres keeps microseconds, so every timestamp is truncated to them on the way in and
//! both backends give back exactly what they keep. SQLite has no time type; it gets
//! fixed-width RFC 3339 text (`2026-01-02T03:04:05.123456Z`), which sorts like the times it
//! names, so indexes on a timestamp column order by time.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type};
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A timestamp as stored: UTC, microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp(OffsetDateTime);

/// Every digit always present, so that text order is time order.
const SQLITE_FORMAT: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

impl Timestamp {
    /// The one place a time is rounded for storage: converted to UTC, truncated to the
    /// microsecond.
    pub(crate) fn new(time: OffsetDateTime) -> Self {
        let utc = time.to_offset(UtcOffset::UTC);
        let truncated = utc.nanosecond() / 1_000 * 1_000;
        // Cannot fail: the truncated value is below one second.
        Self(utc.replace_nanosecond(truncated).unwrap_or(utc))
    }

    pub(crate) fn get(self) -> OffsetDateTime {
        self.0
    }

    fn to_sqlite_text(self) -> Result<String, time::error::Format> {
        self.0.format(SQLITE_FORMAT)
    }

    fn from_sqlite_text(text: &str) -> Result<Self, time::error::Parse> {
        // Any RFC 3339 text is read, including what older versions wrote.
        OffsetDateTime::parse(text, &Rfc3339).map(Self::new)
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <OffsetDateTime as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.to_sqlite_text()?, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Self::from_sqlite_text(text)?)
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <OffsetDateTime as Decode<Postgres>>::decode(value).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use time::macros::datetime;

    use super::*;

    #[test]
    fn times_are_kept_in_utc_to_the_microsecond() {
        let stored = Timestamp::new(datetime!(2026-01-02 03:04:05.123456789 +02:00));
        assert_eq!(stored.get(), datetime!(2026-01-02 01:04:05.123456 UTC));
    }

    #[test]
    fn sqlite_text_is_fixed_width_and_sorts_by_time() {
        let times = [
            datetime!(2026-01-02 03:04:05 UTC),
            datetime!(2026-01-02 03:04:05.000001 UTC),
            datetime!(2026-01-02 03:04:05.5 UTC),
            datetime!(2026-01-02 03:04:06 UTC),
        ];
        let texts: Vec<String> = times
            .iter()
            .map(|t| Timestamp::new(*t).to_sqlite_text().unwrap())
            .collect();
        assert_eq!(texts[0], "2026-01-02T03:04:05.000000Z");
        assert!(texts.windows(2).all(|pair| pair[0] < pair[1]), "{texts:?}");
        for (time, text) in times.iter().zip(&texts) {
            assert_eq!(Timestamp::from_sqlite_text(text).unwrap().get(), *time);
        }
    }

    #[test]
    fn older_rfc_3339_text_is_still_read() {
        let read = Timestamp::from_sqlite_text("2026-01-02T05:04:05.5+02:00").unwrap();
        assert_eq!(read.get(), datetime!(2026-01-02 03:04:05.5 UTC));
    }
}
