//! The one integration-test binary. Modules group tests by what they guard; `support` holds
//! the helpers: real daemons in-process, the AWS emulator, the proxy, the seeder, the SMTP
//! server, a local OIDC issuer and the one poll helper.

mod api;
mod audit;
mod aws;
mod canary;
mod cli;
mod controllers;
mod cost;
mod credentials;
mod deleters;
mod deleters_compute;
mod deleters_data;
mod deploy;
mod discovery;
mod docs;
mod ha;
mod iam;
mod idempotency;
mod images;
mod integrations;
mod mail;
mod oidc;
mod prometheus;
mod promtool;
mod reap;
mod reload;
mod retention;
mod rules;
mod safety;
mod scan;
mod slack;
mod support;
mod timeline;
mod tls;
mod vpc;
mod webhooks;
