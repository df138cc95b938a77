//! Evaluation of 1,000,000 synthetic resources against 100,000 leases, on one thread.
//!
//! Target: all 1M evaluated in under 1 s on one core; the 1M resources (ARN + packed tags,
//! as inventory holds them) take under 300 MB. Uses only the pure API
//! (`ephemera::policy::evaluate`), leases in a `HashMap<LeaseId, Lease>` keyed by id as the scan
//! task holds them. Generation is timed apart from evaluation; memory is read from
//! /proc/self/status (VmRSS before and after building the resources, VmHWM after).
//!
//! `cargo bench --bench evaluate` (env: BENCH_RESOURCES, BENCH_LEASES, BENCH_ROUNDS).

mod common;

use std::hint::black_box;
use std::time::Instant;

use chrono::DateTime;
use chrono::{TimeZone, Utc};
use common::{Counts, mb, status_kb};
use ephemera::model::IdentityTags;
use ephemera::model::Lease;
use ephemera::model::{LeaseId, Tags};
use ephemera::policy::Policy;
use ephemera::policy::evaluate;
use std::collections::HashMap;

fn main() {
    // `cargo test --benches` runs benches with --bench absent; do a tiny run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n_resources, n_leases, rounds) = if quick {
        (10_000, 1_000, 1)
    } else {
        (
            common::env_u64("BENCH_RESOURCES", 1_000_000) as usize,
            common::env_u64("BENCH_LEASES", 100_000) as usize,
            common::env_u64("BENCH_ROUNDS", 5).max(1),
        )
    };
    let now = Utc
        .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("valid time");
    let policy = common::policy();
    let keys = IdentityTags::default();

    let rss_start = status_kb("VmRSS");
    let t = Instant::now();
    let leases = common::lease_map(common::leases(n_leases, now));
    let lease_ids: Vec<String> = leases.keys().map(LeaseId::to_string).collect();
    let lease_time = t.elapsed();
    let rss_leases = status_kb("VmRSS");

    let t = Instant::now();
    let mut resources: Vec<(String, Tags)> = Vec::with_capacity(n_resources);
    for i in 0..n_resources as u64 {
        let s = common::resource(i, &lease_ids, false);
        let tags = s.packed_tags();
        resources.push((s.arn, tags));
    }
    let gen_time = t.elapsed();
    let rss_resources = status_kb("VmRSS");
    let hwm_built = status_kb("VmHWM");
    // Payload: the bytes the resources hold (tags packed, well-known keys as 3-byte codes), and
    // the tag keys and values as AWS sends them.
    let (mut arn_b, mut packed_b, mut key_b, mut val_b) = (0usize, 0usize, 0usize, 0usize);
    for (arn, tags) in &resources {
        arn_b += arn.len();
        packed_b += tags.packed_len();
        for (k, v) in tags.iter() {
            key_b += k.len();
            val_b += v.len();
        }
    }
    let per = |b: usize| b as f64 / n_resources as f64;

    println!(
        "evaluate: generated {n_leases} leases in {:.3} s (RSS +{:.1} MB), {n_resources} resources in {:.3} s",
        lease_time.as_secs_f64(),
        mb(rss_leases.saturating_sub(rss_start)),
        gen_time.as_secs_f64(),
    );
    println!(
        "evaluate: memory: resources RSS delta {:.1} MB ({:.0} bytes/resource), VmRSS {:.1} MB, VmHWM {:.1} MB after building",
        mb(rss_resources.saturating_sub(rss_leases)),
        rss_resources.saturating_sub(rss_leases) as f64 * 1024.0 / n_resources as f64,
        mb(rss_resources),
        mb(hwm_built),
    );
    println!(
        "evaluate: memory: payload {:.0} bytes/resource (ARN {:.0}, packed tags {:.0} for keys of {:.0} and values of {:.0} bytes as read) + {} bytes of (String, Tags) per Vec slot + 2 heap blocks",
        per(arn_b + packed_b),
        per(arn_b),
        per(packed_b),
        per(key_b),
        per(val_b),
        std::mem::size_of::<(String, Tags)>(),
    );

    let mut times = Vec::with_capacity(rounds as usize);
    let mut counts = Counts::default();
    for _ in 0..rounds {
        counts = Counts::default();
        let mut grace_secs: u64 = 0;
        let t = Instant::now();
        let place = ephemera::policy::Place {
            account: "123456789012",
            ous: &[],
            resource_type: "ec2:volume",
            image: None,
        };
        for (arn, tags) in &resources {
            let e = evaluate(
                black_box(arn),
                tags,
                |id| leases.get(&id),
                &policy,
                &keys,
                &place,
                now,
            );
            counts.add(e.verdict);
            grace_secs = grace_secs.wrapping_add(e.rule.grace.as_secs());
        }
        times.push(t.elapsed().as_secs_f64());
        black_box(grace_secs);
    }
    assert_eq!(
        counts.total(),
        n_resources as u64,
        "every resource evaluated"
    );
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let best = sorted[0];
    let median = sorted[sorted.len() / 2];
    println!(
        "evaluate: {n_resources} resources x {n_leases} leases, one thread, {rounds} rounds: median {:.3} s ({:.0} resources/s, {:.0} ns/resource), best {:.3} s, all [{}]",
        median,
        n_resources as f64 / median,
        median * 1e9 / n_resources as f64,
        best,
        times
            .iter()
            .map(|t| format!("{t:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!("evaluate: verdicts: {}", counts.line());
    breakdown(&resources, &leases, &policy, &keys, now);
    println!(
        "evaluate: VmHWM {:.1} MB at the end (target: median < 1 s; resources < 300 MB)",
        mb(status_kb("VmHWM"))
    );
    drop(resources);
}

/// Where evaluation's time goes: the parts of `evaluate` timed alone over the same resources
/// (one round each): the seven tag scans it makes (project, protect, then lease, project,
/// task, owner, then lease again), the lease tag's parse and lookup, and the allowlist check.
fn breakdown(
    resources: &[(String, Tags)],
    leases: &HashMap<LeaseId, Lease>,
    policy: &Policy,
    keys: &IdentityTags,
    now: DateTime<chrono::Utc>,
) {
    let n = resources.len() as f64;
    let t = Instant::now();
    let mut found = 0usize;
    for (_, tags) in resources {
        for key in [
            &keys.project,
            &keys.protect,
            &keys.lease,
            &keys.project,
            &keys.task,
            &keys.owner,
            &keys.lease,
        ] {
            found += tags.get(black_box(key)).map_or(0, str::len);
        }
    }
    let scans = t.elapsed().as_secs_f64();
    black_box(found);
    let t = Instant::now();
    let mut hits = 0usize;
    for (_, tags) in resources {
        if let Some(id) = tags.get(&keys.lease).and_then(LeaseId::parse_loose)
            && leases.contains_key(black_box(&id))
        {
            hits += 1;
        }
    }
    let lookups = t.elapsed().as_secs_f64();
    // The same lookups keyed by the tag's text, as before lease ids were parsed: what parsing
    // the tag costs.
    let by_text: HashMap<String, &Lease> = leases.iter().map(|(k, l)| (k.to_string(), l)).collect();
    let t = Instant::now();
    let mut text_hits = 0usize;
    for (_, tags) in resources {
        if let Some(id) = tags.get(&keys.lease)
            && by_text.contains_key(black_box(id))
        {
            text_hits += 1;
        }
    }
    let text_lookups = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut allowed = 0usize;
    for (arn, _) in resources {
        allowed += usize::from(policy.allowed(black_box(arn), now).is_some());
    }
    let allow = t.elapsed().as_secs_f64();
    println!(
        "evaluate: parts alone: 7 tag scans {:.0} ns/resource; lease-tag scan + parse + HashMap lookup {:.0} ns/resource ({hits} hits; by the tag's text, unparsed: {:.0} ns, {text_hits} hits); allowlist {:.0} ns/resource ({allowed} allowed)",
        scans * 1e9 / n,
        lookups * 1e9 / n,
        text_lookups * 1e9 / n,
        allow * 1e9 / n,
    );
}
