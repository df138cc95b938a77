//! The one AWS client builder: region, endpoint override (emulators), retries, and
//! credentials — the daemon's own, or a role assumed in each other account.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

use crate::config::{AwsAccount, AwsConfig};

/// Builds the SDK config of each (account, region), for the accounts audited now (the static
/// ones, and those the organization listed at the last pass), from one base config per region
/// and one credentials provider per role, both cached.
#[derive(Debug, Clone)]
pub struct AwsClients {
    aws: AwsConfig,
    accounts: Arc<std::sync::RwLock<Vec<AwsAccount>>>,
    /// Per assumed role, the first config made with it: its credentials provider and identity
    /// cache are shared by every region of the account (credentials are global, so an account's
    /// regions need one AssumeRole, not one each).
    roles: Arc<Mutex<HashMap<String, SdkConfig>>>,
    /// The base config of each region, loaded once: every (account, region) config is made
    /// from it and shares its HTTP client (one connection pool, not one per account and region).
    bases: Arc<Mutex<HashMap<String, SdkConfig>>>,
}

impl AwsClients {
    pub fn new(aws: AwsConfig) -> Self {
        AwsClients {
            accounts: Arc::new(std::sync::RwLock::new(aws.accounts.clone())),
            aws,
            roles: Arc::new(Mutex::new(HashMap::new())),
            bases: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The accounts audited now.
    pub fn accounts(&self) -> Vec<AwsAccount> {
        self.accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `account` is audited and dedicated to ephemeral work.
    pub fn is_dedicated(&self, account: &str) -> bool {
        self.accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|a| a.id == account && a.dedicated())
    }

    /// The OUs above `account` that projects bind themselves to (none for an account not
    /// audited). Read in place: a walk or a delete asks this, and copying every account of
    /// an organization for it would cost more than the answer.
    pub fn ous_of(&self, account: &str) -> Vec<String> {
        self.accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|a| a.id == account)
            .map(|a| a.ous.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces the accounts audited (a pass that read the organization).
    pub fn set_accounts(&self, accounts: Vec<AwsAccount>) {
        *self.accounts.write().unwrap_or_else(|p| p.into_inner()) = accounts;
    }

    /// The config for reading AWS Organizations: its global endpoint in us-east-1, through
    /// `[aws.organization] role_arn` when set.
    pub async fn organization_config(&self) -> SdkConfig {
        let role = self
            .aws
            .organization
            .as_ref()
            .and_then(|o| o.role_arn.clone());
        self.config_as(role.as_deref(), "us-east-1").await
    }

    /// The config for `region` through `role` (the daemon's own credentials when none): for
    /// principals apart from the audited accounts, like the Cost Explorer reader.
    pub async fn config_as(&self, role: Option<&str>, region: &str) -> SdkConfig {
        let base = self.base(region).await;
        match role {
            None => base,
            Some(role) => self.assumed(base, role.to_owned()).await,
        }
    }

    async fn assumed(&self, base: SdkConfig, role: String) -> SdkConfig {
        let mut roles = self.roles.lock().await;
        if let Some(first) = roles.get(&role)
            && let (Some(provider), Some(cache)) =
                (first.credentials_provider(), first.identity_cache())
        {
            return base
                .into_builder()
                .credentials_provider(provider)
                .identity_cache(cache)
                .build();
        }
        let provider = AssumeRoleProvider::builder(role.clone())
            .session_name("ephemera")
            .configure(&base)
            .build()
            .await;
        let conf = base
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .identity_cache(aws_config::identity::IdentityCache::lazy().build())
            .build();
        roles.insert(role, conf.clone());
        conf
    }

    /// The base config for a region: the daemon's own credentials.
    async fn base(&self, region: &str) -> SdkConfig {
        let mut bases = self.bases.lock().await;
        if let Some(b) = bases.get(region) {
            return b.clone();
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::standard().with_max_attempts(self.aws.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(url) = &self.aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if self.aws.emulator {
            // Emulators accept any credentials; never look for real ones.
            loader = loader.credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "ephemera-emulator",
            ));
        }
        if let Some(http) = bases.values().next().and_then(SdkConfig::http_client) {
            loader = loader.http_client(http);
        }
        let base = loader.load().await;
        bases.insert(region.to_owned(), base.clone());
        base
    }

    /// The config for walking `account` in `region`: through the account's role when one is
    /// configured.
    pub async fn config_for(
        &self,
        account: &str,
        region: &str,
    ) -> Result<SdkConfig, UnknownAccount> {
        let role = {
            let accounts = self.accounts.read().unwrap_or_else(|p| p.into_inner());
            let acc = accounts
                .iter()
                .find(|a| a.id == account)
                .ok_or_else(|| UnknownAccount(account.to_owned()))?;
            self.aws.role_arn(acc)
        };
        let base = self.base(region).await;
        Ok(match role {
            None => base,
            Some(role) => self.assumed(base, role).await,
        })
    }
}

/// An account the config does not list (so no credentials or role to reach it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {0} is not configured")]
pub struct UnknownAccount(pub String);
