use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use domain::values::TenantId;
use uuid::Uuid;

/// Where a command came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The REST API.
    Api,
    /// The command line.
    Cli,
    /// A saga reacting to an event.
    Saga,
    /// A webhook from an integration.
    Webhook,
    /// The Model Context Protocol endpoint.
    Mcp,
}

impl Channel {
    /// The stable text stored in event metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Cli => "cli",
            Self::Saga => "saga",
            Self::Webhook => "webhook",
            Self::Mcp => "mcp",
        }
    }
}

/// Who asked for a command, why, and when: copied onto every event it produces.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// The tenant the command acts for.
    pub tenant_id: TenantId,
    /// Ties together everything one request or conversation caused.
    pub correlation_id: Uuid,
    /// The request or event that caused this command.
    pub causation_id: Uuid,
    /// An API key id, `saga:<name>`, `webhook:<source>`, `operator` or `cli`.
    pub actor: String,
    /// Where it came in.
    pub source: Channel,
    /// The decision time; aggregates never read the clock themselves.
    pub now: DateTime<Utc>,
}

impl CommandMeta {
    /// The metadata map stored with each event (the store adds `event_id` per event).
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("tenant_id".to_owned(), self.tenant_id.to_string()),
            ("correlation_id".to_owned(), self.correlation_id.to_string()),
            ("causation_id".to_owned(), self.causation_id.to_string()),
            ("actor".to_owned(), self.actor.clone()),
            ("source".to_owned(), self.source.as_str().to_owned()),
            (
                "occurred_at".to_owned(),
                self.now.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ])
    }
}
