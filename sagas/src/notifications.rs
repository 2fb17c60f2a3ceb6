//! Customer notifications: a confirmation when a booking is confirmed, reminders 24 and 2
//! hours before (moved when the booking moves, dropped when it is cancelled), and notices of
//! a reschedule or cancellation; German or English by the tenant's locale.
//!
//! Confirmations and notices go out on every channel the tenant has switched on and paid for
//! (SMS, and e-mail with a calendar invite when the customer gave an address); reminders on
//! the first of them. A send that fails is recorded in `failed_notifications` and the message
//! goes out on the other channel instead. Each logical message (booking, notice, revision)
//! is claimed in `notifications` before it is sent, per channel: whatever has been claimed is
//! never sent again, even after a crash in the middle of the send (at most once).

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use chrono_tz::Tz;
use commands::{Commands, Store};
use domain::booking::Customer;
use domain::settings::Locale;
use domain::values::{BranchId, ServiceId, StaffId, TenantId, TimeRange};
use domain::{BookingEvent, Tenant};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ports::{Alternatives, Email, Invite, Mailer, PortError, Sms, SmsGateway};
use crate::runtime::{Driver, JobRun, Reaction, Saga, SagaError, SagaEvent};

/// How long after a failure to reach the database a notice is tried again.
pub const RETRY_AFTER: Duration = Duration::minutes(5);

/// The saga.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifications;

/// The appointment a customer is told about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appointment {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Branch.
    pub branch_id: BranchId,
    /// Service.
    pub service_id: ServiceId,
    /// Who comes.
    pub customer: Customer,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// The branch's zone.
    pub time_zone: String,
    /// What the customer quotes.
    pub confirmation_number: String,
}

/// The saga's state per booking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoticeState {
    /// The appointment as it is now.
    pub appointment: Option<Appointment>,
    /// Reschedules so far: a reminder is for one revision of the appointment.
    pub revision: u32,
    /// Confirmed: from then on the customer hears of changes.
    pub confirmed: bool,
    /// Cancelled.
    pub cancelled: bool,
    /// Who cancelled it.
    #[serde(default)]
    pub cancelled_by: Option<String>,
    /// The staff member it is with.
    #[serde(default)]
    pub staff: Option<StaffId>,
}

/// What the customer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// The booking is confirmed.
    Confirmation,
    /// It is tomorrow.
    Reminder24h,
    /// It is in two hours.
    Reminder2h,
    /// It moved.
    Rescheduled,
    /// It is cancelled.
    Cancelled,
}

impl Notice {
    /// Its job's name (one pending job per notice and booking).
    pub fn name(self) -> &'static str {
        match self {
            Self::Confirmation => "confirmation",
            Self::Reminder24h => "reminder-24h",
            Self::Reminder2h => "reminder-2h",
            Self::Rescheduled => "rescheduled",
            Self::Cancelled => "cancelled",
        }
    }

    /// How long before the start a reminder goes out.
    fn lead(self) -> Option<Duration> {
        match self {
            Self::Reminder24h => Some(Duration::hours(24)),
            Self::Reminder2h => Some(Duration::hours(2)),
            _ => None,
        }
    }
}

const REMINDERS: [Notice; 2] = [Notice::Reminder24h, Notice::Reminder2h];

/// The job: tell the customer `notice` about `revision` of the appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeJob {
    /// What.
    pub notice: Notice,
    /// Of which revision.
    pub revision: u32,
}

/// A way to reach the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A text message.
    Sms,
    /// An e-mail.
    Email,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }
}

/// What sending a notice came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Sent (or claimed before) on these channels.
    Delivered(Vec<Channel>),
    /// Nothing to send, and why.
    Nothing(&'static str),
    /// Every channel failed.
    Undelivered,
    /// The database was out of reach before anything was sent: try again later.
    Retry(String),
}

impl NoticeState {
    /// Folds a booking event in; the notice it calls for, if any.
    fn apply(&mut self, change: BookingEvent) -> Option<Notice> {
        match change {
            BookingEvent::BookingCreated {
                tenant_id,
                branch_id,
                service_id,
                customer,
                appointment,
                time_zone,
                confirmation_number,
                staff_id,
                confirmed_at,
                ..
            } => {
                self.staff = Some(staff_id);
                self.appointment = Some(Appointment {
                    tenant_id,
                    branch_id,
                    service_id,
                    customer,
                    start: appointment.start,
                    end: appointment.end,
                    time_zone: time_zone.name().to_owned(),
                    confirmation_number,
                });
                // Confirmed as it was made: no BookingConfirmed follows.
                self.confirmed = confirmed_at.is_some();
                self.confirmed.then_some(Notice::Confirmation)
            }
            BookingEvent::BookingConfirmed { .. } => {
                self.confirmed = true;
                Some(Notice::Confirmation)
            }
            BookingEvent::BookingRescheduled { to, staff_to, .. } => {
                self.staff = Some(staff_to);
                if let Some(a) = self.appointment.as_mut() {
                    (a.start, a.end) = (to.start, to.end);
                }
                self.revision += 1;
                self.confirmed.then_some(Notice::Rescheduled)
            }
            BookingEvent::BookingCancelled { actor, .. } => {
                self.cancelled = true;
                self.cancelled_by = Some(actor);
                self.confirmed.then_some(Notice::Cancelled)
            }
            BookingEvent::BookingDetailsUpdated { customer, .. } => {
                if let Some(a) = self.appointment.as_mut() {
                    a.customer = customer;
                }
                None
            }
            _ => None,
        }
    }

    /// The reminders follow the appointment: set, moved, or dropped.
    fn reminders(
        &self,
        mut reaction: Reaction<Self, NoticeJob>,
        now: DateTime<Utc>,
    ) -> Reaction<Self, NoticeJob> {
        for reminder in REMINDERS {
            let due = self
                .appointment
                .as_ref()
                .zip(reminder.lead())
                .map(|(a, lead)| a.start - lead)
                .filter(|due| self.confirmed && !self.cancelled && *due > now);
            reaction = match due {
                Some(due) => {
                    let job = NoticeJob {
                        notice: reminder,
                        revision: self.revision,
                    };
                    reaction.and_schedule(reminder.name(), due, job)
                }
                None => reaction.and_cancel(reminder.name()),
            };
        }
        reaction
    }
}

impl Saga for Notifications {
    const NAME: &'static str = "notifications";
    const AGGREGATE_TYPE: &'static str = "Booking";
    type State = NoticeState;
    type Job = NoticeJob;
    type Outcome = NoticeOutcome;

    fn react(
        state: &NoticeState,
        event: &SagaEvent,
        now: DateTime<Utc>,
    ) -> Result<Reaction<NoticeState, NoticeJob>, SagaError> {
        let change: BookingEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| SagaError::Unreadable(e.to_string()))?;
        let mut next = state.clone();
        let Some(notice) = next.apply(change) else {
            return Ok(Reaction::just(next));
        };
        let job = NoticeJob {
            notice,
            revision: next.revision,
        };
        let reaction = Reaction::just(next.clone()).and_schedule(notice.name(), now, job);
        Ok(next.reminders(reaction, now))
    }

    fn settle(
        state: &NoticeState,
        job: &NoticeJob,
        outcome: NoticeOutcome,
        now: DateTime<Utc>,
    ) -> Reaction<NoticeState, NoticeJob> {
        let reaction = Reaction::just(state.clone());
        match outcome {
            NoticeOutcome::Retry(_) => {
                reaction.and_schedule(job.notice.name(), now + RETRY_AFTER, *job)
            }
            _ => reaction,
        }
    }
}

/// What a message says, from the tenant's catalog and the appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The tenant's name.
    pub salon: String,
    /// The branch's name.
    pub branch: String,
    /// Its street address and city.
    pub address: String,
    /// The service's name.
    pub service: String,
    /// The customer's name.
    pub customer: String,
    /// Start, in the branch's zone.
    pub start: DateTime<Tz>,
    /// End, in the branch's zone.
    pub end: DateTime<Tz>,
    /// What the customer quotes.
    pub confirmation_number: String,
    /// Free times offered instead, in the branch's zone.
    pub alternatives: Vec<DateTime<Tz>>,
}

impl Facts {
    /// The facts of `appointment` in `tenant`'s catalog.
    pub fn of(tenant: &Tenant, appointment: &Appointment) -> Self {
        let branch = tenant.branches.get(&appointment.branch_id);
        let zone: Tz = appointment.time_zone.parse().unwrap_or(chrono_tz::UTC);
        Self {
            salon: tenant.name.clone(),
            branch: branch.map(|b| b.name.clone()).unwrap_or_default(),
            address: branch
                .map(|b| format!("{}, {}", b.address, b.city))
                .unwrap_or_default(),
            service: tenant
                .services
                .get(&appointment.service_id)
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            customer: appointment.customer.name.clone(),
            start: appointment.start.with_timezone(&zone),
            end: appointment.end.with_timezone(&zone),
            confirmation_number: appointment.confirmation_number.clone(),
            alternatives: Vec::new(),
        }
    }
}

/// A notice in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text message.
    pub sms: String,
    /// The e-mail's subject.
    pub subject: String,
    /// The e-mail's text.
    pub text: String,
}

const WEEKDAYS_DE: [&str; 7] = [
    "Montag",
    "Dienstag",
    "Mittwoch",
    "Donnerstag",
    "Freitag",
    "Samstag",
    "Sonntag",
];

/// When, as the customer reads it: `Freitag, 29.11.2030 um 10:00 Uhr`, `Friday 29 November
/// 2030 at 10:00`.
fn when(at: &DateTime<Tz>, locale: Locale) -> String {
    match locale {
        Locale::De => format!(
            "{}, {} um {} Uhr",
            WEEKDAYS_DE[at.weekday().num_days_from_monday() as usize],
            at.format("%d.%m.%Y"),
            at.format("%H:%M")
        ),
        Locale::En => at.format("%A %-d %B %Y at %H:%M").to_string(),
    }
}

/// The words of `notice`. Pure; only characters of the GSM-7 alphabet in the text messages.
#[expect(
    clippy::too_many_lines,
    reason = "a table: one arm per notice and language"
)]
pub fn render(notice: Notice, locale: Locale, f: &Facts) -> Rendered {
    let at = when(&f.start, locale);
    let (s, b, a, n) = (&f.salon, &f.branch, &f.address, &f.confirmation_number);
    let service = &f.service;
    let (sms, subject, lead) = match (locale, notice) {
        (Locale::De, Notice::Confirmation) => (
            format!(
                "{s}: Ihr Termin ist bestaetigt - {service} am {at}, {b}, {a}. Buchungsnr. {n}"
            ),
            format!("Terminbestätigung: {service} am {at}"),
            "Ihr Termin ist bestätigt.",
        ),
        (Locale::De, Notice::Reminder24h | Notice::Reminder2h) => (
            format!(
                "{s}: Erinnerung an Ihren Termin - {service} am {at}, {b}, {a}. Buchungsnr. {n}"
            ),
            format!("Erinnerung: {service} am {at}"),
            "wir erinnern Sie an Ihren Termin.",
        ),
        (Locale::De, Notice::Rescheduled) => (
            format!(
                "{s}: Ihr Termin wurde verlegt auf {at} - {service}, {b}, {a}. Buchungsnr. {n}"
            ),
            format!("Termin verlegt: {service} am {at}"),
            "Ihr Termin wurde verlegt.",
        ),
        (Locale::De, Notice::Cancelled) => (
            format!("{s}: Ihr Termin am {at} ({service}) wurde storniert. Buchungsnr. {n}"),
            format!("Termin storniert: {service} am {at}"),
            "Ihr Termin wurde storniert.",
        ),
        (Locale::En, Notice::Confirmation) => (
            format!(
                "{s}: your appointment is confirmed - {service} on {at}, {b}, {a}. Booking no. {n}"
            ),
            format!("Booking confirmed: {service} on {at}"),
            "your appointment is confirmed.",
        ),
        (Locale::En, Notice::Reminder24h | Notice::Reminder2h) => (
            format!(
                "{s}: reminder of your appointment - {service} on {at}, {b}, {a}. Booking no. {n}"
            ),
            format!("Reminder: {service} on {at}"),
            "this is a reminder of your appointment.",
        ),
        (Locale::En, Notice::Rescheduled) => (
            format!(
                "{s}: your appointment has moved to {at} - {service}, {b}, {a}. Booking no. {n}"
            ),
            format!("Appointment moved: {service} on {at}"),
            "your appointment has moved.",
        ),
        (Locale::En, Notice::Cancelled) => (
            format!("{s}: your appointment on {at} ({service}) is cancelled. Booking no. {n}"),
            format!("Appointment cancelled: {service} on {at}"),
            "your appointment is cancelled.",
        ),
    };
    let (hello, labels) = match locale {
        Locale::De => (
            format!("Guten Tag {},\n\n{lead}", f.customer),
            ["Leistung", "Wann", "Wo", "Buchungsnummer"],
        ),
        Locale::En => (
            format!("Hello {},\n\n{lead}", f.customer),
            ["Service", "When", "Where", "Booking number"],
        ),
    };
    let mut text = format!(
        "{hello}\n\n{}: {service}\n{}: {at}\n{}: {b}, {a}\n{}: {n}\n",
        labels[0], labels[1], labels[2], labels[3]
    );
    let mut sms = sms;
    if !f.alternatives.is_empty() {
        let offer = match locale {
            Locale::De => "Freie Termine",
            Locale::En => "Free times",
        };
        let times: Vec<String> = f.alternatives.iter().map(|t| when(t, locale)).collect();
        sms.push_str(&format!(". {offer}: {}", times.join("; ")));
        text.push_str(&format!("\n{offer}:\n- {}\n", times.join("\n- ")));
    }
    text.push_str(&format!("\n{s}\n"));
    Rendered { sms, subject, text }
}

/// Escapes text for an iCalendar property value.
fn ics_text(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace(';', "\\;")
        .replace(',', "\\,")
        .replace('\n', "\\n")
}

/// The calendar invite for a notice: the appointment (its revision as the sequence), or its
/// cancellation. Pure.
pub fn invite(
    notice: Notice,
    booking_id: &str,
    revision: u32,
    f: &Facts,
    now: DateTime<Utc>,
) -> Invite {
    let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let (method, status) = if notice == Notice::Cancelled {
        ("CANCEL", "CANCELLED")
    } else {
        ("REQUEST", "CONFIRMED")
    };
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//bookingd//bookingd//EN".to_owned(),
        format!("METHOD:{method}"),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{booking_id}@bookingd"),
        format!("SEQUENCE:{revision}"),
        format!("DTSTAMP:{}", stamp(now)),
        format!("DTSTART:{}", stamp(f.start.with_timezone(&Utc))),
        format!("DTEND:{}", stamp(f.end.with_timezone(&Utc))),
        format!(
            "SUMMARY:{}",
            ics_text(&format!("{} ({})", f.service, f.salon))
        ),
        format!(
            "LOCATION:{}",
            ics_text(&format!("{}, {}", f.branch, f.address))
        ),
        format!("STATUS:{status}"),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    Invite {
        method: method.to_owned(),
        ics: lines.join("\r\n") + "\r\n",
    }
}

/// The channels a tenant's customer can be reached on, in order of preference.
pub fn channels(tenant: &Tenant, customer: &Customer, sms: bool, email: bool) -> Vec<Channel> {
    let settings = &tenant.settings;
    let mut out = Vec::new();
    if sms && settings.notifications.sms && settings.features.sms_notifications {
        out.push(Channel::Sms);
    }
    if email && settings.notifications.email && customer.email.is_some() {
        out.push(Channel::Email);
    }
    out
}

/// The configured senders (none: that channel is off).
#[derive(Debug, Clone, Default)]
pub struct Gateways {
    /// Text messages.
    pub sms: Option<Arc<dyn SmsGateway>>,
    /// E-mail.
    pub mail: Option<Arc<dyn Mailer>>,
}

/// Sends notices over the tenant's channels.
#[derive(Debug)]
pub struct NotificationsDriver<S> {
    commands: Arc<Commands<S>>,
    sms: Option<Arc<dyn SmsGateway>>,
    mail: Option<Arc<dyn Mailer>>,
    alternatives: Arc<dyn Alternatives>,
    pool: PgPool,
    clock: crate::SharedClock,
}

/// One message on its way: which, to whom, saying what.
struct Message<'a> {
    key: &'a str,
    run: &'a JobRun<Notifications>,
    appointment: &'a Appointment,
    sms: Sms,
    email: Option<Email>,
}

impl Message<'_> {
    fn recipient(&self, channel: Channel) -> &str {
        match (channel, &self.email) {
            (Channel::Sms, _) => &self.sms.to,
            (Channel::Email, Some(email)) => &email.to,
            (Channel::Email, None) => "",
        }
    }
}

impl<S: Store> NotificationsDriver<S> {
    /// A driver over the configured gateways.
    pub fn new(
        commands: Arc<Commands<S>>,
        Gateways { sms, mail }: Gateways,
        alternatives: Arc<dyn Alternatives>,
        pool: PgPool,
        clock: crate::SharedClock,
    ) -> Self {
        Self {
            commands,
            sms,
            mail,
            alternatives,
            pool,
            clock,
        }
    }

    /// Sends `message` on `channel` unless it was claimed there before. True when it went out
    /// (now or before, or its fate is unknown after a crash); false when it failed.
    async fn deliver(&self, message: &Message<'_>, channel: Channel) -> Result<bool, sqlx::Error> {
        if let Some(status) = self.claim(message, channel).await? {
            tracing::info!(key = message.key, channel = channel.as_str(), %status, "notification claimed before; not sent again");
            return Ok(status != "failed");
        }
        let sent = match (channel, &self.sms, &self.mail, &message.email) {
            (Channel::Sms, Some(gateway), _, _) => gateway.send(&message.sms).await,
            (Channel::Email, _, Some(mailer), Some(email)) => mailer.send(email).await,
            _ => Err(PortError::Rejected(
                "the channel is not configured".to_owned(),
            )),
        };
        match sent {
            Ok(sent) => {
                sqlx::query(
                    "UPDATE notifications SET status = 'sent', provider_id = $3, sent_at = now()
                     WHERE key = $1 AND channel = $2",
                )
                .bind(message.key)
                .bind(channel.as_str())
                .bind(&sent.provider_id)
                .execute(&self.pool)
                .await?;
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(key = message.key, channel = channel.as_str(), %error, "notification failed");
                self.record_failure(message, channel, &error).await?;
                Ok(false)
            }
        }
    }

    /// Claims the message on the channel; the status of an earlier claim if there was one.
    async fn claim(
        &self,
        message: &Message<'_>,
        channel: Channel,
    ) -> Result<Option<String>, sqlx::Error> {
        let claimed = sqlx::query(
            "INSERT INTO notifications (key, channel, tenant_id, booking_id, notice, recipient, status)
             VALUES ($1, $2, $3, $4, $5, $6, 'sending') ON CONFLICT DO NOTHING",
        )
        .bind(message.key)
        .bind(channel.as_str())
        .bind(message.appointment.tenant_id.0)
        .bind(&message.run.instance_id)
        .bind(message.run.job.notice.name())
        .bind(message.recipient(channel))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if claimed == 1 {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT status FROM notifications WHERE key = $1 AND channel = $2")
            .bind(message.key)
            .bind(channel.as_str())
            .fetch_one(&self.pool)
            .await
            .map(Some)
    }

    async fn record_failure(
        &self,
        message: &Message<'_>,
        channel: Channel,
        error: &PortError,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE notifications SET status = 'failed', error = $3 WHERE key = $1 AND channel = $2",
        )
        .bind(message.key)
        .bind(channel.as_str())
        .bind(error.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO failed_notifications (id, tenant_id, booking_id, key, channel, recipient, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::now_v7())
        .bind(message.appointment.tenant_id.0)
        .bind(&message.run.instance_id)
        .bind(message.key)
        .bind(channel.as_str())
        .bind(message.recipient(channel))
        .bind(error.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The facts of the notice; a booking the calendar refused offers the next free times.
    async fn facts(
        &self,
        run: &JobRun<Notifications>,
        tenant: &Tenant,
        appointment: &Appointment,
    ) -> Facts {
        let mut facts = Facts::of(tenant, appointment);
        let refused_by_calendar = run.job.notice == Notice::Cancelled
            && run.state.cancelled_by.as_deref() == Some("saga:calendar-sync");
        let Some(staff) = run.state.staff.filter(|_| refused_by_calendar) else {
            return facts;
        };
        let time = TimeRange {
            start: appointment.start,
            end: appointment.end,
        };
        let free = self
            .alternatives
            .free_starts(
                tenant,
                appointment.branch_id,
                appointment.service_id,
                (staff, time),
                (self.clock.now(), 3),
            )
            .await;
        match free {
            Ok(starts) => {
                let zone = facts.start.timezone();
                facts.alternatives = starts.iter().map(|t| t.with_timezone(&zone)).collect();
            }
            Err(e) => {
                tracing::warn!(booking_id = %run.instance_id, error = %e, "no alternatives to offer");
            }
        }
        facts
    }

    /// The message for a claimed notice, in the tenant's language.
    fn message<'a>(
        &self,
        run: &'a JobRun<Notifications>,
        (appointment, facts): (&'a Appointment, Facts),
        tenant: &Tenant,
        key: &'a str,
    ) -> Message<'a> {
        let notice = run.job.notice;
        let words = render(notice, tenant.settings.locale, &facts);
        let calendar = notice.lead().is_none().then(|| {
            invite(
                notice,
                &run.instance_id,
                run.job.revision,
                &facts,
                self.clock.now(),
            )
        });
        Message {
            key,
            run,
            appointment,
            sms: Sms {
                to: appointment.customer.phone.as_str().to_owned(),
                body: words.sms,
            },
            email: appointment.customer.email.as_ref().map(|to| Email {
                to: to.clone(),
                to_name: appointment.customer.name.clone(),
                from_name: tenant.name.clone(),
                subject: words.subject,
                text: words.text,
                calendar,
            }),
        }
    }

    async fn send(&self, run: &JobRun<Notifications>) -> Result<NoticeOutcome, sqlx::Error> {
        let (state, job) = (&run.state, run.job);
        let Some(appointment) = &state.appointment else {
            return Ok(NoticeOutcome::Nothing("no such booking"));
        };
        if job.notice.lead().is_some() && (state.cancelled || job.revision != state.revision) {
            return Ok(NoticeOutcome::Nothing(
                "the reminder is for an appointment that changed",
            ));
        }
        let tenant = match self.commands.tenant(appointment.tenant_id).await {
            Ok((tenant, _)) => tenant,
            Err(commands::CommandError::NotFound(_)) => {
                return Ok(NoticeOutcome::Nothing(
                    "the tenant is not in this event store",
                ));
            }
            Err(e) => return Ok(NoticeOutcome::Retry(e.to_string())),
        };
        let reachable = channels(
            &tenant,
            &appointment.customer,
            self.sms.is_some(),
            self.mail.is_some(),
        );
        if reachable.is_empty() {
            return Ok(NoticeOutcome::Nothing("no channel reaches the customer"));
        }
        let key = format!("{}:{}:{}", run.instance_id, job.notice.name(), job.revision);
        let facts = self.facts(run, &tenant, appointment).await;
        let message = self.message(run, (appointment, facts), &tenant, &key);
        // Reminders on the preferred channel, the rest on all; the others stand by.
        let wanted = if job.notice.lead().is_some() {
            1
        } else {
            reachable.len()
        };
        let mut delivered = Vec::new();
        let mut failed = false;
        for channel in &reachable[..wanted] {
            if self.deliver(&message, *channel).await? {
                delivered.push(*channel);
            } else {
                failed = true;
            }
        }
        if failed && delivered.is_empty() {
            for channel in &reachable[wanted..] {
                if self.deliver(&message, *channel).await? {
                    delivered.push(*channel);
                    break;
                }
            }
        }
        Ok(if delivered.is_empty() {
            NoticeOutcome::Undelivered
        } else {
            NoticeOutcome::Delivered(delivered)
        })
    }
}

impl<S: Store> Driver for NotificationsDriver<S> {
    type Saga = Notifications;

    async fn perform(&self, run: &JobRun<Notifications>) -> NoticeOutcome {
        match self.send(run).await {
            Ok(outcome) => outcome,
            Err(e) => NoticeOutcome::Retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    use super::*;
    use crate::testing::{at, created, created_confirmed, fold, now};

    fn due(reaction: &Reaction<NoticeState, NoticeJob>) -> Vec<(String, DateTime<Utc>)> {
        reaction
            .schedule
            .iter()
            .map(|s| (s.name.clone(), s.due))
            .collect()
    }

    #[test]
    fn a_confirmation_sets_both_reminders_and_a_move_moves_them() {
        let confirmed = BookingEvent::BookingConfirmed {
            confirmed_at: now(),
        };
        let reaction = fold::<Notifications>(&[created(at(3)), confirmed.clone()]);
        let start = at(3).start;
        assert_eq!(
            due(&reaction),
            [
                ("confirmation".to_owned(), now()),
                ("reminder-24h".to_owned(), start - Duration::hours(24)),
                ("reminder-2h".to_owned(), start - Duration::hours(2)),
            ]
        );
        let moved = fold::<Notifications>(&[
            created(at(3)),
            confirmed,
            BookingEvent::BookingRescheduled {
                from: at(3),
                to: at(5),
                staff_from: StaffId(Uuid::from_u128(5)),
                staff_to: StaffId(Uuid::from_u128(5)),
            },
        ]);
        assert_eq!(moved.state.revision, 1);
        assert_eq!(moved.schedule[1].due, at(5).start - Duration::hours(24));
        assert_eq!(moved.schedule[1].job.revision, 1);
    }

    #[test]
    fn a_booking_confirmed_as_it_was_made_gets_what_a_later_confirmation_does() {
        let at_once = fold::<Notifications>(&[created_confirmed(at(3))]);
        let later = fold::<Notifications>(&[
            created(at(3)),
            BookingEvent::BookingConfirmed {
                confirmed_at: now(),
            },
        ]);
        assert_eq!(due(&at_once).len(), 3);
        assert_eq!(due(&at_once), due(&later));
        assert!(at_once.state.confirmed);
        assert!(due(&fold::<Notifications>(&[created(at(3))])).is_empty());
    }

    #[test]
    fn a_booking_for_tomorrow_morning_gets_no_past_reminder_and_a_cancel_drops_them() {
        let soon = TimeRange::starting_at(now() + Duration::hours(5), 30).unwrap();
        let confirmed = BookingEvent::BookingConfirmed {
            confirmed_at: now(),
        };
        let reaction = fold::<Notifications>(&[created(soon), confirmed.clone()]);
        assert_eq!(
            due(&reaction),
            [
                ("confirmation".to_owned(), now()),
                ("reminder-2h".to_owned(), soon.start - Duration::hours(2)),
            ]
        );
        assert_eq!(reaction.cancel, ["reminder-24h"]);
        let cancelled = fold::<Notifications>(&[
            created(at(3)),
            confirmed,
            BookingEvent::BookingCancelled {
                reason: "ill".to_owned(),
                actor: "api_key:x".to_owned(),
                late: false,
                cancelled_at: now(),
            },
        ]);
        assert_eq!(due(&cancelled), [("cancelled".to_owned(), now())]);
        assert_eq!(cancelled.cancel, ["reminder-24h", "reminder-2h"]);
    }

    fn facts() -> Facts {
        let start = Berlin.with_ymd_and_hms(2030, 11, 29, 10, 0, 0).unwrap();
        Facts {
            salon: "Salon Mia".to_owned(),
            branch: "Mitte".to_owned(),
            address: "Torstr. 1, Berlin".to_owned(),
            service: "Färben".to_owned(),
            customer: "Eva".to_owned(),
            start,
            end: start + Duration::minutes(45),
            confirmation_number: "ABC123".to_owned(),
            alternatives: Vec::new(),
        }
    }

    #[test]
    fn messages_read_in_the_tenants_language_with_local_time() {
        let de = render(Notice::Confirmation, Locale::De, &facts());
        assert_eq!(
            de.sms,
            "Salon Mia: Ihr Termin ist bestaetigt - Färben am Freitag, 29.11.2030 um 10:00 Uhr, Mitte, Torstr. 1, Berlin. Buchungsnr. ABC123"
        );
        let en = render(Notice::Cancelled, Locale::En, &facts());
        assert_eq!(
            en.sms,
            "Salon Mia: your appointment on Friday 29 November 2030 at 10:00 (Färben) is cancelled. Booking no. ABC123"
        );
        assert!(en.text.starts_with("Hello Eva,"), "{}", en.text);
    }

    #[test]
    fn an_invite_carries_the_utc_times_the_revision_and_escaped_text() {
        let invite = invite(Notice::Rescheduled, "b-1", 2, &facts(), now());
        assert_eq!(invite.method, "REQUEST");
        for line in [
            "METHOD:REQUEST",
            "UID:b-1@bookingd",
            "SEQUENCE:2",
            "DTSTART:20301129T090000Z",
            "DTEND:20301129T094500Z",
            "LOCATION:Mitte\\, Torstr. 1\\, Berlin",
            "STATUS:CONFIRMED",
        ] {
            assert!(
                invite.ics.contains(&format!("{line}\r\n")),
                "{line} in {}",
                invite.ics
            );
        }
        let cancel = super::invite(Notice::Cancelled, "b-1", 2, &facts(), now());
        assert!(
            cancel.ics.contains("METHOD:CANCEL\r\n") && cancel.ics.contains("STATUS:CANCELLED\r\n")
        );
    }
}
