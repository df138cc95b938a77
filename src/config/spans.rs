//! Where in the file a value sits, from the parsed document's spans: errors point at it.

use crate::diagnostic::Source;

/// Where `needle` is inside `within` (so an error points at the offending key or value, not at
/// the table's header): read from the parsed document's spans, the first key named `needle`,
/// or with a quoted needle (`"\"x\""`) the first string value `x`, that starts inside `within`
/// (a key named in a string value, such as `port` in `host = "report.example.com"`, is no
/// match); the start of `within` when there is none.
pub(super) fn span_in(
    src: &Source<'_>,
    within: std::ops::Range<usize>,
    needle: &str,
) -> std::ops::Range<usize> {
    let Ok(doc) = toml::de::DeTable::parse(src.text) else {
        return within.start..within.start;
    };
    let want = match needle.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(value) => Want::Value(value),
        None => Want::Key(needle),
    };
    let mut best: Option<std::ops::Range<usize>> = None;
    find_in_table(doc.get_ref(), &want, &within, &mut best);
    best.unwrap_or(within.start..within.start)
}

/// What [`span_in`] looks for.
enum Want<'n> {
    Key(&'n str),
    Value(&'n str),
}

fn find_in_table(
    table: &toml::de::DeTable<'_>,
    want: &Want<'_>,
    within: &std::ops::Range<usize>,
    best: &mut Option<std::ops::Range<usize>>,
) {
    for (key, value) in table {
        if let Want::Key(k) = want
            && key.get_ref().as_ref() == *k
        {
            keep_first(key.span(), within, best);
        }
        find_in_value(value, want, within, best);
    }
}

fn find_in_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    want: &Want<'_>,
    within: &std::ops::Range<usize>,
    best: &mut Option<std::ops::Range<usize>>,
) {
    match value.get_ref() {
        toml::de::DeValue::String(v) => {
            if let Want::Value(w) = want
                && v.as_ref() == *w
            {
                keep_first(value.span(), within, best);
            }
        }
        toml::de::DeValue::Table(t) => find_in_table(t, want, within, best),
        toml::de::DeValue::Array(items) => {
            for item in items.iter() {
                find_in_value(item, want, within, best);
            }
        }
        _ => {}
    }
}

fn keep_first(
    span: std::ops::Range<usize>,
    within: &std::ops::Range<usize>,
    best: &mut Option<std::ops::Range<usize>>,
) {
    if within.contains(&span.start) && best.as_ref().is_none_or(|b| span.start < b.start) {
        *best = Some(span);
    }
}
