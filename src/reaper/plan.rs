//! The deletion plan: which marked findings may be deleted now, in which order, and why the
//! others wait.
//!
//! Architecture Invariant: pure. Candidates, enforcement settings, walk completeness, project
//! inventory and `now` in; an ordered plan out. Every guard that does not need AWS is here, so
//! the scheduled pass, `ephemera plan` and on-call reaping decide alike.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{AwsAccount, Enforcement};
use crate::model::{Arn, ControllerRef, ResourceType, Verdict};
use crate::resource::{ReapCandidate, WalkRecord};

/// Where one candidate stands. Why it is held goes in `held_reason`: the candidate's own
/// `reason` (the finding's) sits beside it in the same JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "held_reason", rename_all = "kebab-case")]
pub enum Status {
    /// To be deleted this pass (after the last-moment checks).
    Due,
    /// Its deadline is still ahead.
    Scheduled,
    /// Past its deadline but held back, and why.
    Held(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    #[serde(flatten)]
    pub candidate: ReapCandidate,
    #[serde(flatten)]
    pub status: Status,
    /// A due controller's members (what its deletion takes with it), each due on its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<ReapCandidate>,
}

/// A cap that stopped deletions this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapHit {
    /// `pass`, `account:ID` or `project:NAME`.
    pub scope: String,
    pub due: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Due items first, in deletion order; then the held and scheduled ones.
    pub items: Vec<PlanItem>,
    pub capped: Vec<CapHit>,
}

impl Plan {
    pub fn due(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| i.status == Status::Due)
    }
}

/// What a reviewed plan pins of an item, hashed (`sha256:` and hex): everything a deletion by
/// hand decides on — the finding, its verdict and reason, the lease, owner and owner tag, when
/// the lease ended, whether it was tagless, its controller and the members going with it, an
/// interrupted delete. Not its deadline (reaping by hand does not wait for it) nor what every
/// pass moves without changing the item (attempts, skips, a creator found in CloudTrail), so
/// a plan stays valid across passes that change nothing.
pub fn state_digest(item: &PlanItem) -> String {
    use sha2::Digest as _;
    let c = &item.candidate;
    let mut members: Vec<(&str, i64, Option<&str>)> = item
        .members
        .iter()
        .map(|m| (m.arn.as_str(), m.finding_id, m.lease_id.as_deref()))
        .collect();
    members.sort_unstable();
    // A tuple serialises as an array: its order is fixed, unlike a map's.
    let pinned = (
        c.finding_id,
        c.arn.as_str(),
        c.project.as_ref().map(|p| p.as_str()),
        c.verdict.as_str(),
        &c.reason,
        &c.lease_id,
        &c.owner,
        &c.owner_tag,
        c.lease_ended_at.map(|t| t.timestamp_millis()),
        c.tagless,
        c.controller.as_ref().map(ToString::to_string),
        (&c.reap_state, members, step(c)),
    );
    let bytes = serde_json::to_vec(&pinned).unwrap_or_default();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The digest of a reviewed plan: of its items' ARNs and state digests, in ARN order (the
/// same items in any order are the same plan).
pub fn plan_digest<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::Digest as _;
    let mut lines: Vec<String> = items
        .into_iter()
        .map(|(arn, digest)| format!("{arn} {digest}\n"))
        .collect();
    lines.sort_unstable();
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(lines.concat()))
    )
}

/// A plan as reviewed, to be applied exactly: each item's ARN with its [`state_digest`] when
/// the plan was written, and the plan's [`plan_digest`] (which the audit records name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedPlan {
    pub digest: String,
    pub items: BTreeMap<String, String>,
}

impl ReviewedPlan {
    /// The plan of `items` (ARN, state digest) if `digest` is theirs; else what is wrong.
    pub fn new(digest: &str, items: BTreeMap<String, String>) -> Result<Self, String> {
        let want = plan_digest(items.iter().map(|(a, d)| (a.as_str(), d.as_str())));
        if digest != want {
            return Err(format!(
                "the plan's digest is {digest} but its items hash to {want}: the file was edited"
            ));
        }
        Ok(ReviewedPlan {
            digest: want,
            items,
        })
    }

    /// Why `item` may not be reaped under this plan: not in it, or changed since.
    pub fn refuses(&self, item: &PlanItem) -> Option<String> {
        let arn = item.candidate.arn.as_str();
        match self.items.get(arn) {
            None => Some("not in the reviewed plan".to_owned()),
            Some(d) if *d != state_digest(item) => Some(format!(
                "changed since the plan was written (now {} for lease {}, {}): write and review a new plan",
                item.candidate.verdict.as_str(),
                item.candidate.lease_id.as_deref().unwrap_or("none"),
                item.candidate.reason
            )),
            Some(_) => None,
        }
    }
}

/// What a pass's walks know: which (account, region) walked completely, and which types'
/// sweeps failed there. Nothing of an incomplete walk, or of a failed sweep's type in its
/// (account, region), is deleted.
#[derive(Debug, Clone, Default)]
pub struct Knowledge {
    /// The (account, region) walked completely, with the types whose sweep failed there.
    complete: HashMap<(String, String), HashSet<ResourceType>>,
}

impl Knowledge {
    pub fn of(walks: &[WalkRecord]) -> Self {
        let complete = walks
            .iter()
            .filter(|w| w.is_complete())
            .map(|w| {
                (
                    (w.account.clone(), w.region.clone()),
                    w.incomplete_types().collect(),
                )
            })
            .collect();
        Knowledge { complete }
    }

    /// Why this pass does not know enough to delete `c`, if it does not.
    fn gap(&self, c: &ReapCandidate) -> Option<String> {
        let Some(failed) = self.complete.get(&(c.account.clone(), c.region.clone())) else {
            return Some(format!(
                "the walk of {}/{} was incomplete this pass",
                c.account, c.region
            ));
        };
        let t = ResourceType::parse(&c.resource_type)?;
        failed.contains(&t).then(|| {
            format!(
                "the sweep of {t} in {}/{} was incomplete this pass",
                c.account, c.region
            )
        })
    }
}

/// What the plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub enforcement: &'a Enforcement,
    /// What this pass's walks know; `None` when there was no pass (on-call reaping), in which
    /// case the last-moment re-read stands in for it.
    pub knowledge: Option<&'a Knowledge>,
    /// The accounts audited now, by id, with their settings: whether deletions run there
    /// (shared accounts are report-only by default), whether they are dedicated to ephemeral
    /// work (the only ones where a resource with no tags at all may be deleted), their cap
    /// and deletion window. Nothing is deleted in an account not listed.
    pub accounts: &'a HashMap<String, AwsAccount>,
    /// Live resources per project (`unknown` for those without one), for the share cap.
    pub inventory: &'a HashMap<String, u64>,
    /// Why reaping of `unknown-lease` and `released` resources is suspended (a store restored
    /// from a backup has forgotten the leases made since), if it is.
    pub suspended: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// On-call reaping: the deadline (and retry back-off) do not apply; every other guard does.
    pub manual: bool,
    /// The live resources that controllers' tags claim.
    pub controlled: &'a Controlled,
}

/// What the store knows of live controlled resources: each controller's live members, and the
/// controller above a controller that has one (the Auto Scaling group a stack made).
#[derive(Debug, Clone, Default)]
pub struct Controlled {
    members: HashMap<ControllerRef, Vec<Arn>>,
    parent: HashMap<ControllerRef, ControllerRef>,
}

/// How deep controllers nest at most (a stack's node group's Auto Scaling group's instance is
/// three); a loop of copied tags stops here instead of spinning.
const MAX_NESTING: usize = 8;

impl Controlled {
    /// From the live resources whose tags name a controller, with that controller.
    pub fn of(rows: impl IntoIterator<Item = (Arn, ControllerRef)>) -> Self {
        let mut out = Controlled::default();
        for (arn, controller) in rows {
            out.note(&arn, &controller);
            out.members.entry(controller).or_default().push(arn);
        }
        out
    }

    /// Notes that `arn`, if it is a controller itself, sits below `controller`.
    fn note(&mut self, arn: &Arn, controller: &ControllerRef) {
        if let Some(own) = ControllerRef::of_resource(arn, &controller.account, &controller.region)
            && own != *controller
        {
            self.parent.insert(own, controller.clone());
        }
    }

    /// The outermost controller above `r` (`r` itself when none is).
    fn top<'a>(&'a self, r: &'a ControllerRef) -> &'a ControllerRef {
        let mut at = r;
        for _ in 0..MAX_NESTING {
            match self.parent.get(at) {
                Some(p) => at = p,
                None => break,
            }
        }
        at
    }

    /// Every live member below `r`, members of members included.
    pub fn all_members(&self, r: &ControllerRef) -> Vec<&Arn> {
        let mut out = Vec::new();
        let mut level = vec![r.clone()];
        for _ in 0..MAX_NESTING {
            let mut next = Vec::new();
            for c in &level {
                for arn in self.members.get(c).into_iter().flatten() {
                    out.push(arn);
                    if let Some(own) = ControllerRef::of_resource(arn, &c.account, &c.region)
                        && own != *c
                    {
                        next.push(own);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        out
    }
}

/// A due controller and the members its deletion takes (or a lone item, with none).
struct Group {
    head: ReapCandidate,
    members: Vec<ReapCandidate>,
}

impl Group {
    /// What it deletes: the caps count a stack of twenty as twenty-one.
    fn weight(&self) -> u64 {
        1 + self.members.len() as u64
    }

    /// Held for `reason`, head and members alike.
    fn hold(self, reason: &str, rest: &mut Vec<PlanItem>) {
        for c in std::iter::once(self.head).chain(self.members) {
            rest.push(PlanItem {
                candidate: c,
                status: Status::Held(reason.to_owned()),
                members: Vec::new(),
            });
        }
    }
}

/// Folds controlled candidates into their outermost controller: a controller is due only when
/// it is due itself and every live member of it is due too; a member is never due alone.
fn group_by_controller(
    entries: Vec<(ReapCandidate, Status)>,
    controlled: &Controlled,
) -> (Vec<Group>, Vec<PlanItem>) {
    // The candidates' own tags say where they sit, too (a plan without a store row for them).
    let mut controlled = controlled.clone();
    for (c, _) in &entries {
        if let Some(up) = &c.controller {
            controlled.note(&c.arn, up);
        }
    }
    let own = |c: &ReapCandidate| ControllerRef::of_resource(&c.arn, &c.account, &c.region);
    // Heads: candidates that are controllers under no other.
    let heads: HashMap<ControllerRef, usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| c.controller.is_none())
        .filter_map(|(i, (c, _))| own(c).map(|r| (r, i)))
        .collect();
    let mut members_of: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut orphans: Vec<(usize, ControllerRef)> = Vec::new();
    for (i, (c, _)) in entries.iter().enumerate() {
        let Some(up) = &c.controller else { continue };
        let top = controlled.top(up);
        match heads.get(top) {
            Some(&h) => members_of.entry(h).or_default().push(i),
            None => orphans.push((i, top.clone())),
        }
    }
    let mut statuses: Vec<Option<Status>> = entries.iter().map(|(_, s)| Some(s.clone())).collect();
    let mut grouped: HashMap<usize, Vec<usize>> = HashMap::new();
    for (r, &h) in &heads {
        let mine = members_of.remove(&h).unwrap_or_default();
        if entries[h].1 != Status::Due {
            let why = match &entries[h].1 {
                Status::Held(why) => format!("held: {why}"),
                _ => "not due yet".to_owned(),
            };
            for &m in &mine {
                if entries[m].1 == Status::Due {
                    statuses[m] = Some(Status::Held(format!(
                        "controlled by {r}, which is {why}: reaped only with it, never alone"
                    )));
                }
            }
            continue;
        }
        let due: HashSet<&str> = mine
            .iter()
            .filter(|&&m| entries[m].1 == Status::Due)
            .map(|&m| entries[m].0.arn.as_str())
            .collect();
        let waiting: Vec<&str> = controlled
            .all_members(r)
            .into_iter()
            .map(Arn::as_str)
            .chain(mine.iter().map(|&m| entries[m].0.arn.as_str()))
            .filter(|a| !due.contains(a))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Some(first) = waiting.first() {
            let why = match mine.iter().find(|&&m| entries[m].0.arn.as_str() == *first) {
                Some(&m) => match &entries[m].1 {
                    Status::Held(why) => format!("held: {why}"),
                    _ => "not due yet".to_owned(),
                },
                None => "not marked for deletion".to_owned(),
            };
            let others = match waiting.len() - 1 {
                0 => String::new(),
                n => format!(" (and {n} more)"),
            };
            let reason = format!(
                "member {first} is {why}{others}: a controller goes only once every member is due"
            );
            statuses[h] = Some(Status::Held(reason));
            for &m in &mine {
                if entries[m].1 == Status::Due {
                    statuses[m] = Some(Status::Held(format!(
                        "controlled by {r}, which waits for its other members: reaped only \
                         with it, never alone"
                    )));
                }
            }
        } else {
            for &m in &mine {
                statuses[m] = None;
            }
            grouped.insert(h, mine);
        }
    }
    for (i, top) in orphans {
        if entries[i].1 == Status::Due {
            statuses[i] = Some(Status::Held(format!(
                "controlled by {top}, which is not marked for deletion: reaped only with it, \
                 never alone"
            )));
        }
    }
    let mut slots: Vec<Option<ReapCandidate>> = entries.into_iter().map(|(c, _)| Some(c)).collect();
    let mut due = Vec::new();
    let mut rest = Vec::new();
    for i in 0..slots.len() {
        let Some(status) = statuses[i].take() else {
            continue;
        };
        let Some(head) = slots[i].take() else {
            continue;
        };
        if status != Status::Due {
            rest.push(PlanItem {
                candidate: head,
                status,
                members: Vec::new(),
            });
            continue;
        }
        let members = grouped
            .remove(&i)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| slots[m].take())
            .collect();
        due.push(Group { head, members });
    }
    (due, rest)
}

/// What reaping a candidate does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Delete,
    /// An access key not yet deactivated by ephemera: made inactive (reversible), deleted
    /// only once `enforcement.deactivation_grace` has passed since.
    Deactivate,
}

/// The step reaping `c` takes: an access key is deactivated first, then deleted; anything
/// else is deleted.
pub fn step(c: &ReapCandidate) -> Step {
    if ResourceType::parse(&c.resource_type) == Some(ResourceType::IamAccessKey)
        && c.deactivated_at.is_none()
    {
        Step::Deactivate
    } else {
        Step::Delete
    }
}

/// `c` with its deadline no earlier than the end of its deactivation grace, when it is an
/// access key ephemera deactivated: until then it stays, inactive, for its owner to switch
/// back on.
fn with_deactivation_grace(mut c: ReapCandidate, en: &Enforcement) -> ReapCandidate {
    if let Some(at) = c.deactivated_at
        && ResourceType::parse(&c.resource_type) == Some(ResourceType::IamAccessKey)
    {
        c.deadline = c.deadline.max(at + en.deactivation_grace.to_chrono());
    }
    c
}

/// Deletion order by type ([`super::aws::Kind::rank`]); a type with no deleter (never deleted)
/// sorts with the types that depend on nothing ([`super::aws::REST`]).
pub fn type_rank(resource_type: &str) -> u8 {
    ResourceType::parse(resource_type).map_or(super::aws::REST, |t| super::aws::kind(t).rank)
}

pub fn plan(candidates: Vec<ReapCandidate>, input: PlanInput<'_>) -> Plan {
    let en = input.enforcement;
    let mut entries: Vec<(ReapCandidate, Status)> = Vec::with_capacity(candidates.len());
    for c in candidates {
        let c = with_deactivation_grace(c, en);
        let account = input.accounts.get(&c.account);
        let status = if !input.manual && c.deadline > input.now {
            Status::Scheduled
        } else if let Some(why) = input.suspended
            && matches!(c.verdict, Verdict::UnknownLease | Verdict::Released)
        {
            Status::Held(format!(
                "reaping of unknown-lease and released resources is suspended: {why} \
                 (`ephemera store confirm` once the leases are right)"
            ))
        } else if account.is_none() {
            Status::Held(format!(
                "account {} is not audited now (not configured, or no longer in the organization)",
                c.account
            ))
        } else if c.tagless && !account.is_some_and(AwsAccount::dedicated) {
            Status::Held(format!(
                "no tags at all, in account {} which is not dedicated to ephemeral work \
                 (aws.accounts.dedicated): a never-tagged resource there may be production; \
                 reported only",
                c.account
            ))
        } else if !account.is_some_and(AwsAccount::reaps) {
            Status::Held(format!(
                "account {} is report-only (shared accounts are, unless aws.accounts.armed \
                 or their OU's says otherwise)",
                c.account
            ))
        } else if !ResourceType::parse(&c.resource_type)
            .is_some_and(|t| en.deletable_types.contains(&t))
        {
            Status::Held(format!(
                "type {} is not in enforcement.deletable_types (report only)",
                c.resource_type
            ))
        } else if let Some(gap) = input.knowledge.and_then(|k| k.gap(&c)) {
            Status::Held(gap)
        } else if let Some(w) = account
            .and_then(|a| a.settings.window.as_ref())
            .or(en.window.as_ref())
            && !w.contains(input.now)
        {
            Status::Held("outside the deletion window".into())
        } else if let Some(retry) = c.next_attempt_at
            && !input.manual
            && retry > input.now
        {
            Status::Held(format!(
                "retrying after {} ({} failed attempts)",
                retry.to_rfc3339(),
                c.attempts
            ))
        } else {
            Status::Due
        };
        entries.push((c, status));
    }
    let (due, mut rest) = group_by_controller(entries, input.controlled);

    let mut capped = Vec::new();
    // Share cap: per project, due deletions against its live inventory (rounded up, so a
    // project of one resource can lose it).
    let mut per_project: BTreeMap<String, u64> = BTreeMap::new();
    for g in &due {
        *per_project.entry(project_key(&g.head)).or_default() += g.weight();
    }
    let mut over: HashSet<String> = HashSet::new();
    for (project, n) in per_project {
        let live = input.inventory.get(&project).copied().unwrap_or(0).max(n);
        let limit = (live * u64::from(en.max_project_share_percent)).div_ceil(100);
        if n > limit {
            capped.push(CapHit {
                scope: format!("project:{project}"),
                due: n,
                limit,
            });
            over.insert(project);
        }
    }
    let (due, held): (Vec<_>, Vec<_>) = due
        .into_iter()
        .partition(|g| !over.contains(&project_key(&g.head)));
    for g in held {
        let reason = format!(
            "project {} is over its cap of {}% of its inventory this pass",
            project_key(&g.head),
            en.max_project_share_percent
        );
        g.hold(&reason, &mut rest);
    }
    // Account cap: an account with more due than its cap deletes nothing this pass, and the
    // others go on (one noisy account does not halt the organization).
    let mut per_account: BTreeMap<&str, u64> = BTreeMap::new();
    for g in &due {
        *per_account.entry(g.head.account.as_str()).or_default() += g.weight();
    }
    let mut over: HashMap<String, u32> = HashMap::new();
    for (account, n) in per_account {
        let limit = input
            .accounts
            .get(account)
            .and_then(|a| a.settings.max_deletions_per_pass)
            .unwrap_or(en.max_deletions_per_pass);
        if n > u64::from(limit) {
            capped.push(CapHit {
                scope: format!("account:{account}"),
                due: n,
                limit: u64::from(limit),
            });
            over.insert(account.to_owned(), limit);
        }
    }
    let (mut due, held): (Vec<_>, Vec<_>) = due
        .into_iter()
        .partition(|g| !over.contains_key(&g.head.account));
    for g in held {
        let reason = format!(
            "account {} has more deletions due than its max_deletions_per_pass = {} this pass",
            g.head.account, over[&g.head.account]
        );
        g.hold(&reason, &mut rest);
    }
    // Absolute cap: a pass that would delete more than the cap deletes nothing, since a
    // surge that large more likely means lost leases than a real clean-up.
    let total: u64 = due.iter().map(Group::weight).sum();
    if total > u64::from(en.max_deletions_per_pass) {
        capped.push(CapHit {
            scope: "pass".into(),
            due: total,
            limit: u64::from(en.max_deletions_per_pass),
        });
        let reason = format!(
            "{total} deletions due exceed enforcement.max_deletions_per_pass = {}",
            en.max_deletions_per_pass
        );
        for g in due.drain(..) {
            g.hold(&reason, &mut rest);
        }
    }

    due.sort_by(|a, b| {
        let (a, b) = (&a.head, &b.head);
        (type_rank(&a.resource_type), a.deadline, &a.arn).cmp(&(
            type_rank(&b.resource_type),
            b.deadline,
            &b.arn,
        ))
    });
    rest.sort_by(|a, b| {
        (a.candidate.deadline, &a.candidate.arn).cmp(&(b.candidate.deadline, &b.candidate.arn))
    });
    let mut items: Vec<PlanItem> = due
        .into_iter()
        .map(|g| PlanItem {
            candidate: g.head,
            status: Status::Due,
            members: g.members,
        })
        .collect();
    items.extend(rest);
    Plan { items, capped }
}

fn project_key(c: &ReapCandidate) -> String {
    c.project
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeletionWindow, Weekday};
    use crate::model::{Arn, Decision, ProjectName, Source, Verdict, WalkOutcome};
    use crate::resource::{SweepRecord, TypeSweepRecord};
    use chrono::{TimeDelta, TimeZone};

    fn now() -> DateTime<Utc> {
        // A Wednesday.
        Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0)
            .single()
            .expect("time")
    }

    /// A plan item is one JSON object: the finding's reason and, when held, why, each once
    /// (they were both `reason`, and a parser kept whichever came last).
    #[test]
    fn a_held_item_keeps_the_finding_reason_beside_why_it_is_held() {
        let item = PlanItem {
            candidate: cand("arn:a", "ec2:volume", "web", -5),
            status: Status::Held("outside the deletion window".into()),
            members: Vec::new(),
        };
        let text = serde_json::to_string(&item).expect("serializes");
        assert_eq!(text.matches("\"reason\":").count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["reason"], "lease expired", "{text}");
        assert_eq!(v["status"], "held", "{text}");
        assert_eq!(v["held_reason"], "outside the deletion window", "{text}");
        let due = PlanItem {
            candidate: cand("arn:a", "ec2:volume", "web", -5),
            status: Status::Due,
            members: Vec::new(),
        };
        let v = serde_json::to_value(&due).expect("json");
        assert_eq!(v["status"], "due");
        assert!(v.get("held_reason").is_none(), "{v}");
    }

    /// Every field a deletion by hand decides on changes an item's digest; what passes move
    /// (deadline, attempts, skips, the creator, the status) does not.
    #[test]
    fn a_state_digest_pins_what_a_deletion_decides_on() {
        let item = |c: ReapCandidate, members: Vec<ReapCandidate>| PlanItem {
            candidate: c,
            status: Status::Due,
            members,
        };
        let base = cand("vol-1", "ec2:volume", "web", -5);
        let d0 = state_digest(&item(base.clone(), Vec::new()));
        assert!(d0.starts_with("sha256:") && d0.len() == 7 + 64, "{d0}");
        type Change = fn(&mut ReapCandidate);
        let pinned: [(&str, Change); 13] = [
            ("finding", |c| c.finding_id = 2),
            ("arn", |c| {
                c.arn = Arn::parse("arn:aws:ec2:us-east-1:111111111111:volume/vol-2").expect("ARN")
            }),
            ("project", |c| {
                c.project = Some(ProjectName::parse("data").expect("name"))
            }),
            ("verdict", |c| c.verdict = Verdict::Released),
            ("reason", |c| c.reason = "lease released".into()),
            ("lease", |c| c.lease_id = Some("L1".into())),
            ("owner", |c| c.owner = Some("bob@example.com".into())),
            ("owner tag", |c| c.owner_tag = Some("bob".into())),
            ("lease end", |c| c.lease_ended_at = Some(now())),
            ("tagless", |c| c.tagless = true),
            ("controller", |c| {
                c.controller = ControllerRef::of_resource(
                    &Arn::parse("arn:aws:cloudformation:us-east-1:111111111111:stack/s/1")
                        .expect("ARN"),
                    "111111111111",
                    "us-east-1",
                )
            }),
            ("interrupted delete", |c| {
                c.reap_state = Some("deleting".into())
            }),
            ("project gone", |c| c.project = None),
        ];
        for (what, change) in pinned {
            let mut c = base.clone();
            change(&mut c);
            assert_ne!(state_digest(&item(c, Vec::new())), d0, "{what} is pinned");
        }
        let moved: [(&str, Change); 7] = [
            ("deadline", |c| c.deadline += TimeDelta::hours(1)),
            ("attempts", |c| c.attempts = 3),
            ("next attempt", |c| c.next_attempt_at = Some(now())),
            ("last decision", |c| {
                c.last_decision = Some(Decision::Skipped)
            }),
            ("skips", |c| {
                c.skip_count = 4;
                c.last_skipped_at = Some(now());
            }),
            ("creator", |c| {
                c.creator = Some("arn:aws:iam::111111111111:user/ci".into());
                c.created_at = Some(now());
            }),
            ("source", |c| c.source = Source::Sweep),
        ];
        for (what, change) in moved {
            let mut c = base.clone();
            change(&mut c);
            assert_eq!(
                state_digest(&item(c, Vec::new())),
                d0,
                "{what} moves freely"
            );
        }
        let mut held = item(base.clone(), Vec::new());
        held.status = Status::Held("capped".into());
        assert_eq!(
            state_digest(&held),
            d0,
            "the status is the plan's, not the item's"
        );

        // The members going with a controller are pinned, in any order.
        let (m1, mut m2) = (
            cand("m-1", "ec2:instance", "web", -5),
            cand("m-2", "ec2:instance", "web", -5),
        );
        m2.finding_id = 7;
        let with = state_digest(&item(base.clone(), vec![m1.clone(), m2.clone()]));
        assert_ne!(with, d0, "members are pinned");
        assert_eq!(
            state_digest(&item(base.clone(), vec![m2.clone(), m1.clone()])),
            with,
            "in any order"
        );
        let mut m2_lease = m2.clone();
        m2_lease.lease_id = Some("L9".into());
        assert_ne!(
            state_digest(&item(base.clone(), vec![m1.clone(), m2_lease])),
            with
        );
        assert_ne!(state_digest(&item(base, vec![m1])), with, "a member fewer");
    }

    /// A reviewed plan checks its own digest (an edited file is refused), and refuses an item
    /// that is not in it or changed since; the same items in any order are the same plan.
    #[test]
    fn a_reviewed_plan_refuses_what_changed_or_was_not_reviewed() {
        let a = PlanItem {
            candidate: cand("vol-a", "ec2:volume", "web", -5),
            status: Status::Due,
            members: Vec::new(),
        };
        let mut b = a.clone();
        b.candidate.arn =
            Arn::parse("arn:aws:ec2:us-east-1:111111111111:volume/vol-b").expect("ARN");
        let items: BTreeMap<String, String> = [&a, &b]
            .iter()
            .map(|i| (i.candidate.arn.to_string(), state_digest(i)))
            .collect();
        let digest = plan_digest(items.iter().map(|(x, y)| (x.as_str(), y.as_str())));
        assert_eq!(
            plan_digest(items.iter().rev().map(|(x, y)| (x.as_str(), y.as_str()))),
            digest,
            "order does not matter"
        );
        let mut fewer = items.clone();
        fewer.pop_last();
        assert_ne!(
            plan_digest(fewer.iter().map(|(x, y)| (x.as_str(), y.as_str()))),
            digest
        );
        let plan = ReviewedPlan::new(&digest, items.clone()).expect("its own digest");
        assert_eq!(plan.digest, digest);
        assert_eq!(plan.refuses(&a), None);
        assert_eq!(plan.refuses(&b), None);

        let mut renewed = a.clone();
        renewed.candidate.verdict = Verdict::Leased;
        renewed.candidate.lease_id = Some("L1".into());
        let why = plan.refuses(&renewed).expect("changed");
        assert!(
            why.starts_with("changed since the plan was written (now leased for lease L1"),
            "{why}"
        );
        let mut stranger = a.clone();
        stranger.candidate.arn =
            Arn::parse("arn:aws:ec2:us-east-1:111111111111:volume/vol-c").expect("ARN");
        assert_eq!(
            plan.refuses(&stranger).as_deref(),
            Some("not in the reviewed plan")
        );

        let mut edited = items;
        edited.insert(stranger.candidate.arn.to_string(), state_digest(&stranger));
        let err = ReviewedPlan::new(&digest, edited).expect_err("edited");
        assert!(err.contains("the file was edited"), "{err}");
    }

    fn cand(arn: &str, ty: &str, project: &str, deadline_in_min: i64) -> ReapCandidate {
        ReapCandidate {
            finding_id: 1,
            arn: Arn::parse(&format!("arn:aws:ec2:us-east-1:111111111111:volume/{arn}"))
                .expect("an ARN"),
            account: "111111111111".into(),
            region: "us-east-1".into(),
            resource_type: ty.into(),
            project: Some(ProjectName::parse(project).expect("a project name")),
            verdict: Verdict::Expired,
            reason: "lease expired".into(),
            lease_id: None,
            owner: None,
            owner_tag: None,
            deadline: now() + TimeDelta::minutes(deadline_in_min),
            lease_ended_at: None,
            attempts: 0,
            next_attempt_at: None,
            reap_state: None,
            deactivated_at: None,
            last_decision: None,
            tagless: false,
            controller: None,
            source: Source::Tagging,
            created_at: None,
            creator: None,
            skip_count: 0,
            last_skipped_at: None,
        }
    }

    fn enforcement() -> Enforcement {
        Enforcement {
            deletable_types: vec![
                ResourceType::Ec2Instance,
                ResourceType::Ec2Volume,
                ResourceType::Ec2SecurityGroup,
                ResourceType::Ec2Snapshot,
                ResourceType::Ec2Image,
            ],
            max_deletions_per_pass: 10,
            max_project_share_percent: 50,
            ..Enforcement::default()
        }
    }

    fn statuses(p: &Plan) -> Vec<(String, String)> {
        p.items
            .iter()
            .map(|i| {
                let s = match &i.status {
                    Status::Due => "due".to_owned(),
                    Status::Scheduled => "scheduled".to_owned(),
                    Status::Held(r) => format!("held: {r}"),
                };
                (i.candidate.arn.resource_id().to_owned(), s)
            })
            .collect()
    }

    fn walk(region: &str, outcome: WalkOutcome, failed: &[ResourceType]) -> WalkRecord {
        let sweep = SweepRecord {
            started_at: now(),
            credentials_only: false,
            types: failed
                .iter()
                .map(|t| TypeSweepRecord {
                    resource_type: *t,
                    outcome: WalkOutcome::Incomplete,
                    reason: Some("throttled".into()),
                    listed: 0,
                    not_in_tagging: 0,
                })
                .chain([TypeSweepRecord {
                    resource_type: ResourceType::SqsQueue,
                    outcome: WalkOutcome::Complete,
                    reason: None,
                    listed: 3,
                    not_in_tagging: 1,
                }])
                .collect(),
        };
        WalkRecord {
            account: "111111111111".into(),
            region: region.into(),
            outcome,
            sweep: Some(sweep),
            ..WalkRecord::default()
        }
    }

    /// 111111111111 is shared but armed by its settings; 222222222222 is dedicated (so armed).
    fn accounts() -> HashMap<String, AwsAccount> {
        let mut shared = AwsAccount::new("111111111111");
        shared.settings.armed = Some(true);
        let mut dedicated = AwsAccount::new("222222222222");
        dedicated.settings.dedicated = Some(true);
        [shared, dedicated]
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect()
    }

    /// `cands` planned without a pass's walks, with `web` holding 100 live resources.
    fn plan_in(
        cands: Vec<ReapCandidate>,
        en: &Enforcement,
        accounts: &HashMap<String, AwsAccount>,
        now: DateTime<Utc>,
        manual: bool,
        suspended: Option<&str>,
    ) -> Plan {
        plan(
            cands,
            PlanInput {
                enforcement: en,
                knowledge: None,
                accounts,
                inventory: &[("web".to_owned(), 100)].into_iter().collect(),
                suspended,
                now,
                manual,
                controlled: &Controlled::default(),
            },
        )
    }

    fn run(cands: Vec<ReapCandidate>, en: &Enforcement, manual: bool) -> Plan {
        let mut dedicated = walk("us-east-1", WalkOutcome::Complete, &[]);
        dedicated.account = "222222222222".into();
        let walks = Knowledge::of(&[
            dedicated,
            walk("us-east-1", WalkOutcome::Complete, &[]),
            walk("eu-west-1", WalkOutcome::Incomplete, &[]),
            walk(
                "eu-north-1",
                WalkOutcome::Complete,
                &[ResourceType::Ec2Snapshot],
            ),
        ]);
        let inventory: HashMap<String, u64> = [("web".to_owned(), 100), ("data".to_owned(), 4)]
            .into_iter()
            .collect();
        plan(
            cands,
            PlanInput {
                enforcement: en,
                knowledge: Some(&walks),
                accounts: &accounts(),
                inventory: &inventory,
                suspended: None,
                now: now(),
                manual,
                controlled: &Controlled::default(),
            },
        )
    }

    const STACK: &str = "arn:aws:cloudformation:us-east-1:111111111111:stack/web/6f1c";
    const ASG: &str = "arn:aws:autoscaling:us-east-1:111111111111:autoScalingGroup:9e:autoScalingGroupName/web-asg";

    /// A due candidate at `arn` (of its ARN's type), its tags naming `controller` if any.
    fn ctl_cand(arn: &str, controller: Option<&str>) -> ReapCandidate {
        let arn = Arn::parse(arn).expect("an ARN");
        let mut c = cand("x", "ec2:volume", "web", -5);
        c.resource_type = arn.resource_type();
        c.arn = arn;
        c.controller = controller.map(|tags| {
            let tags =
                crate::model::Tags::from_pairs(tags.split(',').filter_map(|kv| kv.split_once('=')));
            ControllerRef::of_tags(&tags, &c.account, &c.region).expect("names a controller")
        });
        c
    }

    fn stack_tag() -> String {
        format!("aws:cloudformation:stack-id={STACK}")
    }

    fn controller_enforcement() -> Enforcement {
        let mut en = enforcement();
        en.deletable_types.extend(
            [
                "cloudformation:stack",
                "autoscaling:autoScalingGroup",
                "sqs:queue",
            ]
            .into_iter()
            .map(|t| ResourceType::parse(t).expect("a deletable type")),
        );
        en
    }

    fn plan_controlled(cands: Vec<ReapCandidate>, en: &Enforcement, live: &Controlled) -> Plan {
        plan(
            cands,
            PlanInput {
                enforcement: en,
                knowledge: None,
                accounts: &accounts(),
                inventory: &[("web".to_owned(), 100)].into_iter().collect(),
                suspended: None,
                now: now(),
                manual: false,
                controlled: live,
            },
        )
    }

    /// The live members the store would give for `members` of `controller`'s tags.
    fn live(rows: &[(&str, &str)]) -> Controlled {
        Controlled::of(rows.iter().map(|(arn, tags)| {
            let c = ctl_cand(arn, Some(tags));
            (c.arn, c.controller.expect("a controller"))
        }))
    }

    #[test]
    fn a_due_controller_is_one_item_with_its_members_and_they_never_go_alone() {
        let en = controller_enforcement();
        let queue = "arn:aws:sqs:us-east-1:111111111111:web-q";
        let instance = "arn:aws:ec2:us-east-1:111111111111:instance/i-1";
        let tag = stack_tag();
        let rows = [(queue, tag.as_str()), (instance, tag.as_str())];
        let cands = || {
            vec![
                ctl_cand(queue, Some(&tag)),
                ctl_cand(STACK, None),
                ctl_cand(instance, Some(&tag)),
            ]
        };
        // Everything due: one item, the stack, carrying both members.
        let p = plan_controlled(cands(), &en, &live(&rows));
        assert_eq!(
            statuses(&p),
            [("6f1c".to_owned(), "due".to_owned())],
            "{p:#?}"
        );
        let members: Vec<&str> = p.items[0].members.iter().map(|m| m.arn.as_str()).collect();
        assert_eq!(members.len(), 2);
        assert!(
            members.contains(&queue) && members.contains(&instance),
            "{members:?}"
        );
        let json = serde_json::to_value(&p.items[0]).expect("json");
        assert_eq!(json["members"].as_array().map(Vec::len), Some(2), "{json}");

        // A live member that is not marked holds the stack, and the marked one with it.
        let extra = "arn:aws:ec2:us-east-1:111111111111:volume/vol-live";
        let rows3 = [rows[0], rows[1], (extra, tag.as_str())];
        let p = plan_controlled(cands(), &en, &live(&rows3));
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert!(p.due().next().is_none(), "{s:?}");
        assert!(
            s["6f1c"].contains(&format!("member {extra} is not marked for deletion:"))
                && s["6f1c"].contains("every member is due"),
            "{s:?}"
        );
        let more = "arn:aws:ec2:us-east-1:111111111111:volume/vol-live-2";
        let rows4 = [
            rows[0],
            rows[1],
            (extra, tag.as_str()),
            (more, tag.as_str()),
        ];
        let p = plan_controlled(cands(), &en, &live(&rows4));
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert!(s["6f1c"].contains("for deletion (and 1 more):"), "{s:?}");
        assert!(
            s["i-1"].contains("controlled by") && s["i-1"].contains("never alone"),
            "{s:?}"
        );

        // A member held on its own (its type is report-only) holds the stack too.
        let mut narrow = en.clone();
        narrow
            .deletable_types
            .retain(|t| *t != ResourceType::SqsQueue);
        let p = plan_controlled(cands(), &narrow, &live(&rows));
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert!(
            s["6f1c"].contains(&format!("member {queue} is held: type sqs:queue")),
            "{s:?}"
        );
        assert!(s["i-1"].starts_with("held: controlled by"), "{s:?}");

        // The stack held on its own (its type report-only): its due members say why.
        let mut no_stacks = en.clone();
        no_stacks
            .deletable_types
            .retain(|t| t.as_str() != "cloudformation:stack");
        let p = plan_controlled(cands(), &no_stacks, &live(&rows));
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert!(
            s["i-1"].contains("which is held: type cloudformation:stack"),
            "{s:?}"
        );
        assert!(p.due().next().is_none());

        // The stack not yet due: its due members wait for it, never going alone.
        let mut later = cands();
        later[1].deadline = now() + TimeDelta::hours(1);
        let p = plan_controlled(later, &en, &live(&rows));
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert_eq!(s["6f1c"], "scheduled");
        assert!(s["i-1"].contains("which is not due yet"), "{s:?}");
        assert!(p.due().next().is_none());

        // The stack not marked at all: its members are held, whatever their own state.
        let p = plan_controlled(
            vec![ctl_cand(queue, Some(&tag)), ctl_cand(instance, Some(&tag))],
            &en,
            &live(&rows),
        );
        for (_, status) in statuses(&p) {
            assert!(
                status.contains("which is not marked for deletion"),
                "{status}"
            );
        }
    }

    #[test]
    fn nested_controllers_fold_into_the_outermost_and_caps_count_members() {
        let en = controller_enforcement();
        let instance = "arn:aws:ec2:us-east-1:111111111111:instance/i-2";
        let asg_tag = "aws:autoscaling:groupName=web-asg";
        let tag = stack_tag();
        // The instance names only its group; the group names the stack.
        let rows = [(instance, asg_tag), (ASG, tag.as_str())];
        let cands = vec![
            ctl_cand(instance, Some(asg_tag)),
            ctl_cand(ASG, Some(&tag)),
            ctl_cand(STACK, None),
        ];
        let p = plan_controlled(cands.clone(), &en, &live(&rows));
        assert_eq!(p.due().count(), 1, "{p:#?}");
        assert_eq!(p.items[0].candidate.arn.as_str(), STACK);
        assert_eq!(p.items[0].members.len(), 2);

        // Another instance of the group, live but not marked, holds the stack: members of
        // members count.
        let other = "arn:aws:ec2:us-east-1:111111111111:instance/i-3";
        let rows2 = [rows[0], rows[1], (other, asg_tag)];
        let p = plan_controlled(cands.clone(), &en, &live(&rows2));
        assert!(p.due().next().is_none(), "{p:#?}");
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert!(
            s["6f1c"].contains(&format!("member {other} is not marked")),
            "{s:?}"
        );

        // Three deletions against a cap of two: all held, the members with their stack.
        let mut capped = en.clone();
        capped.max_deletions_per_pass = 2;
        let p = plan_controlled(cands, &capped, &live(&rows));
        assert!(p.due().next().is_none());
        assert_eq!(p.capped[0].due, 3, "{:?}", p.capped);
        assert_eq!(p.items.len(), 3);
    }

    #[test]
    fn due_items_come_in_dependency_order_and_the_rest_say_why() {
        let mut other_region = cand("vol-eu", "ec2:volume", "web", -5);
        other_region.region = "eu-west-1".into();
        let mut retrying = cand("vol-retry", "ec2:volume", "web", -5);
        retrying.next_attempt_at = Some(now() + TimeDelta::minutes(10));
        retrying.attempts = 2;
        let p = run(
            vec![
                cand("snap-1", "ec2:snapshot", "web", -1),
                cand("sg-1", "ec2:security-group", "web", -30),
                cand("vol-1", "ec2:volume", "web", -2),
                cand("i-1", "ec2:instance", "web", -1),
                cand("ami-1", "ec2:image", "web", -1),
                cand("q-1", "sqs:queue", "web", -60),
                cand("vol-later", "ec2:volume", "web", 30),
                other_region,
                retrying,
            ],
            &enforcement(),
            false,
        );
        let s = statuses(&p);
        let arns: Vec<&str> = s.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            &arns[..5],
            ["i-1", "ami-1", "vol-1", "sg-1", "snap-1"],
            "{s:?}"
        );
        assert!(s[..5].iter().all(|(_, st)| st == "due"), "{s:?}");
        let held: HashMap<&str, &str> = s[5..]
            .iter()
            .map(|(a, st)| (a.as_str(), st.as_str()))
            .collect();
        assert!(held["q-1"].contains("report only"), "{held:?}");
        assert!(held["vol-eu"].contains("incomplete"), "{held:?}");
        assert!(held["vol-retry"].contains("retrying after"), "{held:?}");
        assert_eq!(held["vol-later"], "scheduled");
        assert!(p.capped.is_empty());
    }

    /// A resource with no tags at all is deleted only in a dedicated account, by a pass or by
    /// hand; a failed sweep holds back its type in its (account, region) and nothing else.
    #[test]
    fn tagless_resources_need_a_dedicated_account_and_failed_sweeps_hold_their_type() {
        let tagless = |id: &str, account: &str| {
            let mut c = cand(id, "ec2:volume", "web", -1);
            c.account = account.into();
            c.tagless = true;
            c.source = Source::Sweep;
            c
        };
        let in_region = |id: &str, ty: &str, region: &str| {
            let mut c = cand(id, ty, "web", -1);
            c.region = region.into();
            c
        };
        let mut dedicated_walk = walk("us-east-1", WalkOutcome::Complete, &[]);
        dedicated_walk.account = "222222222222".into();
        for manual in [false, true] {
            let p = plan(
                vec![
                    tagless("vol-shared", "111111111111"),
                    tagless("vol-dedicated", "222222222222"),
                    in_region("snap-north", "ec2:snapshot", "eu-north-1"),
                    in_region("vol-north", "ec2:volume", "eu-north-1"),
                ],
                PlanInput {
                    enforcement: &enforcement(),
                    knowledge: Some(&Knowledge::of(&[
                        walk("us-east-1", WalkOutcome::Complete, &[]),
                        dedicated_walk.clone(),
                        walk(
                            "eu-north-1",
                            WalkOutcome::Complete,
                            &[ResourceType::Ec2Snapshot],
                        ),
                    ])),
                    accounts: &accounts(),
                    inventory: &[("web".to_owned(), 100)].into_iter().collect(),
                    suspended: None,
                    now: now(),
                    manual,
                    controlled: &Controlled::default(),
                },
            );
            let s: HashMap<String, String> = statuses(&p).into_iter().collect();
            assert_eq!(s["vol-dedicated"], "due", "{s:?}");
            assert_eq!(s["vol-north"], "due", "{s:?}");
            assert!(
                s["vol-shared"].starts_with("held: no tags at all, in account 111111111111")
                    && s["vol-shared"].contains("not dedicated"),
                "{s:?}"
            );
            assert_eq!(
                s["snap-north"],
                "held: the sweep of ec2:snapshot in 111111111111/eu-north-1 was incomplete this pass",
                "{s:?}"
            );
        }
        // Tagged resources are not held for the account's kind.
        let mut tagged = cand("vol-tagged", "ec2:volume", "web", -1);
        tagged.source = Source::Sweep;
        assert_eq!(run(vec![tagged], &enforcement(), false).due().count(), 1);
    }

    #[test]
    fn caps_halt_a_project_or_the_whole_pass() {
        // data has 4 live resources: 2 due is 50% (allowed), 3 is over.
        let two = vec![
            cand("d-1", "ec2:volume", "data", -1),
            cand("d-2", "ec2:volume", "data", -1),
        ];
        let p = run(two.clone(), &enforcement(), false);
        assert_eq!(p.due().count(), 2);
        let mut three = two;
        three.push(cand("d-3", "ec2:volume", "data", -1));
        three.push(cand("w-1", "ec2:volume", "web", -1));
        let p = run(three, &enforcement(), false);
        let s = statuses(&p);
        assert_eq!(s[0], ("w-1".to_owned(), "due".to_owned()), "{s:?}");
        assert!(
            s[1..]
                .iter()
                .all(|(a, st)| a.starts_with("d-") && st.contains("over its cap")),
            "{s:?}"
        );
        assert_eq!(
            p.capped,
            vec![CapHit {
                scope: "project:data".into(),
                due: 3,
                limit: 2
            }]
        );

        let en = Enforcement {
            max_deletions_per_pass: 3,
            ..enforcement()
        };
        // Two accounts within their own caps (the pass cap by default) but over it together.
        let many: Vec<_> = (0..4)
            .map(|i| {
                let mut c = cand(&format!("w-{i}"), "ec2:volume", "web", -1);
                if i % 2 == 1 {
                    c.account = "222222222222".into();
                }
                c
            })
            .collect();
        let p = run(many.clone(), &en, false);
        assert_eq!(p.due().count(), 0, "over the pass cap, nothing is deleted");
        assert_eq!(p.capped.len(), 1, "{:?}", p.capped);
        assert_eq!(p.capped[0].scope, "pass");
        assert!(statuses(&p)[0].1.contains("max_deletions_per_pass = 3"));
        let p = run(many[..3].to_vec(), &en, false);
        assert_eq!(p.due().count(), 3, "at the cap is allowed");
    }

    /// One noisy account over its own cap is held; the others go on. The cap is the
    /// account's setting, else the pass cap; at the cap is allowed.
    #[test]
    fn an_account_over_its_cap_is_held_alone() {
        let en = Enforcement {
            max_deletions_per_pass: 4,
            ..enforcement()
        };
        let in_account = |id: &str, account: &str| {
            let mut c = cand(id, "ec2:volume", "web", -1);
            c.account = account.into();
            c
        };
        let mut accounts = accounts();
        let noisy = accounts.get_mut("222222222222").expect("fixture");
        noisy.settings.max_deletions_per_pass = Some(2);
        let plan_of =
            |cands: Vec<ReapCandidate>| plan_in(cands, &en, &accounts, now(), false, None);
        let p = plan_of(vec![
            in_account("a-1", "111111111111"),
            in_account("b-1", "222222222222"),
            in_account("b-2", "222222222222"),
            in_account("b-3", "222222222222"),
        ]);
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert_eq!(s["a-1"], "due", "{s:?}");
        for b in ["b-1", "b-2", "b-3"] {
            assert_eq!(
                s[b],
                "held: account 222222222222 has more deletions due than its \
                 max_deletions_per_pass = 2 this pass",
                "{s:?}"
            );
        }
        assert_eq!(
            p.capped,
            vec![CapHit {
                scope: "account:222222222222".into(),
                due: 3,
                limit: 2
            }]
        );
        let p = plan_of(vec![
            in_account("b-1", "222222222222"),
            in_account("b-2", "222222222222"),
        ]);
        assert_eq!(p.due().count(), 2, "at the account's cap is allowed");
        assert!(p.capped.is_empty());
        // Without its own cap an account has the pass cap: 4 due in one account is allowed,
        // 5 is held by the account cap (named so), not the pass cap.
        let five: Vec<_> = (0..5)
            .map(|i| in_account(&format!("a-{i}"), "111111111111"))
            .collect();
        assert_eq!(plan_of(five[..4].to_vec()).due().count(), 4);
        let p = plan_of(five);
        assert_eq!(p.due().count(), 0);
        assert_eq!(p.capped[0].scope, "account:111111111111");
    }

    /// Shared accounts are report-only unless their settings arm them; an account not
    /// audited now deletes nothing; by hand as by a pass.
    #[test]
    fn shared_and_unknown_accounts_are_report_only() {
        let mut accounts = accounts();
        accounts.insert("333333333333".into(), AwsAccount::new("333333333333"));
        let mut off = AwsAccount::new("444444444444");
        off.settings.dedicated = Some(true);
        off.settings.armed = Some(false);
        accounts.insert(off.id.clone(), off);
        for manual in [false, true] {
            let cands = [
                "111111111111",
                "222222222222",
                "333333333333",
                "444444444444",
                "555555555555",
            ]
            .iter()
            .map(|a| {
                let mut c = cand(&format!("v-{}", &a[..1]), "ec2:volume", "web", -1);
                c.account = (*a).into();
                c
            })
            .collect();
            let p = plan_in(cands, &enforcement(), &accounts, now(), manual, None);
            let s: HashMap<String, String> = statuses(&p).into_iter().collect();
            assert_eq!(s["v-1"], "due", "shared, armed by its settings: {s:?}");
            assert_eq!(s["v-2"], "due", "dedicated: {s:?}");
            assert!(
                s["v-3"].starts_with("held: account 333333333333 is report-only"),
                "shared by default: {s:?}"
            );
            assert!(
                s["v-4"].starts_with("held: account 444444444444 is report-only"),
                "dedicated but disarmed: {s:?}"
            );
            assert!(
                s["v-5"].starts_with("held: account 555555555555 is not audited now"),
                "{s:?}"
            );
        }
    }

    /// An account's window, on its own time zone's clock, replaces the global one.
    #[test]
    fn an_account_window_follows_its_time_zone() {
        let berlin = crate::config::TimeZone("Europe/Berlin".parse().expect("a zone"));
        let mut accounts = accounts();
        // 09:00-12:00 in Berlin: now() is 12:00 UTC, 13:00 in Berlin (winter).
        accounts
            .get_mut("222222222222")
            .expect("fixture")
            .settings
            .window = Some(DeletionWindow {
            days: vec![],
            start_hour: 9,
            end_hour: 13,
            time_zone: Some(berlin),
        });
        let en = Enforcement {
            // Globally: only 12:00-13:00 UTC, which now() is in.
            window: Some(DeletionWindow {
                days: vec![],
                start_hour: 12,
                end_hour: 13,
                time_zone: None,
            }),
            ..enforcement()
        };
        let at = |when: DateTime<Utc>| {
            let cands = ["111111111111", "222222222222"]
                .iter()
                .map(|a| {
                    let mut c = cand(&format!("v-{}", &a[..1]), "ec2:volume", "web", -1);
                    c.account = (*a).into();
                    c
                })
                .collect();
            let p = plan_in(cands, &en, &accounts, when, false, None);
            statuses(&p)
                .into_iter()
                .collect::<HashMap<String, String>>()
        };
        let s = at(now());
        assert_eq!(s["v-1"], "due", "the global window: {s:?}");
        assert_eq!(
            s["v-2"], "held: outside the deletion window",
            "13:00 in Berlin: {s:?}"
        );
        let s = at(now() - TimeDelta::minutes(1));
        assert_eq!(s["v-1"], "held: outside the deletion window", "{s:?}");
        assert_eq!(s["v-2"], "due", "12:59 in Berlin: {s:?}");
    }

    /// A deadline or a retry time that is now has come; a millisecond later it has not.
    #[test]
    fn deadline_and_retry_boundaries() {
        let ms = TimeDelta::milliseconds;
        let mut at_deadline = cand("v-now", "ec2:volume", "web", 0);
        let mut just_before = cand("v-later", "ec2:volume", "web", 0);
        just_before.deadline = now() + ms(1);
        let mut retry_now = cand("v-retry-now", "ec2:volume", "web", -5);
        retry_now.next_attempt_at = Some(now());
        let mut retry_later = cand("v-retry-later", "ec2:volume", "web", -5);
        retry_later.next_attempt_at = Some(now() + ms(1));
        at_deadline.deadline = now();
        let p = run(
            vec![at_deadline, just_before, retry_now, retry_later],
            &enforcement(),
            false,
        );
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert_eq!(s["v-now"], "due", "{s:?}");
        assert_eq!(s["v-later"], "scheduled", "{s:?}");
        assert_eq!(s["v-retry-now"], "due", "{s:?}");
        assert!(s["v-retry-later"].contains("retrying after"), "{s:?}");
    }

    /// An access key goes in two steps: deactivated when due, deleted only once it has been
    /// inactive for the deactivation grace (by hand too, the order holds; the wait does not).
    #[test]
    fn access_keys_are_deactivated_then_deleted_after_the_second_grace() {
        let ms = TimeDelta::milliseconds;
        let en = Enforcement {
            deletable_types: vec![ResourceType::IamAccessKey, ResourceType::Ec2Volume],
            deactivation_grace: crate::model::HumanDuration::from_secs(3600),
            ..enforcement()
        };
        let grace = TimeDelta::hours(1);
        let key = |id: &str, deactivated: Option<DateTime<Utc>>| {
            let mut c = cand(id, "iam:access-key", "web", -5);
            c.arn = Arn::parse(&format!("arn:aws:iam::111111111111:access-key/ci-bot/{id}"))
                .expect("an ARN");
            c.region = "us-east-1".into();
            c.deactivated_at = deactivated;
            c
        };
        let fresh = key("AKIAFRESH", None);
        let waiting = key("AKIAWAITING", Some(now() - grace + ms(1)));
        let ended = key("AKIAENDED", Some(now() - grace));
        let mut not_yet = key("AKIANOTYET", Some(now() - grace - TimeDelta::hours(2)));
        not_yet.deadline = now() + ms(1);
        // Only access keys have a second step: a volume with the field set is deleted.
        let mut volume = cand("v-odd", "ec2:volume", "web", -5);
        volume.deactivated_at = Some(now());
        assert_eq!(step(&fresh), Step::Deactivate);
        for c in [&waiting, &ended, &not_yet, &volume] {
            assert_eq!(step(c), Step::Delete, "{}", c.arn);
        }
        assert_eq!(step(&cand("v", "ec2:volume", "web", 0)), Step::Delete);
        let all = vec![
            fresh.clone(),
            waiting.clone(),
            ended.clone(),
            not_yet.clone(),
            volume.clone(),
        ];
        let p = run(all.clone(), &en, false);
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        assert_eq!(s["AKIAFRESH"], "due", "{s:?}");
        assert_eq!(s["AKIAWAITING"], "scheduled", "{s:?}");
        assert_eq!(s["AKIAENDED"], "due", "{s:?}");
        assert_eq!(
            s["AKIANOTYET"], "scheduled",
            "its own deadline still counts: {s:?}"
        );
        assert_eq!(s["v-odd"], "due", "{s:?}");
        // The deadline shown is the end of the second grace; a later own deadline stays.
        let deadline = |p: &Plan, id: &str| {
            p.items
                .iter()
                .find(|i| i.candidate.arn.resource_id() == id)
                .map(|i| i.candidate.deadline)
        };
        assert_eq!(deadline(&p, "AKIAWAITING"), Some(now() + ms(1)));
        assert_eq!(deadline(&p, "AKIAENDED"), Some(now()));
        assert_eq!(deadline(&p, "AKIANOTYET"), Some(now() + ms(1)));
        assert_eq!(
            deadline(&p, "AKIAFRESH"),
            Some(now() - TimeDelta::minutes(5))
        );
        // By hand: no wait, the order stays (the fresh key is still only deactivated).
        let p = run(all, &en, true);
        let s: HashMap<String, String> = statuses(&p).into_iter().collect();
        for id in ["AKIAFRESH", "AKIAWAITING", "AKIAENDED", "AKIANOTYET"] {
            assert_eq!(s[id], "due", "{id}: {s:?}");
        }
        // A reviewed plan that said deactivate does not delete once the key is deactivated.
        let item = |c: ReapCandidate| PlanItem {
            candidate: c,
            status: Status::Due,
            members: Vec::new(),
        };
        let mut later = fresh.clone();
        later.deactivated_at = Some(now());
        assert_ne!(state_digest(&item(fresh)), state_digest(&item(later)));
    }

    #[test]
    fn window_and_manual_mode() {
        let en = Enforcement {
            window: Some(DeletionWindow {
                days: vec![Weekday::Mon, Weekday::Tue],
                start_hour: 0,
                end_hour: 24,
                time_zone: None,
            }),
            ..enforcement()
        };
        let p = run(vec![cand("v", "ec2:volume", "web", -1)], &en, false);
        assert_eq!(
            statuses(&p)[0].1,
            "held: outside the deletion window",
            "Wednesday is outside mon-tue"
        );
        let en = Enforcement {
            window: Some(DeletionWindow {
                days: vec![Weekday::Wed],
                start_hour: 9,
                end_hour: 12,
                time_zone: None,
            }),
            ..enforcement()
        };
        let p = run(vec![cand("v", "ec2:volume", "web", -1)], &en, false);
        assert!(statuses(&p)[0].1.contains("window"), "12:00 is past 09-12");
        let en = Enforcement {
            window: Some(DeletionWindow {
                days: vec![],
                start_hour: 12,
                end_hour: 13,
                time_zone: None,
            }),
            ..enforcement()
        };
        assert_eq!(
            run(vec![cand("v", "ec2:volume", "web", -1)], &en, false)
                .due()
                .count(),
            1
        );

        // On-call reaping ignores the deadline and back-off, not the other guards.
        let mut retrying = cand("v-retry", "ec2:volume", "web", -1);
        retrying.next_attempt_at = Some(now() + TimeDelta::hours(1));
        let p = run(
            vec![
                cand("v-future", "ec2:volume", "web", 600),
                retrying,
                cand("q", "sqs:queue", "web", 600),
            ],
            &enforcement(),
            true,
        );
        let s = statuses(&p);
        assert_eq!(p.due().count(), 2, "{s:?}");
        assert!(s[2].1.contains("report only"), "{s:?}");
    }

    /// After a restore, unknown-lease and released items are held, by a pass and by hand;
    /// other verdicts go on; without a suspension nothing is held for it.
    #[test]
    fn a_restore_suspends_unknown_lease_and_released_only() {
        let with = |id: &str, v: Verdict| {
            let mut c = cand(id, "ec2:volume", "web", -1);
            c.verdict = v;
            c
        };
        for manual in [false, true] {
            for suspended in [Some("the store was restored"), None] {
                let p = plan_in(
                    vec![
                        with("v-unknown", Verdict::UnknownLease),
                        with("v-released", Verdict::Released),
                        with("v-expired", Verdict::Expired),
                        with("v-untagged", Verdict::Untagged),
                    ],
                    &enforcement(),
                    &accounts(),
                    now(),
                    manual,
                    suspended,
                );
                let s: HashMap<String, String> = statuses(&p).into_iter().collect();
                assert_eq!(s["v-expired"], "due", "{s:?}");
                assert_eq!(s["v-untagged"], "due", "{s:?}");
                for held in ["v-unknown", "v-released"] {
                    if suspended.is_some() {
                        assert!(
                            s[held].starts_with(
                                "held: reaping of unknown-lease and released resources is \
                                 suspended: the store was restored"
                            ),
                            "{s:?}"
                        );
                    } else {
                        assert_eq!(s[held], "due", "{s:?}");
                    }
                }
            }
        }
    }
}
