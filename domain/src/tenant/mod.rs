//! The Tenant aggregate: a company with its plan, settings, branches and service catalog.

mod aggregate;
mod command;
mod error;
mod event;

pub use aggregate::{Branch, Service, Tenant};
pub use command::{BranchDetails, ServiceDetails, TenantCommand};
pub use error::TenantError;
pub use event::TenantEvent;
