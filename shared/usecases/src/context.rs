//! What the use cases work with, built once per cold start: the configuration, the database
//! pool, the object storage, the event bus and the AWS SDK's configuration.

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::db::{self, DbError, Pool};
use crate::storage::Storage;
use mecapy_adapters::bus::EventBus;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub db: Pool,
    pub storage: Storage,
    /// The stack's event bus (`EVENT_BUS_NAME`); without one, events stay in the outbox.
    pub bus: Option<EventBus>,
    /// The AWS SDK's configuration, loaded once per cold start (see [`Context::aws`]).
    pub sdk: Option<aws_config::SdkConfig>,
}

impl Context {
    pub async fn from_env() -> Result<Self, StartupError> {
        Self::new(Config::from_env()?).await
    }

    /// Builds clients without contacting any service: a cold start never waits on one.
    pub async fn new(config: Config) -> Result<Self, StartupError> {
        let sdk = aws_config::load_from_env().await;
        let storage = Storage::new(&sdk, &config.upload_bucket);
        let bus = config
            .event_bus_name
            .as_ref()
            .map(|name| EventBus::new(&sdk, name));
        let mut context = Self::with_storage(config, storage)?.with_bus(bus);
        context.sdk = Some(sdk);
        Ok(context)
    }

    /// The AWS SDK configuration for a function's other clients (SQS, ECS): the one loaded at
    /// start-up, or loaded now for a context built with [`Context::with_storage`].
    pub async fn aws(&self) -> aws_config::SdkConfig {
        match &self.sdk {
            Some(sdk) => sdk.clone(),
            None => aws_config::load_from_env().await,
        }
    }

    /// With an S3 client built by the caller (tests point it at their own endpoint).
    pub fn with_storage(config: Config, storage: Storage) -> Result<Self, StartupError> {
        let db = db::pool(&config.database()?, 4)?;
        Ok(Context {
            config: Arc::new(config),
            db,
            storage,
            bus: None,
            sdk: None,
        })
    }

    pub fn with_bus(mut self, bus: Option<EventBus>) -> Self {
        self.bus = bus;
        self
    }

    /// Sends the outbox's due events to the bus. Never fails the caller: what could not be sent
    /// stays in the outbox for the next drain (the next request, or the dispatcher's sweep).
    pub async fn publish_events(&self) {
        let Some(bus) = &self.bus else { return };
        match bus.drain(&self.db).await {
            Ok(d) if d.failed > 0 => {
                tracing::warn!(
                    published = d.published,
                    failed = d.failed,
                    "some events not published yet"
                )
            }
            Ok(d) if d.published > 0 => {
                tracing::debug!(published = d.published, "events published")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "events not published (outbox unreachable)"),
        }
    }
}
