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

use crate::config::AwsConfig;

/// Builds and caches an SDK config per (account, region).
#[derive(Debug, Clone)]
pub struct AwsClients {
    aws: AwsConfig,
    cache: Arc<Mutex<HashMap<(String, String), SdkConfig>>>,
}

impl AwsClients {
    pub fn new(aws: AwsConfig) -> Self {
        AwsClients {
            aws,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The base config for a region: the daemon's own credentials.
    async fn base(&self, region: &str) -> SdkConfig {
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
        loader.load().await
    }

    /// The config for walking `account` in `region`: through the account's role when one is
    /// configured.
    pub async fn config_for(
        &self,
        account: &str,
        region: &str,
    ) -> Result<SdkConfig, UnknownAccount> {
        let key = (account.to_owned(), region.to_owned());
        if let Some(c) = self.cache.lock().await.get(&key) {
            return Ok(c.clone());
        }
        let acc = self
            .aws
            .accounts
            .iter()
            .find(|a| a.id == account)
            .ok_or_else(|| UnknownAccount(account.to_owned()))?;
        let base = self.base(region).await;
        let conf = match self.aws.role_arn(acc) {
            None => base,
            Some(role) => {
                let provider = AssumeRoleProvider::builder(role)
                    .session_name("ephemera")
                    .configure(&base)
                    .build()
                    .await;
                base.into_builder()
                    .credentials_provider(SharedCredentialsProvider::new(provider))
                    .build()
            }
        };
        self.cache.lock().await.insert(key, conf.clone());
        Ok(conf)
    }
}

/// An account the config does not list (so no credentials or role to reach it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {0} is not configured")]
pub struct UnknownAccount(pub String);
