//! What the system tests share: a real nats-server per test, the app in-process or as its own
//! process, typed HTTP helpers, and readers for the event store and the stream.

pub(crate) mod app;
pub(crate) mod calcom;
pub(crate) mod nats;
pub(crate) mod pipeline;
pub(crate) mod postgres;
pub(crate) mod process;
pub(crate) mod proxy;
pub(crate) mod smtp;
pub(crate) mod stream;

pub(crate) use app::{Salon, TestApp, poll_until};
pub(crate) use nats::NatsServer;
