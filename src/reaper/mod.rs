//! The reaper: plans the deletion of what policy marked, and carries it out behind every guard
//! once armed. [`plan`] decides (pure), [`run`] acts (the pass's act step and on-call reaping),
//! [`aws`] holds the per-type inspect and delete calls, [`iam`] the IAM actions each type's calls
//! need.

pub mod aws;
pub mod iam;
pub mod plan;
pub mod run;
