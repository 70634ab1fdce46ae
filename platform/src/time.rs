//! Instants between chrono (what the services compute with) and protobuf's `Timestamp` (what
//! their APIs and messages carry).

use chrono::{DateTime, Utc};

/// `at` as a protobuf `Timestamp`.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The earliest and the latest second a protobuf `Timestamp` may name: 0001-01-01T00:00:00Z
/// and 9999-12-31T23:59:59Z.
const SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// The instant a protobuf `Timestamp` names; `None` when it is not a valid one (nanoseconds
/// outside 0..1e9, or a second outside the years 1 to 9999).
pub fn instant(at: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&at.nanos) || !SECONDS.contains(&at.seconds) {
        return None;
    }
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use super::{instant, timestamp};

    #[test]
    fn an_instant_survives_the_round_trip_to_the_nanosecond() {
        let at = chrono::DateTime::from_timestamp(1_795_000_000, 123_456_789).expect("valid");
        let sent = timestamp(at);
        assert_eq!((sent.seconds, sent.nanos), (1_795_000_000, 123_456_789));
        assert_eq!(instant(&sent), Some(at));
    }

    #[test]
    fn out_of_range_nanoseconds_name_no_instant() {
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(instant(&bad), None);
    }
}
