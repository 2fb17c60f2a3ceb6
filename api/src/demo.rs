//! `bookingd demo`: a salon chain with branches in Berlin and Hamburg, five services and six
//! staff members, so the API can be tried at once. Running it again keeps the data and only
//! prints a fresh key.

use adapters::{ApiKeys, MIGRATOR, PgDirectory, PgStore};
use chrono::{Datelike, Duration, NaiveTime, TimeZone, Utc};
use commands::{
    AssignSkillInput, BranchInput, CommandConfig, CommandMeta, Commands, Directory, HireStaffInput,
    PhoneNumberInput, Principal, RegisterTenantInput, Role,
};
use domain::staff::SkillLevel;
use domain::tenant::{BranchDetails, ServiceDetails};
use domain::values::{
    BranchId, ClockRange, ClockTime, Coordinates, Currency, DayHours, Money, Plan, ServiceId,
    StaffId, TenantId, Weekday, WeeklyHours,
};
use uuid::Uuid;

use crate::cli::{cli_meta, say};
use crate::config::DemoConfig;
use crate::startup::{build_commands, connect_database};

/// The demo tenant's fixed id, so a second run finds it.
pub const DEMO_TENANT: TenantId =
    TenantId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_de40));

/// Wall-clock ranges written `"09:00-18:00"`.
fn hours(ranges: &[&str], breaks: &[&str]) -> anyhow::Result<DayHours> {
    let parse = |r: &&str| -> anyhow::Result<ClockRange> {
        let (a, b) = r
            .split_once('-')
            .ok_or_else(|| anyhow::anyhow!("bad range {r}"))?;
        Ok(ClockRange {
            start: ClockTime::parse(a)?,
            end: ClockTime::parse(b)?,
        })
    };
    Ok(DayHours {
        ranges: ranges.iter().map(parse).collect::<anyhow::Result<_>>()?,
        breaks: breaks.iter().map(parse).collect::<anyhow::Result<_>>()?,
    })
}

fn week(days: &[Weekday], day: &DayHours) -> WeeklyHours {
    WeeklyHours(days.iter().map(|d| (*d, day.clone())).collect())
}

const WORKDAYS: [Weekday; 5] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
];

/// Seeds the demo tenant if missing and prints a key and curl lines.
pub async fn run(config: DemoConfig) -> anyhow::Result<()> {
    let pool = connect_database(&config.database).await?;
    MIGRATOR.run(&pool).await?;
    let commands = build_commands(&pool, CommandConfig::default());
    let admin = Principal {
        key_id: Uuid::nil(),
        tenant_id: DEMO_TENANT,
        role: Role::Admin,
    };
    let meta = cli_meta(DEMO_TENANT);
    if commands.tenant(DEMO_TENANT).await.is_err() {
        seed(&commands, &admin, &meta).await?;
    }
    let (tenant, _) = commands.tenant(DEMO_TENANT).await?;
    let key = ApiKeys::new(pool.clone())
        .create(DEMO_TENANT, "demo", Role::Admin)
        .await?;
    let base = format!("http://{}/api/v2/mcp", config.bind);
    say(format_args!("demo tenant {} ({DEMO_TENANT})", tenant.name));
    say(format_args!("API key (admin): {}", key.secret));
    say("");
    say(format_args!("export BOOKINGD_KEY={}", key.secret));
    say(format_args!(
        "curl -s {base}/tenant -H \"Authorization: Bearer $BOOKINGD_KEY\""
    ));
    if let (Some(branch), Some(service)) = (
        tenant.branches.values().next(),
        tenant
            .services
            .values()
            .find(|s| s.name == "Herrenhaarschnitt"),
    ) {
        let made = PgDirectory::new(pool.clone())
            .bookings_since(DEMO_TENANT, chrono::DateTime::UNIX_EPOCH)
            .await?;
        let start = suggested_start(branch.time_zone, i64::try_from(made).unwrap_or(0));
        say(format_args!(
            "curl -s -X POST {base}/bookings -H \"Authorization: Bearer $BOOKINGD_KEY\" -H 'Content-Type: application/json' -H \"Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)\" \\\n  -d '{{\"branch_id\":\"{}\",\"service_id\":\"{}\",\"start\":\"{}\",\"customer\":{{\"phone\":\"0151 2345678\",\"name\":\"Erika Mustermann\"}}}}'",
            branch.id,
            service.id,
            start.to_rfc3339()
        ));
    }
    Ok(())
}

/// A weekday slot for the printed booking: the `n`-th half hour from 10:00 on the next
/// weekdays, so that each run of `demo` suggests a slot earlier runs did not.
fn suggested_start(tz: chrono_tz::Tz, n: i64) -> chrono::DateTime<Utc> {
    let mut day = Utc::now().with_timezone(&tz).date_naive() + Duration::days(1);
    let mut remaining = n;
    loop {
        if !matches!(day.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) {
            if remaining < 14 {
                break;
            }
            remaining -= 14;
        }
        day += Duration::days(1);
    }
    let start = day.and_time(NaiveTime::MIN) + Duration::minutes(600 + 30 * remaining);
    tz.from_local_datetime(&start)
        .earliest()
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

async fn seed(
    commands: &Commands<PgStore>,
    admin: &Principal,
    meta: &CommandMeta,
) -> anyhow::Result<()> {
    let input = RegisterTenantInput {
        name: "Salon Schnittpunkt".to_owned(),
        contact_email: Some("kontakt@schnittpunkt.example".to_owned()),
        plan: Plan::Professional,
        settings: Default::default(),
    };
    commands.register_tenant(meta, input).await?;
    let branch_ids = seed_branches(commands, admin, meta).await?;
    let service_ids = seed_services(commands, admin, meta, &branch_ids).await?;
    seed_staff(commands, admin, meta, &branch_ids, &service_ids).await
}

async fn seed_branches(
    commands: &Commands<PgStore>,
    admin: &Principal,
    meta: &CommandMeta,
) -> anyhow::Result<Vec<BranchId>> {
    let mut opening = week(&WORKDAYS, &hours(&["09:00-19:00"], &[])?);
    opening
        .0
        .insert(Weekday::Saturday, hours(&["10:00-16:00"], &[])?);
    let branches = [
        (
            "Berlin Mitte",
            "Torstraße 1",
            "Berlin",
            52.5291,
            13.4010,
            "+49 30 1234567",
        ),
        (
            "Hamburg Altona",
            "Ottenser Hauptstraße 10",
            "Hamburg",
            53.5526,
            9.9356,
            "+49 40 1234567",
        ),
    ];
    let mut ids = Vec::new();
    for (name, address, city, lat, lng, phone) in branches {
        let id = BranchId::new();
        let details = BranchDetails {
            name: name.to_owned(),
            address: address.to_owned(),
            city: city.to_owned(),
            coordinates: Some(Coordinates { lat, lng }),
            time_zone: None,
            business_hours: opening.clone(),
        };
        commands
            .create_branch(admin, meta, id, BranchInput { details })
            .await?;
        commands
            .assign_phone_number(
                admin,
                meta,
                id,
                PhoneNumberInput {
                    phone_number: phone.to_owned(),
                },
            )
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

async fn seed_services(
    commands: &Commands<PgStore>,
    admin: &Principal,
    meta: &CommandMeta,
    branch_ids: &[BranchId],
) -> anyhow::Result<Vec<ServiceId>> {
    let services = [
        ("Damenhaarschnitt", 60, 5900, 0, 10),
        ("Herrenhaarschnitt", 30, 2900, 0, 5),
        ("Färben", 120, 8900, 10, 15),
        ("Bartpflege", 30, 1900, 0, 5),
        ("Föhnen & Styling", 45, 3500, 0, 10),
    ];
    let mut ids = Vec::new();
    for (name, minutes, price, before, after) in services {
        let id = ServiceId::new();
        let details = ServiceDetails {
            name: name.to_owned(),
            duration_minutes: minutes,
            price: Money::new(price, Currency::EUR)?,
            buffer_before_minutes: before,
            buffer_after_minutes: after,
            branch_ids: branch_ids.to_vec(),
            deposit: None,
        };
        commands.define_service(admin, meta, id, details).await?;
        ids.push(id);
    }
    Ok(ids)
}

async fn seed_staff(
    commands: &Commands<PgStore>,
    admin: &Principal,
    meta: &CommandMeta,
    branch_ids: &[BranchId],
    service_ids: &[ServiceId],
) -> anyhow::Result<()> {
    let early = hours(&["09:00-18:00"], &["13:00-13:30"])?;
    let late = hours(&["11:00-19:00"], &["15:00-15:30"])?;
    let saturday = hours(&["10:00-16:00"], &[])?;
    let staff = [
        ("Anna Becker", 0, &early),
        ("Jonas Weber", 0, &late),
        ("Leyla Yilmaz", 0, &early),
        ("Mia Schulz", 1, &early),
        ("Paul Hoffmann", 1, &late),
        ("Sofia Wagner", 1, &early),
    ];
    for (i, (name, branch, day)) in staff.into_iter().enumerate() {
        let id = StaffId::new();
        let mut schedule = week(&WORKDAYS, day);
        if i % 2 == 0 {
            schedule.0.insert(Weekday::Saturday, saturday.clone());
        }
        let input = HireStaffInput {
            branch_id: branch_ids[branch],
            name: name.to_owned(),
            email: None,
            phone: None,
            schedule,
        };
        commands.hire_staff(admin, meta, id, input).await?;
        // Each staff member does most services, at varying skill.
        for (j, service_id) in service_ids.iter().enumerate() {
            if (i + j) % 3 == 2 {
                continue;
            }
            let level = SkillLevel::new(u8::try_from(1 + (i + j) % 5)?)
                .ok_or_else(|| anyhow::anyhow!("skill level out of range"))?;
            commands
                .assign_staff_to_service(admin, meta, id, *service_id, AssignSkillInput { level })
                .await?;
        }
    }
    Ok(())
}
