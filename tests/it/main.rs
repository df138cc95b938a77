//! The one integration-test binary. Modules group tests by what they guard; `support`
//! starts real daemons in-process, `moto` starts the AWS emulator.

mod api;
mod audit;
mod aws;
mod cli;
mod cost;
mod deleters;
mod deploy;
mod iam;
mod mail;
mod moto;
mod prometheus;
mod promtool;
mod proxy;
mod reap;
mod rules;
mod safety;
mod scan;
mod seed;
mod smtp;
mod support;
