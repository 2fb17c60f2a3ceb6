//! E-mail over SMTP (lettre): plain text, and the calendar invite as a `text/calendar`
//! attachment; the integration's circuit breaker and a timeout per message.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sagas::ports::{Email, Mailer, PortError, Sent};
use uuid::Uuid;

use crate::circuit::CircuitBreaker;

/// An SMTP relay.
#[derive(Debug, Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    breaker: Arc<CircuitBreaker>,
}

impl SmtpMailer {
    /// A relay at `url` (`smtp://host:25`, `smtps://user:pass@host`, or `smtp://…?tls=required`)
    /// sending from `from` (`bookings@example.com`), each message cut at `timeout`.
    pub fn new(
        url: &str,
        from: &str,
        timeout: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("SMTP_URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("SMTP_FROM {from:?}: {e}"))?;
        Ok(Self {
            transport,
            from,
            breaker,
        })
    }

    fn message(&self, email: &Email, id: &str) -> Result<Message, PortError> {
        let to: Mailbox = format!(
            "{} <{}>",
            email.to_name.replace(['<', '>', '"'], ""),
            email.to
        )
        .parse()
        .map_err(|e| PortError::Rejected(format!("recipient {}: {e}", email.to)))?;
        let from = Mailbox::new(Some(email.from_name.clone()), self.from.email.clone());
        let builder = Message::builder()
            .from(from)
            .to(to)
            .subject(&email.subject)
            .message_id(Some(id.to_owned()));
        let text = SinglePart::plain(email.text.clone());
        let built = match &email.calendar {
            Some(invite) => {
                let kind = ContentType::parse(&format!(
                    "text/calendar; charset=utf-8; method={}",
                    invite.method
                ))
                .map_err(|e| PortError::Rejected(e.to_string()))?;
                let attachment =
                    Attachment::new("invite.ics".to_owned()).body(invite.ics.clone(), kind);
                builder.multipart(MultiPart::mixed().singlepart(text).singlepart(attachment))
            }
            None => builder.singlepart(text),
        };
        built.map_err(|e| PortError::Rejected(format!("e-mail not built: {e}")))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<Sent, PortError> {
        self.breaker.permit()?;
        let id = format!("<{}@bookingd>", Uuid::now_v7());
        let message = self.message(email, &id)?;
        let result = match self.transport.send(message).await {
            Ok(_) => Ok(Sent { provider_id: id }),
            Err(e) if e.is_permanent() => Err(PortError::Rejected(format!("SMTP refused: {e}"))),
            Err(e) => Err(PortError::Transient(format!("SMTP failed: {e}"))),
        };
        self.breaker.record(&result);
        result
    }
}
