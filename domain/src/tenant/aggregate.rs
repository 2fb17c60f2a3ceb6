use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::command::{BranchDetails, ServiceDetails};
use super::{TenantCommand, TenantError, TenantEvent};
use crate::settings::TenantSettings;
use crate::values::{
    BranchId, Coordinates, Money, PhoneNumber, Plan, ServiceId, TenantId, WeeklyHours,
    bounded_text, is_email,
};

/// A branch of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Branch {
    /// Its id.
    pub id: BranchId,
    /// Display name.
    pub name: String,
    /// Street and number.
    pub address: String,
    /// City.
    pub city: String,
    /// Where it is.
    pub coordinates: Option<Coordinates>,
    /// Its IANA zone.
    #[schemars(with = "String")]
    pub time_zone: Tz,
    /// Opening hours.
    pub business_hours: WeeklyHours,
    /// Numbers routed here.
    pub phone_numbers: Vec<PhoneNumber>,
    /// Whether it takes new bookings.
    pub active: bool,
}

/// A service of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Service {
    /// Its id.
    pub id: ServiceId,
    /// Display name.
    pub name: String,
    /// Appointment length in minutes.
    pub duration_minutes: u32,
    /// Price.
    pub price: Money,
    /// Time blocked before.
    pub buffer_before_minutes: u32,
    /// Time blocked after.
    pub buffer_after_minutes: u32,
    /// Branches offering it.
    pub branch_ids: Vec<BranchId>,
    /// Deposit due before confirmation.
    pub deposit: Option<Money>,
    /// Whether it takes no new bookings.
    pub retired: bool,
}

/// A company: plan, settings, branches and catalog. One stream per tenant; it changes rarely,
/// so it stays short.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Set by TenantRegistered.
    pub id: Option<TenantId>,
    /// Company name.
    pub name: String,
    /// Contact address.
    pub contact_email: Option<String>,
    /// Subscription.
    pub plan: Plan,
    /// Settings.
    pub settings: TenantSettings,
    /// Branches by id.
    pub branches: BTreeMap<BranchId, Branch>,
    /// The catalog by id.
    pub services: BTreeMap<ServiceId, Service>,
    /// When it was registered.
    pub registered_at: Option<DateTime<Utc>>,
}

fn text(field: &'static str, value: &str) -> Result<String, TenantError> {
    bounded_text(value, 200).ok_or(TenantError::InvalidText { field })
}

fn email(value: Option<String>) -> Result<Option<String>, TenantError> {
    match value {
        Some(e) if !is_email(&e) => Err(TenantError::InvalidEmail(e)),
        other => Ok(other),
    }
}

impl Tenant {
    /// Decides a command against the current state. Pure: no I/O, no clock.
    #[expect(clippy::too_many_lines, reason = "one short arm per command")]
    pub fn decide(&self, command: TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
        if let TenantCommand::RegisterTenant {
            tenant_id,
            name,
            contact_email,
            plan,
            settings,
            now,
        } = command
        {
            if self.id.is_some() {
                return Err(TenantError::AlreadyRegistered);
            }
            settings.validate().map_err(TenantError::InvalidSettings)?;
            return Ok(vec![TenantEvent::TenantRegistered {
                tenant_id,
                name: text("name", &name)?,
                contact_email: email(contact_email)?,
                plan,
                settings,
                registered_at: now,
            }]);
        }
        if self.id.is_none() {
            return Err(TenantError::NotRegistered);
        }
        match command {
            TenantCommand::RegisterTenant { .. } => Err(TenantError::AlreadyRegistered),
            TenantCommand::UpdateTenant {
                name,
                contact_email,
            } => Ok(vec![TenantEvent::TenantUpdated {
                name: match name {
                    Some(n) => text("name", &n)?,
                    None => self.name.clone(),
                },
                contact_email: match contact_email {
                    Some(e) => email(Some(e))?,
                    None => self.contact_email.clone(),
                },
            }]),
            TenantCommand::ChangePlan { plan } => self.change_plan(plan),
            TenantCommand::UpdateTenantSettings { settings } => {
                settings.validate().map_err(TenantError::InvalidSettings)?;
                Ok(vec![TenantEvent::TenantSettingsUpdated { settings }])
            }
            TenantCommand::CreateBranch { branch_id, details } => {
                self.create_branch(branch_id, details)
            }
            TenantCommand::UpdateBranch { branch_id, details } => {
                self.branch(branch_id)?;
                let details = self.checked_branch_details(details)?;
                Ok(vec![TenantEvent::BranchUpdated { branch_id, details }])
            }
            TenantCommand::ActivateBranch { branch_id } => {
                if self.branch(branch_id)?.active {
                    return Err(TenantError::BranchAlreadyActive(branch_id));
                }
                self.check_branch_limit()?;
                Ok(vec![TenantEvent::BranchActivated { branch_id }])
            }
            TenantCommand::DeactivateBranch { branch_id } => {
                if !self.branch(branch_id)?.active {
                    return Err(TenantError::BranchAlreadyInactive(branch_id));
                }
                Ok(vec![TenantEvent::BranchDeactivated { branch_id }])
            }
            TenantCommand::AssignPhoneNumber { branch_id, phone } => {
                self.assign_phone(branch_id, phone)
            }
            TenantCommand::ReleasePhoneNumber { phone } => match self.branch_for_phone(&phone) {
                Some(branch_id) => Ok(vec![TenantEvent::PhoneNumberReleased { branch_id, phone }]),
                None => Err(TenantError::PhoneNumberNotAssigned),
            },
            TenantCommand::DefineService {
                service_id,
                details,
            } => {
                if self.services.contains_key(&service_id) {
                    return Err(TenantError::ServiceExists(service_id));
                }
                let service = self.checked_service(service_id, details)?;
                Ok(vec![TenantEvent::ServiceDefined { service }])
            }
            TenantCommand::UpdateService {
                service_id,
                details,
            } => {
                self.live_service(service_id)?;
                let service = self.checked_service(service_id, details)?;
                Ok(vec![TenantEvent::ServiceUpdated { service }])
            }
            TenantCommand::RetireService { service_id } => {
                self.live_service(service_id)?;
                Ok(vec![TenantEvent::ServiceRetired { service_id }])
            }
        }
    }

    /// The branch, or BranchNotFound.
    pub fn branch(&self, id: BranchId) -> Result<&Branch, TenantError> {
        self.branches
            .get(&id)
            .ok_or(TenantError::BranchNotFound(id))
    }

    /// The service if it exists and is not retired.
    pub fn live_service(&self, id: ServiceId) -> Result<&Service, TenantError> {
        let service = self
            .services
            .get(&id)
            .ok_or(TenantError::ServiceNotFound(id))?;
        if service.retired {
            return Err(TenantError::ServiceRetired(id));
        }
        Ok(service)
    }

    /// The branch a called number routes to.
    pub fn branch_for_phone(&self, phone: &PhoneNumber) -> Option<BranchId> {
        self.branches
            .values()
            .find(|b| b.phone_numbers.contains(phone))
            .map(|b| b.id)
    }

    fn active_branches(&self) -> u32 {
        u32::try_from(self.branches.values().filter(|b| b.active).count()).unwrap_or(u32::MAX)
    }

    fn check_branch_limit(&self) -> Result<(), TenantError> {
        match self.plan.limits().branches {
            Some(limit) if self.active_branches() >= limit => {
                Err(TenantError::BranchLimitReached {
                    plan: self.plan,
                    limit,
                })
            }
            _ => Ok(()),
        }
    }

    fn change_plan(&self, plan: Plan) -> Result<Vec<TenantEvent>, TenantError> {
        if plan == self.plan {
            return Ok(vec![]);
        }
        let active = self.active_branches();
        match plan.limits().branches {
            Some(limit) if active > limit => Err(TenantError::PlanTooSmall {
                plan,
                limit,
                active,
            }),
            _ => Ok(vec![TenantEvent::PlanChanged {
                from: self.plan,
                to: plan,
            }]),
        }
    }

    fn checked_branch_details(&self, details: BranchDetails) -> Result<BranchDetails, TenantError> {
        details
            .business_hours
            .validate()
            .map_err(TenantError::InvalidHours)?;
        if details.coordinates.is_some_and(|c| !c.is_valid()) {
            return Err(TenantError::InvalidCoordinates);
        }
        Ok(BranchDetails {
            name: text("name", &details.name)?,
            address: text("address", &details.address)?,
            city: text("city", &details.city)?,
            time_zone: Some(details.time_zone.unwrap_or(self.settings.time_zone)),
            ..details
        })
    }

    fn create_branch(
        &self,
        branch_id: BranchId,
        details: BranchDetails,
    ) -> Result<Vec<TenantEvent>, TenantError> {
        if self.branches.contains_key(&branch_id) {
            return Err(TenantError::BranchExists(branch_id));
        }
        self.check_branch_limit()?;
        let details = self.checked_branch_details(details)?;
        let branch = Branch {
            id: branch_id,
            name: details.name,
            address: details.address,
            city: details.city,
            coordinates: details.coordinates,
            time_zone: details.time_zone.unwrap_or(self.settings.time_zone),
            business_hours: details.business_hours,
            phone_numbers: vec![],
            active: true,
        };
        Ok(vec![TenantEvent::BranchCreated { branch }])
    }

    fn assign_phone(
        &self,
        branch_id: BranchId,
        phone: PhoneNumber,
    ) -> Result<Vec<TenantEvent>, TenantError> {
        self.branch(branch_id)?;
        match self.branch_for_phone(&phone) {
            Some(owner) if owner == branch_id => Ok(vec![]),
            Some(owner) => Err(TenantError::PhoneNumberTaken(owner)),
            None => Ok(vec![TenantEvent::PhoneNumberAssigned { branch_id, phone }]),
        }
    }

    fn checked_service(&self, id: ServiceId, d: ServiceDetails) -> Result<Service, TenantError> {
        if !(15..=480).contains(&d.duration_minutes) {
            return Err(TenantError::InvalidDuration(d.duration_minutes));
        }
        if d.buffer_before_minutes > 240 || d.buffer_after_minutes > 240 {
            return Err(TenantError::InvalidBuffer);
        }
        if d.deposit.is_some_and(|deposit| {
            deposit.currency != d.price.currency || deposit.amount_minor > d.price.amount_minor
        }) {
            return Err(TenantError::InvalidDeposit);
        }
        let mut branch_ids = d.branch_ids;
        branch_ids.sort();
        branch_ids.dedup();
        if branch_ids.is_empty() || branch_ids.iter().any(|b| !self.branches.contains_key(b)) {
            return Err(TenantError::InvalidServiceBranches);
        }
        Ok(Service {
            id,
            name: text("name", &d.name)?,
            duration_minutes: d.duration_minutes,
            price: d.price,
            buffer_before_minutes: d.buffer_before_minutes,
            buffer_after_minutes: d.buffer_after_minutes,
            branch_ids,
            deposit: d.deposit,
            retired: false,
        })
    }
}

impl Aggregate for Tenant {
    const TYPE: &'static str = "Tenant";
    type Command = TenantCommand;
    type Event = TenantEvent;
    type Error = TenantError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            TenantEvent::TenantRegistered {
                tenant_id,
                name,
                contact_email,
                plan,
                settings,
                registered_at,
            } => {
                self.id = Some(tenant_id);
                self.name = name;
                self.contact_email = contact_email;
                self.plan = plan;
                self.settings = settings;
                self.registered_at = Some(registered_at);
            }
            TenantEvent::TenantUpdated {
                name,
                contact_email,
            } => {
                self.name = name;
                self.contact_email = contact_email;
            }
            TenantEvent::PlanChanged { to, .. } => self.plan = to,
            TenantEvent::TenantSettingsUpdated { settings } => self.settings = settings,
            TenantEvent::BranchCreated { branch } => {
                self.branches.insert(branch.id, branch);
            }
            TenantEvent::BranchUpdated { branch_id, details } => {
                if let Some(b) = self.branches.get_mut(&branch_id) {
                    b.name = details.name;
                    b.address = details.address;
                    b.city = details.city;
                    b.coordinates = details.coordinates;
                    b.time_zone = details.time_zone.unwrap_or(b.time_zone);
                    b.business_hours = details.business_hours;
                }
            }
            TenantEvent::BranchActivated { branch_id } => self.set_active(branch_id, true),
            TenantEvent::BranchDeactivated { branch_id } => self.set_active(branch_id, false),
            TenantEvent::PhoneNumberAssigned { branch_id, phone } => {
                if let Some(b) = self.branches.get_mut(&branch_id) {
                    b.phone_numbers.push(phone);
                }
            }
            TenantEvent::PhoneNumberReleased { branch_id, phone } => {
                if let Some(b) = self.branches.get_mut(&branch_id) {
                    b.phone_numbers.retain(|p| *p != phone);
                }
            }
            TenantEvent::ServiceDefined { service } | TenantEvent::ServiceUpdated { service } => {
                self.services.insert(service.id, service);
            }
            TenantEvent::ServiceRetired { service_id } => {
                if let Some(s) = self.services.get_mut(&service_id) {
                    s.retired = true;
                }
            }
        }
    }
}

impl Tenant {
    fn set_active(&mut self, branch_id: BranchId, active: bool) {
        if let Some(b) = self.branches.get_mut(&branch_id) {
            b.active = active;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::values::{ClockRange, ClockTime, CountryCode, Currency, DayHours, Weekday};
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Spec = TestFramework<Tenant>;

    pub(crate) fn tenant_id() -> TenantId {
        TenantId(uuid::Uuid::from_u128(1))
    }

    pub(crate) fn branch_id(n: u128) -> BranchId {
        BranchId(uuid::Uuid::from_u128(100 + n))
    }

    pub(crate) fn hours() -> WeeklyHours {
        let day = DayHours {
            ranges: vec![ClockRange {
                start: ClockTime::new(9, 0).unwrap(),
                end: ClockTime::new(18, 0).unwrap(),
            }],
            breaks: vec![],
        };
        WeeklyHours(
            [Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday]
                .into_iter()
                .map(|d| (d, day.clone()))
                .collect(),
        )
    }

    pub(crate) fn registered(plan: Plan) -> TenantEvent {
        TenantEvent::TenantRegistered {
            tenant_id: tenant_id(),
            name: "Salon Schnitt".to_owned(),
            contact_email: None,
            plan,
            settings: TenantSettings::default(),
            registered_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    pub(crate) fn details(name: &str) -> BranchDetails {
        BranchDetails {
            name: name.to_owned(),
            address: "Torstr. 1".to_owned(),
            city: "Berlin".to_owned(),
            coordinates: Some(Coordinates {
                lat: 52.53,
                lng: 13.40,
            }),
            time_zone: None,
            business_hours: hours(),
        }
    }

    pub(crate) fn branch_created(n: u128) -> TenantEvent {
        TenantEvent::BranchCreated {
            branch: Branch {
                id: branch_id(n),
                name: format!("Branch {n}"),
                address: "Torstr. 1".to_owned(),
                city: "Berlin".to_owned(),
                coordinates: Some(Coordinates {
                    lat: 52.53,
                    lng: 13.40,
                }),
                time_zone: chrono_tz::Europe::Berlin,
                business_hours: hours(),
                phone_numbers: vec![],
                active: true,
            },
        }
    }

    fn service_details(minutes: u32) -> ServiceDetails {
        ServiceDetails {
            name: "Haircut".to_owned(),
            duration_minutes: minutes,
            price: Money::new(4500, Currency::EUR).unwrap(),
            buffer_before_minutes: 0,
            buffer_after_minutes: 10,
            branch_ids: vec![branch_id(1)],
            deposit: None,
        }
    }

    fn phone(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s, CountryCode(49)).unwrap()
    }

    #[test]
    fn a_basic_tenant_cannot_open_a_second_branch() {
        Spec::with(())
            .given(vec![registered(Plan::Basic), branch_created(1)])
            .when(TenantCommand::CreateBranch {
                branch_id: branch_id(2),
                details: details("Second"),
            })
            .then_expect_error(TenantError::BranchLimitReached {
                plan: Plan::Basic,
                limit: 1,
            });
    }

    #[test]
    fn a_professional_tenant_opens_a_second_branch_in_the_tenant_zone() {
        let mut expected = branch_created(2);
        if let TenantEvent::BranchCreated { branch } = &mut expected {
            branch.name = "Second".to_owned();
        }
        Spec::with(())
            .given(vec![registered(Plan::Professional), branch_created(1)])
            .when(TenantCommand::CreateBranch {
                branch_id: branch_id(2),
                details: details("Second"),
            })
            .then_expect_events(vec![expected]);
    }

    #[test]
    fn business_hours_that_end_before_they_start_are_refused() {
        let mut d = details("Bad");
        let day = DayHours {
            ranges: vec![ClockRange {
                start: ClockTime::new(18, 0).unwrap(),
                end: ClockTime::new(9, 0).unwrap(),
            }],
            breaks: vec![],
        };
        d.business_hours.0.insert(Weekday::Friday, day);
        let result =
            Spec::with(())
                .given(vec![registered(Plan::Basic)])
                .when(TenantCommand::CreateBranch {
                    branch_id: branch_id(1),
                    details: d,
                });
        assert!(matches!(
            result.inspect_result(),
            Err(TenantError::InvalidHours(_))
        ));
    }

    #[test]
    fn a_phone_number_routes_to_one_branch_only() {
        Spec::with(())
            .given(vec![
                registered(Plan::Professional),
                branch_created(1),
                branch_created(2),
                TenantEvent::PhoneNumberAssigned {
                    branch_id: branch_id(1),
                    phone: phone("+49301111111"),
                },
            ])
            .when(TenantCommand::AssignPhoneNumber {
                branch_id: branch_id(2),
                phone: phone("+49301111111"),
            })
            .then_expect_error(TenantError::PhoneNumberTaken(branch_id(1)));
    }

    #[test]
    fn releasing_a_number_names_the_branch_it_routed_to() {
        Spec::with(())
            .given(vec![
                registered(Plan::Basic),
                branch_created(1),
                TenantEvent::PhoneNumberAssigned {
                    branch_id: branch_id(1),
                    phone: phone("+49301111111"),
                },
            ])
            .when(TenantCommand::ReleasePhoneNumber {
                phone: phone("+49301111111"),
            })
            .then_expect_events(vec![TenantEvent::PhoneNumberReleased {
                branch_id: branch_id(1),
                phone: phone("+49301111111"),
            }]);
    }

    #[test]
    fn a_service_of_ten_minutes_is_refused() {
        Spec::with(())
            .given(vec![registered(Plan::Basic), branch_created(1)])
            .when(TenantCommand::DefineService {
                service_id: ServiceId::new(),
                details: service_details(10),
            })
            .then_expect_error(TenantError::InvalidDuration(10));
    }

    #[test]
    fn a_service_of_eight_hours_is_accepted() {
        let id = ServiceId(uuid::Uuid::from_u128(7));
        let result = Spec::with(())
            .given(vec![registered(Plan::Basic), branch_created(1)])
            .when(TenantCommand::DefineService {
                service_id: id,
                details: service_details(480),
            });
        let events = result.inspect_result().unwrap();
        assert!(
            matches!(&events[..], [TenantEvent::ServiceDefined { service }] if service.duration_minutes == 480)
        );
    }

    #[test]
    fn downgrading_below_the_active_branches_is_refused() {
        Spec::with(())
            .given(vec![
                registered(Plan::Professional),
                branch_created(1),
                branch_created(2),
            ])
            .when(TenantCommand::ChangePlan { plan: Plan::Basic })
            .then_expect_error(TenantError::PlanTooSmall {
                plan: Plan::Basic,
                limit: 1,
                active: 2,
            });
    }

    #[test]
    fn reactivating_a_branch_counts_against_the_limit() {
        Spec::with(())
            .given(vec![
                registered(Plan::Basic),
                branch_created(1),
                TenantEvent::BranchDeactivated {
                    branch_id: branch_id(1),
                },
                branch_created(2),
            ])
            .when(TenantCommand::ActivateBranch {
                branch_id: branch_id(1),
            })
            .then_expect_error(TenantError::BranchLimitReached {
                plan: Plan::Basic,
                limit: 1,
            });
    }

    #[test]
    fn commands_before_registration_are_refused() {
        Spec::with(())
            .given_no_previous_events()
            .when(TenantCommand::ChangePlan {
                plan: Plan::Enterprise,
            })
            .then_expect_error(TenantError::NotRegistered);
    }
}
