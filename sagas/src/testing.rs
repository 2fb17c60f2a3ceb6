//! What the sagas' unit tests share: a fixed now, a booking, and folding its events.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::BookingEvent;
use domain::booking::{BookingSource, Customer};
use domain::values::{
    BookingId, BranchId, CountryCode, Currency, Money, PhoneNumber, ServiceId, StaffId, TenantId,
    TimeRange,
};
use uuid::Uuid;

use crate::runtime::{Reaction, Saga, SagaEvent};

pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 1, 9, 0, 0).unwrap()
}

/// Thirty minutes, `days` days from now.
pub(crate) fn at(days: i64) -> TimeRange {
    TimeRange::starting_at(now() + Duration::days(days), 30).unwrap()
}

/// Booking 1 of tenant 2 at branch 3, service 4, staff member 5, for Eva.
pub(crate) fn created(when: TimeRange) -> BookingEvent {
    BookingEvent::BookingCreated {
        booking_id: BookingId(Uuid::from_u128(1)),
        tenant_id: TenantId(Uuid::from_u128(2)),
        branch_id: BranchId(Uuid::from_u128(3)),
        service_id: ServiceId(Uuid::from_u128(4)),
        staff_id: StaffId(Uuid::from_u128(5)),
        customer: Customer {
            phone: PhoneNumber::parse("0301234567", CountryCode(49)).unwrap(),
            name: "Eva".to_owned(),
            email: Some("eva@example.com".to_owned()),
        },
        appointment: when,
        time_zone: chrono_tz::Europe::Berlin,
        source: BookingSource::Api,
        call_id: None,
        confirmation_number: "ABC123".to_owned(),
        price: Money::new(4500, Currency::EUR).unwrap(),
        notes: None,
        created_at: now(),
        deposit: None,
        payment_due: None,
        confirmed_at: None,
    }
}

/// Booking 1 as [`created`], confirmed as it was made (a `BookingCreated` of version 2).
pub(crate) fn created_confirmed(when: TimeRange) -> BookingEvent {
    let mut event = created(when);
    if let BookingEvent::BookingCreated { confirmed_at, .. } = &mut event {
        *confirmed_at = Some(now());
    }
    event
}

/// Booking 1's events in turn through saga `S`: the last step's reaction.
pub(crate) fn fold<S: Saga>(changes: &[BookingEvent]) -> Reaction<S::State, S::Job> {
    let mut reaction = Reaction::just(S::State::default());
    for (sequence, change) in (1..).zip(changes) {
        let event = SagaEvent {
            event_id: Uuid::now_v7(),
            tenant_id: Uuid::from_u128(2),
            aggregate_type: "Booking".to_owned(),
            aggregate_id: Uuid::from_u128(1).to_string(),
            sequence,
            position: sequence,
            payload: serde_json::to_value(change).unwrap(),
            correlation_id: Uuid::from_u128(9),
        };
        reaction = S::react(&reaction.state, &event, now()).unwrap();
    }
    reaction
}
