//! Human durations: `"100us"`, `"250ms"`, `"30s"`, `"1h30m"`, `"7d"`.
//!
//! Units are required: a bare number in a routes file is ambiguous (seconds? millis?),
//! so `timeout = 30` is refused with a message that says to write `"30s"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A [`Duration`] written the way people write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{input}`: {why}; write a number and a unit, such as \"250ms\", \"30s\", \"5m\", \"1h30m\" or \"7d\""
)]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Each unit in microseconds.
const UNITS: &[(&str, u64)] = &[
    ("us", 1),
    ("ms", 1_000),
    ("s", 1_000_000),
    ("m", 60_000_000),
    ("h", 3_600_000_000),
    ("d", 86_400_000_000),
];

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |why| DurationError {
            input: input.to_owned(),
            why,
        };
        let mut rest = input.trim();
        if rest.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total_us: u64 = 0;
        let mut last_unit = u64::MAX;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail("expected a number"));
            }
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| fail("the number is too large"))?;
            rest = &rest[digits..];
            let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            if letters == 0 {
                return Err(fail("a unit is missing"));
            }
            let unit = &rest[..letters];
            let scale = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| fail("unknown unit (use us, ms, s, m, h or d)"))?;
            if scale >= last_unit {
                return Err(fail("units must go from largest to smallest, each once"));
            }
            last_unit = scale;
            rest = &rest[letters..];
            total_us = value
                .checked_mul(scale)
                .and_then(|us| total_us.checked_add(us))
                .ok_or_else(|| fail("it is too long"))?;
        }
        Ok(HumanDuration(Duration::from_micros(total_us)))
    }
}

impl fmt::Display for HumanDuration {
    /// The canonical form: `1h30m`, `250ms`, `100us`, `7d`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut us = u64::try_from(self.0.as_micros()).unwrap_or(u64::MAX);
        if us == 0 {
            return f.write_str("0s");
        }
        for (name, scale) in UNITS.iter().rev() {
            if us >= *scale {
                write!(f, "{}{name}", us / scale)?;
                us %= scale;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\", \"30s\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "durations need a unit: write \"{v}s\" or \"{v}ms\", not {v}"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "durations need a unit and whole numbers: write \"{}ms\", not {v}",
                    (v * 1000.0).round()
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> Result<u128, DurationError> {
        s.parse::<HumanDuration>().map(|d| d.0.as_millis())
    }

    #[test]
    fn parses_common_forms() {
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("7d"), Ok(604_800_000));
        assert_eq!(ms("0s"), Ok(0));
        let us = |s: &str| s.parse::<HumanDuration>().map(|d| d.0.as_micros());
        assert_eq!(us("100us"), Ok(100));
        assert_eq!(us("1ms500us"), Ok(1_500));
        assert_eq!(
            "1ms500us".parse::<HumanDuration>().map(|d| d.to_string()),
            Ok("1ms500us".to_owned())
        );
    }

    #[test]
    fn refuses_ambiguous_forms() {
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "30 seconds",
            "5x",
            "30m1h",
            "1s1s",
            "-1s",
        ] {
            let err = ms(bad).expect_err(bad).to_string();
            assert!(err.contains("write a number and a unit"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(micros in 0u64..10_000_000_000_000) {
            let d = HumanDuration(Duration::from_micros(micros));
            prop_assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        }
    }
}
