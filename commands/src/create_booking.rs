use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use domain::booking::{
    BookingSource, Customer, NewBooking, check_monthly_limit, check_placement, check_timing,
};
use domain::settings::BookingRules;
use domain::tenant::Service;
use domain::values::{BookingId, BranchId, PhoneNumber, ServiceId, StaffId, TimeRange};
use domain::{Booking, BookingCommand, StaffCommand, StaffError, Tenant};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    CommandError, CommandMeta, Commands, Guard, Outcome, Permission, Principal, Store, max_position,
};

/// The customer as given by the caller.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    /// E.164, or national with the tenant's default country code.
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub phone: String,
    /// Name.
    #[schemars(length(min = 1, max = 200), regex(pattern = domain::values::patterns::TEXT))]
    pub name: String,
    /// E-mail.
    #[serde(default)]
    #[schemars(length(max = 254), regex(pattern = domain::values::patterns::EMAIL))]
    pub email: Option<String>,
}

/// A booking request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBookingInput {
    /// Branch.
    pub branch_id: BranchId,
    /// Service.
    pub service_id: ServiceId,
    /// A named staff member; without one, the first qualified free one is chosen.
    #[serde(default)]
    pub staff_id: Option<StaffId>,
    /// Start, RFC 3339 with an offset.
    pub start: DateTime<Utc>,
    /// Who comes.
    pub customer: CustomerInput,
    /// Free text.
    #[serde(default)]
    #[schemars(length(min = 1, max = 2000), regex(pattern = domain::values::patterns::TEXT))]
    pub notes: Option<String>,
    /// Origin; `api` when absent.
    #[serde(default)]
    pub source: Option<BookingSource>,
    /// The voice call making it.
    #[serde(default)]
    pub call_id: Option<String>,
    /// Only hold the slot (status `held`) until `POST /bookings/{id}/confirm`.
    #[serde(default)]
    pub hold_only: bool,
}

/// Where a placement was checked: everything needed to build the domain commands.
struct Placement<'t> {
    service: &'t Service,
    appointment: TimeRange,
    time_zone: chrono_tz::Tz,
    rules: BookingRules,
}

impl<S: Store> Commands<S> {
    /// Books an appointment: reserves the slot on a staff calendar (or only holds it, for a
    /// hold or a deposit) and creates the booking, in one transaction. Without a named staff
    /// member, the qualified ones are tried in turn until one has the slot free.
    ///
    /// It is decided on the tenant (services, hours, rules) as this process last saw it, and
    /// written only if the tenant has not changed since. When the tenant has changed, or the
    /// booking was refused (perhaps by a tenant changed elsewhere), the stored tenant is read
    /// and, if it is newer, the booking decided again on it.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn create_booking(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        booking_id: BookingId,
        input: CreateBookingInput,
    ) -> Result<Outcome<Booking>, CommandError> {
        who.require(Permission::CreateBookings)?;
        let id = meta.tenant_id.to_string();
        if let Some((tenant, version)) = self.store.last_seen::<Tenant>(&id)
            && tenant.id == Some(meta.tenant_id)
        {
            let refused = match self
                .book(meta, booking_id, &input, (&tenant, version))
                .await
            {
                Err(e) if tenant_may_change(&e) => e,
                decided => return decided,
            };
            let (stored, stored_version) = self.tenant(meta.tenant_id).await?;
            if stored_version == version {
                return Err(refused);
            }
            return self
                .book(meta, booking_id, &input, (&stored, stored_version))
                .await;
        }
        let (tenant, version) = self.tenant(meta.tenant_id).await?;
        self.book(meta, booking_id, &input, (&tenant, version))
            .await
    }

    /// [`Self::create_booking`] on a given tenant, at its version.
    async fn book(
        &self,
        meta: &CommandMeta,
        booking_id: BookingId,
        input: &CreateBookingInput,
        (tenant, version): (&Tenant, u64),
    ) -> Result<Outcome<Booking>, CommandError> {
        let guard = Guard::of::<Tenant>(meta.tenant_id.to_string(), version);
        let phone = PhoneNumber::parse(&input.customer.phone, tenant.settings.default_country_code)
            .map_err(|e| CommandError::invalid("customer.phone", e))?;
        let placement = self.place(tenant, input, meta.now)?;
        let make = |staff_id| {
            booking_command(
                booking_id,
                staff_id,
                input,
                &phone,
                &placement,
                (meta, self.config.hold_ttl),
            )
        };
        // Refuse bad input before any calendar is touched.
        Booking::default().decide(make(input.staff_id.unwrap_or_default()))?;
        self.check_quota(tenant, meta).await?;

        let candidates = match input.staff_id {
            Some(id) => vec![id],
            None => {
                self.directory
                    .active_staff(meta.tenant_id, input.branch_id)
                    .await?
            }
        };
        let named = input.staff_id.is_some();
        let calendar = calendar_command(booking_id, input, &placement, meta, self.config.hold_ttl);
        for staff_id in candidates {
            // The id was generated for this request: its stream is new, no need to read it.
            self.store.assume_new::<Booking>(&booking_id.to_string());
            let placed = self
                .run_booking_and_staff(
                    (booking_id, make(staff_id)),
                    (staff_id, std::slice::from_ref(&calendar)),
                    Some(&guard),
                    meta,
                )
                .await;
            match placed {
                Ok((booking, staff)) => {
                    return Ok(Outcome {
                        position: max_position(booking.position, staff.position),
                        ..booking
                    });
                }
                Err(e) if named => return Err(e),
                Err(
                    CommandError::Staff(
                        StaffError::SlotUnavailable
                        | StaffError::NotQualified(_)
                        | StaffError::OutsideSchedule
                        | StaffError::Inactive,
                    )
                    | CommandError::NotFound(_),
                ) => {}
                Err(e) => return Err(e),
            }
        }
        Err(CommandError::NoStaffAvailable)
    }

    /// Derives the appointment and checks it: timing first (notice, advance, duration), then
    /// branch, service and business hours.
    fn place<'t>(
        &self,
        tenant: &'t Tenant,
        input: &CreateBookingInput,
        now: DateTime<Utc>,
    ) -> Result<Placement<'t>, CommandError> {
        let service = tenant
            .live_service(input.service_id)
            .map_err(|_| domain::BookingError::ServiceNotFound(input.service_id))?;
        let appointment = TimeRange::starting_at(input.start, service.duration_minutes)
            .map_err(|e| CommandError::invalid("start", e))?;
        let rules = self.rules(tenant);
        check_timing(&appointment, &rules, now)?;
        let (branch, service) =
            check_placement(tenant, input.branch_id, input.service_id, &appointment)?;
        Ok(Placement {
            service,
            appointment,
            time_zone: branch.time_zone,
            rules,
        })
    }

    /// The tenant's rules with the server's cap on advance days.
    pub fn rules(&self, tenant: &Tenant) -> BookingRules {
        let mut rules = tenant.settings.booking_rules;
        rules.max_advance_days = rules.max_advance_days.min(self.config.max_advance_days);
        rules
    }

    /// Refuses when the plan's bookings for this month are used up.
    async fn check_quota(&self, tenant: &Tenant, meta: &CommandMeta) -> Result<(), CommandError> {
        if tenant.plan.limits().bookings_per_month.is_none() {
            return Ok(());
        }
        let since = month_start(meta.now, tenant.settings.time_zone);
        let made = self.directory.bookings_since(meta.tenant_id, since).await?;
        Ok(check_monthly_limit(tenant.plan, made)?)
    }
}

/// Whether a booking refused on the tenant as last seen might be accepted on a newer one: a
/// rule's refusal might, a failure to write (or a write whose outcome is unknown) is answered
/// as it is.
fn tenant_may_change(error: &CommandError) -> bool {
    !matches!(
        error,
        CommandError::Conflict | CommandError::Unavailable(_) | CommandError::Internal(_)
    )
}

/// The calendar side of a placement: a hold when the caller only wants one or the service asks
/// for a deposit (the slot stays held until it is paid, or the hold lapses), else the
/// reservation at once. It is decided on the staff member's calendar and committed with the
/// booking, so no crash can leave one without the other.
fn calendar_command(
    booking_id: BookingId,
    input: &CreateBookingInput,
    placement: &Placement<'_>,
    meta: &CommandMeta,
    hold_ttl: chrono::Duration,
) -> StaffCommand {
    let (service, appointment) = (placement.service, placement.appointment);
    if input.hold_only || service.deposit.is_some() {
        return StaffCommand::HoldSlot {
            booking_id,
            service_id: service.id,
            appointment,
            buffer_before_minutes: service.buffer_before_minutes,
            buffer_after_minutes: service.buffer_after_minutes,
            expires_at: meta.now + hold_ttl,
            now: meta.now,
        };
    }
    StaffCommand::ReserveSlot {
        booking_id,
        service_id: service.id,
        appointment,
        buffer_before_minutes: service.buffer_before_minutes,
        buffer_after_minutes: service.buffer_after_minutes,
        now: meta.now,
    }
}

/// The CreateBooking command for a chosen staff member.
fn booking_command(
    booking_id: BookingId,
    staff_id: StaffId,
    input: &CreateBookingInput,
    phone: &PhoneNumber,
    placement: &Placement<'_>,
    (meta, hold_ttl): (&CommandMeta, chrono::Duration),
) -> BookingCommand {
    BookingCommand::CreateBooking {
        booking: Box::new(NewBooking {
            booking_id,
            tenant_id: meta.tenant_id,
            branch_id: input.branch_id,
            service_id: input.service_id,
            staff_id,
            customer: Customer {
                phone: phone.clone(),
                name: input.customer.name.clone(),
                email: input.customer.email.clone(),
            },
            appointment: placement.appointment,
            time_zone: placement.time_zone,
            source: input.source.unwrap_or_default(),
            call_id: input.call_id.clone(),
            confirmation_number: confirmation_number(),
            price: placement.service.price,
            notes: input.notes.clone(),
            deposit: placement.service.deposit,
            payment_due: placement.service.deposit.map(|_| meta.now + hold_ttl),
        }),
        rules: placement.rules,
        confirm: !input.hold_only,
        now: meta.now,
    }
}

/// Midnight on the first of `now`'s month in `tz`.
fn month_start(now: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&tz);
    NaiveDate::from_ymd_opt(local.year(), local.month(), 1)
        .and_then(|d| {
            tz.from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
                .earliest()
        })
        .map_or(now, |t| t.with_timezone(&Utc))
}

/// Eight characters a caller can read out on the phone (no 0/O, 1/I).
fn confirmation_number() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    uuid::Uuid::new_v4().as_bytes()[..8]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_month_starts_at_local_midnight() {
        let now = Utc.with_ymd_and_hms(2030, 7, 15, 10, 0, 0).unwrap();
        assert_eq!(
            month_start(now, chrono_tz::Europe::Berlin),
            Utc.with_ymd_and_hms(2030, 6, 30, 22, 0, 0).unwrap()
        );
    }

    #[test]
    fn confirmation_numbers_avoid_ambiguous_characters() {
        let n = confirmation_number();
        assert_eq!(n.len(), 8);
        assert!(!n.contains(['0', 'O', '1', 'I']));
    }
}
