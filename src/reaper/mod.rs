//! The reaper: deletes what policy marked for deletion, once armed; [`aws`] holds the per-type deleters.
pub mod aws;
