//! The domain layer: the words every other module shares, with no I/O and no clock.
//!
//! | file | what it holds |
//! |---|---|
//! | `ids` | [`LeaseId`] (parsed however AWS spells it), [`ProjectName`] |
//! | `duration` | [`HumanDuration`]: `90m`, `2h`, `7d` |
//! | `tags` | [`Tags`] (packed), the tag checks, [`IdentityTags`] (the keys that carry a lease) |
//! | `arn` | [`Arn`] and its parts |
//! | `image` | [`Image`]: the AMI an instance runs or a launch template launches (id, owner, name) |
//! | `controller` | [`ControllerRef`]: what a controlled resource's tags name, and what a controller is (stacks, node groups, Auto Scaling groups, ECS services) |
//! | `verdict` | [`Verdict`] (what a pass concludes) and [`Action`] (what a rule does) |
//! | `mail` | [`MailKind`]: the notices and messages of the outbox |
//! | `money` | [`MicroUsd`] (integer micro-dollars), exact parsing and printing, [`DaySpend`] |
//! | `resource_type` | [`ResourceType`]: the types ephemera can delete |
//! | `outcome` | [`TaskName`], [`RunOutcome`], [`WalkOutcome`], [`Source`], [`Decision`], [`ReapMode`], [`PurgedTable`]: the words of runs, walks, inventory and the reaper |
//! | `lease` | [`Lease`], [`LeaseState`] and the pure state math of renew, beat, release |
//! | `timeline` | a lease's story: the [`LeaseEvent`]s a change records ([`lease_changes`]: renewals, late heartbeats, release) and the [`TimelineEntry`]s read back, sorted |
//!
//! Architecture Invariant: this module does no I/O and reads no clock; it imports nothing of
//! the crate but itself.

mod arn;
mod controller;
mod duration;
mod event;
mod ids;
mod image;
mod lease;
mod mail;
mod money;
mod outcome;
mod resource_type;
mod tags;
mod text;
mod timeline;
mod verdict;

pub use arn::Arn;
pub use controller::{ControllerKind, ControllerRef};
pub use duration::{HumanDuration, backoff};
pub use event::{EVENT_SOURCE, Event, EventKind};
pub use ids::{LeaseId, ProjectName};
pub use image::Image;
pub use lease::{Lease, LeaseEnded, LeaseState};
pub use mail::MailKind;
pub use money::{DaySpend, MicroUsd, format_usd, parse_amount, usd_f64};
pub use outcome::{Decision, PurgedTable, ReapMode, RunOutcome, Source, TaskName, WalkOutcome};
pub use resource_type::ResourceType;
pub use tags::{IdentityTags, Tags, WELL_KNOWN_KEYS, check_tag_key, check_tag_value};
pub use text::{printable, printable_lines};
pub use timeline::{
    LeaseChange, LeaseEvent, ResourceGroup, TimelineEntry, TimelineEvent, lease_changes,
    sort_timeline,
};
pub use verdict::{Action, Verdict};
