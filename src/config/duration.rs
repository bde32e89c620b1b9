//! Durations as an operator types them on a command line: a bare number of
//! seconds (`10`, `2.5`), which scripts and docs have always passed, or a
//! human one (`5s`, `500ms`, `2m`, `1h 30m`), read by the `humantime` crate.
//!
//! It lives with the config because it is shared vocabulary: the `tidings`
//! CLI and `tidings-bench` both parse their duration flags with it.

use std::time::Duration;

/// Parses `text` as seconds if it is a number, else as a humantime
/// duration. The error says which forms are accepted (clap prints it after
/// the flag's name).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{text:?} is not a number of seconds from 0 up"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!(
            "{text:?} is neither seconds (10, 2.5) nor a duration such as 5s, 500ms or 2m ({e})"
        )
    })
}

/// [`parse`] in seconds, for flags whose code counts in `f64` seconds.
pub fn parse_secs(text: &str) -> Result<f64, String> {
    parse(text).map(|d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse_secs("0.25"), Ok(0.25));
    }

    #[test]
    fn human_forms_are_read() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_secs("1m30s"), Ok(90.0));
    }

    #[test]
    fn nonsense_is_refused_with_the_accepted_forms() {
        for bad in ["-1", "NaN", "inf", "1e400", "", "5 parsecs", "s"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(&format!("{:?}", bad.trim())), "{bad}: {err}");
        }
        assert!(parse("soon").unwrap_err().contains("5s, 500ms or 2m"));
    }
}
