//! Property tests for every parser of outside input: whatever the text, each answers a value
//! or a clear error, never a panic; and what parses round-trips where a canonical form exists.

use std::path::Path;

use ephemera::model::{
    Arn, HumanDuration, LeaseId, ProjectName, check_tag_value, parse_amount, printable,
};
use proptest::prelude::*;

/// Text with the characters that trip parsers: digits, units, separators, signs, exponents,
/// quotes, brackets, controls and non-ASCII.
fn tricky() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("0".to_owned()),
            Just("9".to_owned()),
            Just("e".to_owned()),
            Just("E".to_owned()),
            Just("-".to_owned()),
            Just("+".to_owned()),
            Just(".".to_owned()),
            Just(":".to_owned()),
            Just("/".to_owned()),
            Just("*".to_owned()),
            Just("=".to_owned()),
            Just("\"".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("{".to_owned()),
            Just("\n".to_owned()),
            Just("\u{1b}".to_owned()),
            Just("\u{202e}".to_owned()),
            Just("é".to_owned()),
            Just("h".to_owned()),
            Just("m".to_owned()),
            Just("s".to_owned()),
            Just("arn:aws:".to_owned()),
            Just("urn:uuid:".to_owned()),
            "[a-z0-9]{1,12}".prop_map(|s| s),
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn durations_parse_or_explain(s in tricky()) {
        match HumanDuration::parse(&s) {
            Ok(d) => prop_assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d)),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn amounts_parse_or_explain(s in tricky(), exp in any::<i32>()) {
        let _ = parse_amount(&s);
        // Any exponent, however large, answers at once (linear in the text).
        let _ = parse_amount(&format!("{s}e{exp}"));
        let _ = parse_amount(&format!("0.{s}e{exp}"));
    }

    #[test]
    fn arns_parse_or_explain(s in tricky()) {
        if let Ok(a) = Arn::parse(&s) {
            let _ = (a.resource_type(), a.name(), a.region(), a.resource_id());
        }
    }

    #[test]
    fn lease_ids_parse_loosely_and_print_canonically(s in tricky()) {
        if let Some(id) = LeaseId::parse_loose(&s) {
            prop_assert_eq!(LeaseId::parse_loose(&id.to_string()), Some(id));
        }
        let _ = s.parse::<LeaseId>();
    }

    #[test]
    fn names_and_tag_values_parse_or_explain(s in tricky()) {
        let _ = ProjectName::parse(&s);
        let _ = check_tag_value("owner", &s);
        let p = printable(&s);
        prop_assert!(!p.chars().any(|c| c.is_control()));
    }

    #[test]
    fn config_text_never_panics(s in tricky(), at in 0usize..64) {
        let base = ephemera::config::EXAMPLE;
        let cut = base.char_indices().map(|(i, _)| i).nth(at * 97).unwrap_or(base.len());
        let text = format!("{}{s}{}", &base[..cut], &base[cut..]);
        let _ = ephemera::config::Config::parse(Path::new("/etc/ephemera/e.toml"), &text, &|_| None);
    }

    #[test]
    fn rules_text_never_panics(s in tricky()) {
        let text = format!("[[project]]\nname = \"{s}\"\nlessees = [\"{s}\"]\ndefault_ttl = \"{s}\"\nmax_ttl = \"2h\"\ngrace = \"1h\"\n[handles]\n\"{s}\" = \"{s}\"\n");
        let _ = ephemera::policy::Policy::parse([(Path::new("r.toml"), text.as_str())]);
        let _ = ephemera::policy::Policy::parse([(Path::new("r.toml"), s.as_str())]);
    }

    #[test]
    fn acquire_bodies_never_panic(s in tricky()) {
        let _ = serde_json::from_str::<ephemera::lease::AcquireRequest>(&s);
        let body = format!("{{\"project\":\"{s}\",\"task\":\"{s}\",\"owner\":\"{s}\",\"ttl\":\"{s}\"}}");
        let _ = serde_json::from_str::<ephemera::lease::AcquireRequest>(&body);
    }
}
